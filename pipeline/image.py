"""Build stage ``image``: size checks, then the perceptual hashes the dedup stage compares.

The checks use the *original* size (``original_width``/``original_height``, set by the
download stage before resizing), as DataComp filters: an image whose shorter side is below
``image.min_side`` (200 px) or whose sides differ by more than ``image.max_aspect`` (3:1)
is rejected. The hashes are taken from the stored bytes, the pixels that end up in the
shards: pHash and dHash from imagehash (8x8) as unsigned 64-bit integers, computed by
:func:`openwit.dedup.hashing.bytes_hashes`, the one hashing that the dedup stage and the
overlap audit share (uniform bars trimmed first; ``int(str(h), 16)`` of imagehash's hash;
Hamming distance ``(a ^ b).bit_count()``).
"""

from __future__ import annotations

import functools
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apache_beam as beam
import pyarrow as pa

from openwit.beam import core_outputs, quiet_beam_logging, spread
from openwit.config import BuildConfig
from openwit.dedup.hashing import bytes_hashes
from openwit.dedup.resample import single_threaded_blas
from openwit.funnel import Rejection
from openwit.pipeline.units import UnitReader, WorkUnit, plan_units, write_unit_files
from openwit.schemas import candidate_schema
from openwit.stage import Stage, StageContext, StageResult

STAGE = "image"

if TYPE_CHECKING:
    from openwit.beam import Core

#: ``(kept records, rejection records)`` of a batch.
Outcomes = tuple[list[dict[str, Any]], list[dict[str, Any]]]


def check_image(
    min_side: int, max_aspect: float, record: dict[str, Any]
) -> Iterator[dict[str, Any] | Rejection]:
    """Keep a downloaded record that passes the size checks, with its hashes added."""
    uid = record["uid"]
    width, height = record["original_width"], record["original_height"]
    if min(width, height) < min_side:
        yield Rejection(uid, STAGE, "image_too_small", f"{width}x{height}, min side {min_side}")
        return
    if max(width, height) > max_aspect * min(width, height):
        aspect = max(width, height) / min(width, height)
        yield Rejection(uid, STAGE, "bad_aspect_ratio", f"{width}x{height} is {aspect:.2f}:1")
        return
    try:
        phash, dhash = bytes_hashes(record["image"])
    except Exception as exc:  # the download stage wrote these bytes; still never crash
        yield Rejection(uid, STAGE, "decode_error", f"{type(exc).__name__}: {exc}"[:300])
        return
    yield {**record, "phash": phash, "dhash": dhash}


def image_core(min_side: int, max_aspect: float):
    return functools.partial(check_image, min_side, max_aspect)


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

    A unit's records go through Arrow and the DoFn's thread pool straight from the input
    Parquet to the output Parquet: image bytes never pass through Beam's coders (record
    by record, that plumbing took a quarter of the stage's time).
    """

    def __init__(self, make_core: Callable[[], Core], work_dir: str, schema: pa.Schema) -> None:
        self.make_core = make_core
        self.work_dir = work_dir
        self.schema = schema

    def setup(self) -> None:
        quiet_beam_logging()
        single_threaded_blas()  # the hashes' small matrix products, one thread per core
        self.core = self.make_core()
        self.pool = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="openwit-image")
        self.reader = UnitReader()
        self.kept = beam.metrics.Metrics.counter(STAGE, "kept")
        self.rejected = beam.metrics.Metrics.counter(STAGE, "rejected")

    def teardown(self) -> None:
        self.pool.shutdown()

    def start_bundle(self) -> None:
        self.pending: deque[tuple[WorkUnit, list[dict[str, Any]], list[Future]]] = deque()

    def process(self, unit: WorkUnit) -> list[Any]:
        """Start ``unit``; finish the one before it, whose files are written while this
        one's images are hashed."""
        records = self.reader.records(unit)
        futures = [self.pool.submit(core_outputs, self.core, record) for record in records]
        self.pending.append((unit, records, futures))
        while len(self.pending) > 1:
            self._finish(*self.pending.popleft())
        return []

    def finish_bundle(self) -> None:
        while self.pending:
            self._finish(*self.pending.popleft())

    def _finish(self, unit: WorkUnit, records: list[dict[str, Any]], futures: list[Future]) -> None:
        kept, rejected = sort_outcomes(records, (f.result() for f in futures))
        write_unit_files(Path(self.work_dir), unit, kept, rejected, self.schema)
        self.kept.inc(len(kept))
        self.rejected.inc(len(rejected))


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

    def make_core(self, config: BuildConfig) -> Callable[[], Core]:
        return functools.partial(image_core, config.image.min_side, config.image.max_aspect)

    def run(self, ctx: StageContext) -> StageResult | None:
        units = plan_units(ctx.input_files, self.records_per_unit)
        if not units:
            return None
        schema = candidate_schema(STAGE)
        fn = CheckUnits(self.make_core(ctx.config), str(ctx.work_dir), schema)
        with ctx.new_pipeline() as pipeline:
            _ = spread(pipeline, units, "Work units") | "Check and hash" >> beam.ParDo(fn)
        return None
