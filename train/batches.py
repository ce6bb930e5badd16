"""The batch source of one process: data workers, then (on a GPU) a prefetch thread.

Also the resume position: which samples each data worker of each process has delivered to
training, kept from the worker id every batch carries.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from openwit.errors import UserError
from openwit.train.data import DataFailure, DataSpec, ShardBatches, make_loader
from openwit.train.device_images import DeviceAugment, Prefetcher
from openwit.train.distributed import Processes
from openwit.train.models import ModelBundle
from openwit.train.preprocess import Normalize
from openwit.train.shards import ShardList, can_skip, plan_readers

log = logging.getLogger(__name__)


@dataclass
class DataPosition:
    """Samples each worker of this process has delivered; saved in checkpoints as ``data``."""

    world_size: int
    workers: int
    seed: int
    n_shards: int
    resampled: bool
    delivered: list[int] = field(default_factory=list)

    def key(self) -> tuple:
        return (self.world_size, self.workers, self.seed, self.n_shards, self.resampled)

    def to_dict(self, delivered_all_ranks: list[list[int]]) -> dict[str, Any]:
        return {
            "world_size": self.world_size,
            "workers": self.workers,
            "seed": self.seed,
            "n_shards": self.n_shards,
            "resampled": self.resampled,
            "delivered": delivered_all_ranks,
        }


def skip_from_checkpoint(saved: dict[str, Any] | None, position: DataPosition, rank: int) -> bool:
    """Set ``position.delivered`` from a checkpoint's ``data``; False if it cannot be used
    (another number of processes or workers, other shards: the stream is reseeded then)."""
    if not saved:
        return False
    key = (
        saved.get("world_size"),
        saved.get("workers"),
        saved.get("seed"),
        saved.get("n_shards"),
        saved.get("resampled"),
    )
    if key != position.key():
        log.warning(
            "the checkpoint's data position is for another layout (processes, workers, "
            "shards); the data stream restarts, reseeded"
        )
        return False
    delivered = saved.get("delivered") or []
    if rank < len(delivered):
        position.delivered = [int(n) for n in delivered[rank]]
    return True


@dataclass
class BatchSource:
    batches: Any  # iterator of (images, tokens, stats[, valid]) on the device
    position: DataPosition
    decode: str
    workers: int
    resampled: bool
    closer: Any = None

    def close(self) -> None:
        if self.closer is not None:
            self.closer()


def _raise_failures(batches: Iterator[Any]) -> Iterator[Any]:
    """The loader's batches; a worker's :class:`DataFailure` becomes the one-line error."""
    for batch in batches:
        if isinstance(batch, DataFailure):
            raise UserError(batch.message)
        yield batch


def open_batches(
    shards: ShardList,
    bundle: ModelBundle,
    processes: Processes,
    *,
    batch_size: int,
    workers: int,
    seed: int,
    shuffle_buffer: int,
    resampled: bool,
    decode: str,
    image_dtype: torch.dtype,
    saved_position: dict[str, Any] | None,
    restart_step: int,
) -> BatchSource:
    device = torch.device(processes.device)
    workers, resampled = plan_readers(len(shards), processes.world_size, workers, resampled)
    position = DataPosition(processes.world_size, max(1, workers), seed, len(shards), resampled)
    exact = (
        not resampled
        and can_skip(shards)
        and skip_from_checkpoint(saved_position, position, processes.rank)
    )
    if saved_position is not None and not exact and not resampled and not can_skip(shards):
        log.warning("no sizes.json for every shard: the resumed data stream is reseeded")
    if len(position.delivered) != position.workers:
        position.delivered = [0] * position.workers
    spec = DataSpec(
        shards=shards,
        rank=processes.rank,
        world_size=processes.world_size,
        workers=workers,
        batch_size=batch_size,
        seed=seed if (exact or saved_position is None) else seed + 7919 * restart_step,
        shuffle_buffer=shuffle_buffer,
        resampled=resampled,
        decode=decode,
        normalize_in_workers=device.type == "cpu",
        skip_per_worker=tuple(position.delivered) if exact else (),
        restart=restart_step if saved_position is not None else 0,
    )
    dataset = ShardBatches(spec, bundle.preprocess_train, bundle.tokenizer, bundle.image_size)
    loader = make_loader(dataset, pin_memory=device.type == "cuda")
    iterator = _raise_failures(iter(loader))
    prepare = None
    if decode == "device":
        augment = DeviceAugment(
            bundle.image_size,
            bundle.image_mean,
            bundle.image_std,
            device,
            dtype=image_dtype,
            seed=seed * 1000 + processes.rank + restart_step,
        )

        def prepare(batch: Any) -> tuple[Any, ...]:
            packed, offsets, tokens, stats = batch
            images, valid, dropped = augment(packed, offsets)
            if dropped:  # no decoder read them: out of the loss, counted as skipped
                stats = stats.clone()
                stats[2] += dropped
            return images, tokens.to(device, non_blocking=True), stats, valid

    elif device.type == "cuda":
        normalize = Normalize(bundle.image_mean, bundle.image_std, device)

        def prepare(batch: Any) -> tuple[Any, ...]:
            images, tokens, stats = batch
            images = images.to(device, non_blocking=True)
            if images.dtype == torch.uint8:  # crops from the workers, normalised here
                images = normalize(images, image_dtype)
            return images.to(image_dtype), tokens.to(device, non_blocking=True), stats

    if prepare is None:
        source = BatchSource(iterator, position, decode, workers, resampled)
    else:
        prefetcher = Prefetcher(iterator, prepare, device)
        source = BatchSource(prefetcher, position, decode, workers, resampled, prefetcher.close)
    return source
