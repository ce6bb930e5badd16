"""The per-process body of the distributed tests (started by torch.multiprocessing.spawn)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch
import torch.distributed as dist

BATCH = 4  # per process


def batch_data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1234)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(1, 49000, (n, 32), generator=g)


def grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def run(rank: int, world_size: int, port: int, out: str) -> None:
    """Scenarios on ``world_size`` gloo processes, saved by rank 0 to ``out``:
    one micro-batch of BATCH each, then two micro-batches of BATCH // 2 each."""
    from open_clip.loss import ClipLoss

    from openwit.train.distributed import wrap_ddp
    from openwit.train.models import create_model
    from openwit.train.step import train_step

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = create_model("openwit-tiny").model
    ddp = wrap_ddp(model, torch.device("cpu"))
    images, texts = batch_data(BATCH * world_size)
    mine = slice(rank * BATCH, (rank + 1) * BATCH)
    local_images, local_texts = images[mine], texts[mine]
    results: dict[str, object] = {}

    loss = train_step(ddp, [(local_images, local_texts)], contextlib.nullcontext, _backward)
    results["loss_local"] = loss
    total = loss.clone()
    dist.all_reduce(total)
    results["loss"] = total / world_size
    results["grads"] = grads(model)
    with torch.no_grad():  # open_clip's own distributed loss on the same features
        features = model(local_images, local_texts)
        clip_loss = ClipLoss(
            local_loss=True, gather_with_grad=True, rank=rank, world_size=world_size
        )
        results["open_clip_loss_local"] = clip_loss(
            features["image_features"], features["text_features"], features["logit_scale"]
        )
    model.zero_grad(set_to_none=True)

    half = BATCH // 2
    micro = [
        (local_images[:half], local_texts[:half]),
        (local_images[half:], local_texts[half:]),
    ]
    loss = train_step(ddp, micro, contextlib.nullcontext, _backward, ddp.no_sync)
    total = loss.clone()
    dist.all_reduce(total)
    results["accum_loss"] = total / world_size
    results["accum_grads"] = grads(model)

    model.zero_grad(set_to_none=True)
    valid = masked_rows(BATCH * world_size)[rank * BATCH : (rank + 1) * BATCH]
    loss = train_step(ddp, [(local_images, local_texts, valid)], contextlib.nullcontext, _backward)
    total = loss.clone()
    dist.all_reduce(total)
    results["masked_loss"] = total / world_size
    results["masked_grads"] = grads(model)

    results["resnet_running_mean"] = resnet_running_mean_after_forward(rank, world_size)

    gathered = [None] * world_size
    mine = {k: results[k] for k in ("loss_local", "open_clip_loss_local")}
    dist.all_gather_object(gathered, mine)
    if rank == 0:
        results["per_rank"] = gathered
        torch.save(results, Path(out))
    dist.barrier()
    dist.destroy_process_group()


def masked_rows(n: int) -> torch.Tensor:
    """The pairs that count: all but one of the second process's (a dropped image)."""
    valid = torch.ones(n, dtype=torch.bool)
    valid[BATCH + 1] = False
    return valid


def resnet_running_mean_after_forward(rank: int, world_size: int) -> list[torch.Tensor]:
    """Every rank's first BatchNorm running mean after one DDP forward, where rank 1's had
    drifted from rank 0's before it (as per-rank batches make them drift)."""
    from openwit.train.distributed import wrap_ddp
    from openwit.train.models import create_model

    torch.manual_seed(0)
    model = create_model("openwit-tiny-rn").model
    ddp = wrap_ddp(model, torch.device("cpu"))  # (DDP syncs every buffer once, here)
    if rank == 1:
        model.visual.bn1.running_mean.fill_(5.0)
    images, texts = batch_data(BATCH)
    model.eval()  # the forward itself leaves the statistics alone
    with torch.no_grad():
        ddp(images, texts)
    gathered = [torch.zeros_like(model.visual.bn1.running_mean) for _ in range(world_size)]
    dist.all_gather(gathered, model.visual.bn1.running_mean)
    return gathered


def _backward(loss: torch.Tensor) -> None:
    loss.backward()
