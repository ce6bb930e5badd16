"""Build stage ``image``: size checks, then the perceptual hashes the dedup stage compares.

The checks use the *original* size (``original_width``/``original_height``, set by the
download stage before resizing), as DataComp filters: an image whose shorter side is below
``image.min_side`` (200 px) or whose sides differ by more than ``image.max_aspect`` (3:1)
is rejected. The hashes are taken from the stored bytes, the pixels that end up in the
shards: pHash and dHash from imagehash (8x8) as unsigned 64-bit integers, computed by
:func:`openwit.hashes.images.bytes_hashes`, the one hashing that the dedup stage and the
overlap audit share (uniform bars trimmed first; ``int(str(h), 16)`` of imagehash's hash;
Hamming distance ``(a ^ b).bit_count()``).
"""

from __future__ import annotations

import logging
import math
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa

from openwit.beam import quiet_beam_logging, runs_in_this_process, spread
from openwit.config import BuildConfig
from openwit.funnel import Rejection
from openwit.hashes.images import bytes_hashes_or_errors
from openwit.hashes.resample import single_threaded_blas
from openwit.pipeline.image.hashpool import (
    Hasher,
    HasherBroken,
    ThreadHasher,
    shared_hasher,
    stop_shared_hasher,
    take_prefetched,
)
from openwit.schemas import candidate_schema
from openwit.stage import Stage, StageContext, StageResult
from openwit.units import UnitReader, WorkUnit, plan_units, write_unit_files

STAGE = "image"

log = logging.getLogger(__name__)

#: ``(kept records, rejection records)`` of a batch.
Outcomes = tuple[list[dict[str, Any]], list[dict[str, Any]]]


def size_rejection(min_side: int, max_aspect: float, record: dict[str, Any]) -> Rejection | None:
    """Why a downloaded record fails the size checks (on its original size), or None."""
    uid = record["uid"]
    width, height = record["original_width"], record["original_height"]
    if min(width, height) < min_side:
        return Rejection(uid, STAGE, "image_too_small", f"{width}x{height}, min side {min_side}")
    if max(width, height) > max_aspect * min(width, height):
        aspect = max(width, height) / min(width, height)
        return Rejection(uid, STAGE, "bad_aspect_ratio", f"{width}x{height} is {aspect:.2f}:1")
    return None


def with_hashes(
    record: dict[str, Any], hashes: tuple[int, int] | str
) -> dict[str, Any] | Rejection:
    """The record with its ``phash`` and ``dhash``, or a ``decode_error`` rejection when
    hashing failed (``hashes`` is then the error, as :func:`bytes_hashes_or_errors` gives
    it): the download stage wrote these bytes, but the build never crashes on one."""
    if isinstance(hashes, str):
        return Rejection(record["uid"], STAGE, "decode_error", hashes[:300])
    phash, dhash = hashes
    return {**record, "phash": phash, "dhash": dhash}


def check_image(
    min_side: int, max_aspect: float, record: dict[str, Any]
) -> Iterator[dict[str, Any] | Rejection]:
    """Keep a downloaded record that passes the size checks, with its hashes added (one
    record; :class:`CheckUnits` does the same for a unit's records, hashing in batches)."""
    rejection = size_rejection(min_side, max_aspect, record)
    if rejection is not None:
        yield rejection
    else:
        yield with_hashes(record, bytes_hashes_or_errors([record["image"]])[0])


def sort_outcomes(
    records: list[dict[str, Any]], outcomes: Iterable[list[Any] | Exception]
) -> Outcomes:
    """``(kept, rejections)`` from each record's core outputs, or the exception it raised.

    A core that raises on a record rejects it as ``stage_error`` (as :class:`CoreDoFn`
    does): one odd record never stops the build, and never goes missing.
    """
    kept: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for record, outputs in zip(records, outcomes, strict=True):
        if isinstance(outputs, Exception):
            rejected.append(
                Rejection.stage_error(record.get("uid", ""), STAGE, outputs).as_record()
            )
            continue
        for output in outputs:
            if isinstance(output, Rejection):
                rejected.append(output.as_record())
            else:
                kept.append(output)
    return kept, rejected


class CheckUnits(beam.DoFn):
    """Checks and hashes work units of downloaded records; writes each unit's two files.

    A unit's records go through Arrow straight from the input Parquet to the output
    Parquet: image bytes never pass through Beam's coders (record by record, that plumbing
    took a quarter of the stage's time). The size checks run here; the images that pass go
    to the hasher in batches: worker processes when ``processes`` (see
    :mod:`openwit.pipeline.image.hashpool`), else one thread per core.
    """

    def __init__(
        self, min_side: int, max_aspect: float, work_dir: str, schema: pa.Schema, processes: bool
    ) -> None:
        self.min_side = min_side
        self.max_aspect = max_aspect
        self.work_dir = work_dir
        self.schema = schema
        self.processes = processes

    def setup(self) -> None:
        quiet_beam_logging()
        single_threaded_blas()  # the hashes' small matrix products, one thread per core
        # Worker processes are the process's, shared by every DoFn instance and started
        # early by ImageStage.warm_up; a thread pool is this instance's own.
        self.hasher: Hasher | None = shared_hasher() if self.processes else None
        self.own_hasher = self.hasher is None
        if self.hasher is None:
            self.hasher = ThreadHasher()
        self.workers = os.cpu_count() or 1
        self.reader = UnitReader()
        self.kept = beam.metrics.Metrics.counter(STAGE, "kept")
        self.rejected = beam.metrics.Metrics.counter(STAGE, "rejected")

    def teardown(self) -> None:
        if self.own_hasher:
            self.hasher.shutdown()

    def start_bundle(self) -> None:
        self.pending: deque[tuple[WorkUnit, list[dict[str, Any]], list[Any], list[Batch]]]
        self.pending = deque()

    def process(self, unit: WorkUnit) -> list[Any]:
        """Start ``unit``; finish earlier ones, whose files are written while the images
        of later ones are hashed: units stay in flight until they hold at least two
        batches per worker, so the workers never wait for this thread."""
        records = self.reader.records(unit)
        checks = [self._size_check(record) for record in records]
        for index, check in enumerate(checks):  # hashed ahead, while the download ran
            if check is None and (ready := take_prefetched(records[index]["sha256"])):
                checks[index] = Prefetched(ready)
        images = [record["image"] for record, check in zip(records, checks) if check is None]
        # Small units (a download part of 50 records) are cut so every worker gets some.
        size = max(1, min(HASH_BATCH, math.ceil(len(images) / self.workers)))
        batches = [self._submit(images[i : i + size]) for i in range(0, len(images), size)]
        self.pending.append((unit, records, checks, batches))
        while len(self.pending) > 1 and self._batches_after_oldest() >= 2 * self.workers:
            self._finish(*self.pending.popleft())
        return []

    def _batches_after_oldest(self) -> int:
        return sum(len(batches) for *_, batches in list(self.pending)[1:])

    def finish_bundle(self) -> None:
        while self.pending:
            self._finish(*self.pending.popleft())

    def _size_check(self, record: dict[str, Any]) -> Rejection | Exception | None:
        try:
            return size_rejection(self.min_side, self.max_aspect, record)
        except Exception as exc:  # a malformed record: a stage_error, counted
            return exc

    def _submit(self, images: list[bytes]) -> Batch:
        try:
            return images, self.hasher.submit(images)
        except HasherBroken:  # every worker was killed earlier: go on in threads
            log.warning("image: the hashing processes are gone; hashing in threads")
            self.hasher, self.own_hasher = ThreadHasher(), True
            return images, self.hasher.submit(images)

    def _finish(
        self,
        unit: WorkUnit,
        records: list[dict[str, Any]],
        checks: list[Any],
        batches: list[Batch],
    ) -> None:
        hashes = _batch_results(batches)
        outcomes: list[list[Any] | Exception] = []
        for record, check in zip(records, checks, strict=True):
            if isinstance(check, Exception):
                outcomes.append(check)
            elif isinstance(check, Prefetched):
                outcomes.append([with_hashes(record, check.hashes)])
            else:
                outcomes.append([check if check is not None else with_hashes(record, next(hashes))])
        kept, rejected = sort_outcomes(records, outcomes)
        write_unit_files(Path(self.work_dir), unit, kept, rejected, self.schema)
        self.kept.inc(len(kept))
        self.rejected.inc(len(rejected))


@dataclass(frozen=True)
class Prefetched:
    """A record's hashes, found in the memo the download stage filled."""

    hashes: tuple[int, int] | str


#: Images per task sent to the hashing pool: few enough tasks per unit to keep the pool's
#: overhead small, enough to spread a 500-record unit over the workers.
HASH_BATCH = 50

#: Images of one batch and the future of their hashes.
Batch = tuple[list[bytes], Future]


def _batch_results(batches: list[Batch]) -> Iterator[tuple[int, int] | str]:
    """Each batch's hashes in order; a batch whose worker died is hashed here instead."""
    for images, future in batches:
        try:
            results = future.result()
        except Exception as exc:  # HasherBroken: its worker was killed (out of memory)
            log.warning("image: a hashing worker failed (%s); hashing its batch here", exc)
            results = bytes_hashes_or_errors(images)
        yield from results


class ImageStage(Stage):
    """Size checks on the original image; pHash and dHash of the stored one."""

    name = STAGE
    version = 1
    #: Records per work unit: enough to keep every core busy, small enough to spread.
    records_per_unit = 500

    def fingerprint(self, config: BuildConfig) -> dict[str, Any]:
        image = config.image
        return {
            "version": self.version,
            "config": {"image": {"min_side": image.min_side, "max_aspect": image.max_aspect}},
        }

    def hashes_in_processes(self, config: BuildConfig) -> bool:
        """Whether this build hashes in worker processes (``image.hash_processes``)."""
        setting = config.image.hash_processes
        return setting == "on" or (
            setting == "auto" and runs_in_this_process(config.runner, config.beam_options)
        )

    def warm_up(self, config: BuildConfig) -> None:
        if self.hashes_in_processes(config):
            shared_hasher()  # the workers import while the download runs

    def run(self, ctx: StageContext) -> StageResult | None:
        units = plan_units(ctx.input_files, self.records_per_unit)
        if not units:
            return None
        image, processes = ctx.config.image, self.hashes_in_processes(ctx.config)
        fn = CheckUnits(
            image.min_side, image.max_aspect, str(ctx.work_dir), candidate_schema(STAGE), processes
        )
        try:
            with ctx.new_pipeline() as pipeline:
                _ = spread(pipeline, units, "Work units") | "Check and hash" >> beam.ParDo(fn)
        finally:
            if processes:
                stop_shared_hasher()
        return None
