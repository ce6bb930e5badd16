"""The training data: webdataset shards -> shuffled samples -> batches, built in data workers.

Each data worker of each process (a :class:`~openwit.train.shards.Slot`) reads its own
endless sequence of shards, groups tar members into samples with webdataset's tar
iterators, shuffles them in a buffer, and yields whole batches, so the main process only
moves tensors. Two kinds of batch, by where JPEGs are decoded:

- ``workers`` (the default on CPU): PIL decode (at reduced size when the JPEG is much larger
  than the model's input) + open_clip's train transform + tokenizer, in the worker.
- ``device``: the worker only tokenizes and packs the JPEG bytes into one uint8 tensor; the
  GPU decodes and augments them (:mod:`openwit.train.device_images`).

A missing or corrupt shard is skipped with a warning, a sample without image or caption or
with an undecodable image is skipped, and every batch carries the counts since the previous
one (plus its worker id, which the resume position needs). A shard set that holds no usable
sample at all is not skipped around forever: once a worker has tried every shard without
finding one, it hands over a :class:`DataFailure` that names the shards and why, and the
main process stops with that one line.
"""

from __future__ import annotations

import io
import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import webdataset as wds
from webdataset.tariterators import group_by_keys

from openwit.train.preprocess import BatchedPreprocess, decode_pil
from openwit.train.reader_stats import ReaderStats, describe_error
from openwit.train.shards import (
    ShardList,
    ShardTask,
    Slot,
    open_shard,
    resampled_stream,
    worker_stream,
)
from openwit.train.tar_reader import iter_members

log = logging.getLogger(__name__)

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")
JPEG_MAGIC = b"\xff\xd8\xff"


class NoUsableSamples(Exception):
    """Raised inside a worker's sample stream: every shard tried, not one usable sample."""


@dataclass(frozen=True)
class DataFailure:
    """What a worker yields instead of a batch when it can never make one (picklable, so
    it crosses from a worker process; the main process raises it as a UserError)."""

    message: str


@dataclass(frozen=True)
class DataSpec:
    """Everything a worker needs to build its stream (picklable: workers may be spawned)."""

    shards: ShardList
    rank: int
    world_size: int
    workers: int  # data workers of this process (0: the main process reads)
    batch_size: int
    seed: int
    shuffle_buffer: int
    resampled: bool
    decode: str  # "workers" or "device"
    normalize_in_workers: bool = True  # False: workers ship uint8 crops, the GPU normalises
    skip_per_worker: tuple[int, ...] = ()  # resume: samples each worker had delivered
    restart: int = 0  # resume step, reseeds what cannot be skipped exactly


def _problem(
    sample: dict[str, Any], stats: ReaderStats, decodes: Callable[[bytes], bool]
) -> str | None:
    """Why a sample cannot be used (a ReaderStats reason), or None. Until a worker has seen
    one usable sample it also checks that the image decodes, so a shard set of garbage
    images is found out in one pass instead of after the shuffle buffer."""
    data = _image_bytes(sample)
    if data is None:
        return "no_image"
    if _caption(sample) is None:
        return "no_caption"
    if not stats.usable_found and not decodes(data):
        return "undecodable"
    return None


def _read_samples(
    tasks: Iterator[ShardTask], stats: ReaderStats, decodes: Callable[[bytes], bool]
) -> Iterator[dict[str, Any]]:
    """The usable samples (image and caption) of each shard, in tar order; the others are
    counted by reason. Raises :class:`NoUsableSamples` once every shard has been tried
    without one usable sample."""
    for task in tasks:
        stats.start_shard(task.url)
        skip = task.skip
        try:
            stream = open_shard(task.url)
        except Exception as error:  # missing file, failing pipe: or URL
            stats.shard_failed(task.url, error)
        else:
            try:
                files = (
                    {"fname": name, "data": data, "__url__": task.url}
                    for name, data in iter_members(stream)
                )
                for sample in group_by_keys(files, handler=stats.group_error):
                    if skip:  # resume: trained on before the restart
                        skip -= 1
                        continue
                    problem = _problem(sample, stats, decodes)
                    if problem:
                        stats.sample_skipped(problem)
                        continue
                    stats.sample_usable()
                    yield sample
            except Exception as error:  # truncated or corrupt tar: keep what was read
                stats.shard_failed(task.url, error)
            finally:
                stream.close()
        failure = stats.end_shard()
        if failure:
            raise NoUsableSamples(failure)


def to_jpeg(data: bytes) -> bytes:
    """JPEG bytes as they are, or another image format re-encoded (the GPU decodes JPEG only)."""
    if data[:3] == JPEG_MAGIC:
        return data
    buffer = io.BytesIO()
    decode_pil(data).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _caption(sample: dict[str, Any]) -> str | None:
    raw = sample.get("txt")
    if raw is None:
        return None
    text = raw.decode("utf-8", "replace").strip() if isinstance(raw, bytes) else str(raw).strip()
    return text or None


def _image_bytes(sample: dict[str, Any]) -> bytes | None:
    for key in IMAGE_KEYS:
        if key in sample:
            return sample[key]
    return None


class ShardBatches(torch.utils.data.IterableDataset):
    """The batches of one process: an IterableDataset for ``torch.utils.data.DataLoader``.

    ``preprocess`` is open_clip's train transform (:class:`BatchedPreprocess` runs it);
    ``tokenizer`` open_clip's tokenizer;
    ``draft_size`` the model's input size (decode large JPEGs at reduced scale).
    """

    def __init__(
        self,
        spec: DataSpec,
        preprocess: Callable[[Any], Any],
        tokenizer: Callable[[list[str]], Any],
        draft_size: tuple[int, int] | None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.preprocess = BatchedPreprocess(preprocess, spec.normalize_in_workers)
        self.tokenizer = tokenizer
        self.draft_size = draft_size

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        spec = self.spec
        slot = Slot(spec.rank, spec.world_size, worker, max(1, spec.workers))
        seed_text = f"{spec.seed}-{slot.index}-{spec.restart}"
        torch.manual_seed(random.Random(f"openwit-aug-{seed_text}").getrandbits(63))
        skip = spec.skip_per_worker[worker] if worker < len(spec.skip_per_worker) else 0
        if spec.resampled:
            tasks = resampled_stream(spec.shards, slot, spec.seed, spec.restart)
        else:
            tasks = worker_stream(spec.shards, slot, spec.seed, skip)
        stats = ReaderStats(all_urls=frozenset(spec.shards.urls))
        samples = _read_samples(tasks, stats, self._decodes)
        if spec.shuffle_buffer > 1:
            rng = random.Random(f"openwit-shuffle-{seed_text}")
            initial = min(spec.shuffle_buffer, max(spec.batch_size, spec.shuffle_buffer // 5))
            samples = wds.shuffle(spec.shuffle_buffer, initial, rng=rng)(samples)
        prepare = self._jpeg if spec.decode == "device" else self._crop
        pack = self._pack_bytes if spec.decode == "device" else self._pack_images
        items, captions = [], []
        try:
            for item, caption in _prepared(samples, prepare, stats):
                items.append(item)
                captions.append(caption)
                if len(items) == spec.batch_size:
                    counts = torch.tensor(stats.drain(worker))
                    yield (*pack(items), self.tokenizer(captions), counts)
                    items, captions = [], []
        except NoUsableSamples as failure:
            yield DataFailure(str(failure))

    def _decodes(self, data: bytes) -> bool:
        try:
            decode_pil(data, self.draft_size)
        except Exception:  # PIL raises many kinds for a broken image
            return False
        return True

    def _crop(self, data: bytes) -> Any:
        """Decode (at reduced scale where possible) and run the per-image transform."""
        return self.preprocess.image(decode_pil(data, self.draft_size))

    @staticmethod
    def _jpeg(data: bytes) -> bytes:
        return to_jpeg(data)

    def _pack_images(self, images: list[Any]) -> tuple[torch.Tensor]:
        return (self.preprocess.batch(images),)

    @staticmethod
    def _pack_bytes(blobs: list[bytes]) -> tuple[torch.Tensor, torch.Tensor]:
        """All JPEGs of the batch as one uint8 tensor, with the offsets that split it."""
        offsets = np.cumsum([0] + [len(b) for b in blobs], dtype=np.int64)
        packed = np.frombuffer(b"".join(blobs), dtype=np.uint8).copy()
        return torch.from_numpy(packed), torch.from_numpy(offsets)


def _prepared(
    samples: Iterator[dict[str, Any]], prepare: Callable[[bytes], Any], stats: ReaderStats
) -> Iterator[tuple[Any, str]]:
    """(prepared image, caption) of every sample out of the shuffle buffer; one whose image
    does not decode after all is counted as skipped."""
    for sample in samples:
        data, caption = _image_bytes(sample), _caption(sample)
        try:
            item = prepare(data)
        except Exception as error:  # any undecodable image: PIL raises many kinds
            log.debug("skipping sample %s: %s", sample.get("__key__"), describe_error(error))
            stats.sample_dropped()
            continue
        stats.sample_batched()
        yield item, caption


def make_loader(dataset: ShardBatches, pin_memory: bool) -> Any:
    workers = dataset.spec.workers
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=None,  # the workers batch
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )
