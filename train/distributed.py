"""Process group set-up from torchrun's environment, and the gather the contrastive loss needs.

``openwit train`` is one process, or one of many started by ``torchrun`` (which sets RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). With several processes: NCCL on GPUs,
gloo on CPUs, one GPU per local rank.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from openwit.errors import UserError


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: str = "cpu"

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def resolve_device(device: str, flag: str = "--device") -> str:
    """``device`` checked against this machine: ``auto`` becomes ``cuda`` or ``cpu``; a CUDA
    device that is not there is a one-line :class:`UserError`, not torch's traceback."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    kind, _, index = device.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise UserError(f"{flag} must be auto, cpu, cuda or cuda:N, got {device!r}")
    if not torch.cuda.is_available():
        raise UserError(f"{flag} {device}: torch sees no CUDA GPU on this machine; use cpu")
    count = torch.cuda.device_count()
    if index and int(index) >= count:
        raise UserError(f"{flag} {device}: this machine has {count} CUDA GPU(s)")
    return device


def start(device: str = "auto") -> Processes:
    """Join the process group torchrun describes (if any) and pick this process's device."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    local_world_size = _env_int("LOCAL_WORLD_SIZE", world_size)
    device = resolve_device(device)
    if device == "cuda":
        device = f"cuda:{local_rank}" if world_size > 1 else "cuda"
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        kwargs: dict[str, Any] = {}
        if backend == "nccl":
            kwargs["device_id"] = torch.device(device)
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, **kwargs)
    return Processes(rank, world_size, local_rank, local_world_size, device)


def stop(processes: Processes) -> None:
    if processes.distributed and dist.is_initialized():
        dist.destroy_process_group()


# torch 2.14 renamed the single-tensor collectives; the GPU machines run torch 2.11.
_all_gather_single = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
_reduce_scatter_single = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


def has_running_stats(model: torch.nn.Module) -> bool:
    """Whether ``model`` has buffers that training changes (BatchNorm running statistics)."""
    from torch.nn.modules.batchnorm import _NormBase

    return any(isinstance(m, _NormBase) and m.track_running_stats for m in model.modules())


def wrap_ddp(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DDP; buffers are broadcast from rank 0 at every forward only where training changes
    them. A ViT's buffers (attention masks) are constants, so broadcasting them would be a
    collective per step for nothing; a ResNet's BatchNorm running statistics drift apart per
    rank without it (each rank updates them from its own batches)."""
    device_ids = [device] if device.type == "cuda" else None
    params = inspect.signature(torch.nn.parallel.DistributedDataParallel).parameters
    # forward_sync_buffers replaces broadcast_buffers in torch 2.14
    key = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
    sync = has_running_stats(model)
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids, **{key: sync})


class GatherWithGrad(torch.autograd.Function):
    """All ranks' tensors stacked along dim 0. The backward pass gives each rank the sum over
    ranks of the gradient of its own rows: every rank's loss depends on every rank's
    features, so the gradients are those of one process holding the whole global batch."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        world = dist.get_world_size()
        ctx.rank, ctx.rows = dist.get_rank(), tensor.shape[0]
        out = tensor.new_empty((world * tensor.shape[0], *tensor.shape[1:]))
        _all_gather_single(out, tensor.contiguous())
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        if dist.get_backend() == dist.Backend.NCCL:
            local = grad.new_empty((ctx.rows, *grad.shape[1:]))
            _reduce_scatter_single(local, grad)
            return local
        # gloo has no reduce-scatter: sum the whole gradient, keep this rank's rows
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    return GatherWithGrad.apply(tensor)


def gather_mask(mask: torch.Tensor) -> torch.Tensor:
    """Every rank's bool mask, concatenated in rank order (no gradient; as uint8 on the wire,
    which gloo and NCCL both carry)."""
    world = dist.get_world_size()
    wire = mask.to(torch.uint8).contiguous()
    out = wire.new_empty((world * wire.shape[0],))
    _all_gather_single(out, wire)
    return out.bool()
