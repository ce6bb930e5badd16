"""Build stage ``shard``: the kept records -> webdataset shards open_clip_train reads as is.

``OUT/shards/NNNNN.tar`` (members ``KEY.jpg``, ``KEY.txt``, ``KEY.json``), ``NNNNN.parquet``
(one row per sample, no image bytes), ``NNNNN_stats.json`` and ``sizes.json``.

Samples are ordered by uid and numbered in that order: sample ``i`` gets key ``i`` and goes
to shard ``i // samples_per_shard``. The order depends only on the set of records, never on
how a runner split the work, so every runner, rerun and resume gives the same samples in
the same shards. It is computed without sorting the records themselves:

0. the input is read in work units (slices of its row groups, :mod:`.units`); records
   without usable image bytes are rejected there, into the unit's own rejection file;
1. uids only: count them per 4-hex-digit prefix (at most 65,536 buckets, a side input);
   sort each bucket's uids, offset by the buckets before it, and emit the first uid of each
   shard (one per ``samples_per_shard``, so a small side input even at billions);
2. each record's shard is found by bisecting those shard starts;
3. records are grouped by shard; each group is sorted, keyed and written, unless an
   identical complete shard is already on disk (``--resume``, reruns).

The runner counts this stage's output from the shard indexes (:meth:`output_files`).
"""

from __future__ import annotations

import bisect
import math
from pathlib import Path
from typing import Any

import apache_beam as beam

from openwit.beam import spread
from openwit.errors import UserError
from openwit.funnel import Rejection, count_reasons, count_rows
from openwit.io import atomic_write_json
from openwit.pipeline.shard.tars import (
    image_extension,
    sample_order,
    shard_files,
    shard_name,
    write_shard,
)
from openwit.schemas import KEY_DIGITS, sample_key
from openwit.stage import REJECTION_GLOB, Stage, StageContext, StageResult
from openwit.units import UnitReader, WorkUnit, plan_units, write_rejections

STAGE = "shard"
BUCKET_DIGITS = 4


def bucket_of(uid: str) -> str:
    return uid[:BUCKET_DIGITS]


def sample_rejection(record: dict[str, Any]) -> Rejection | None:
    """Why a record cannot become a sample (no usable image bytes), or ``None``."""
    if image_extension(record.get("image")) is not None:
        return None
    reason = "missing_image" if not record.get("image") else "unknown_image_format"
    return Rejection(record.get("uid", ""), STAGE, reason, "")


class ReadSamples(beam.DoFn):
    """One work unit of the input -> its records that can become samples.

    The others are rejected here, before numbering, into the unit's own rejection file
    (written whole, so a retried unit writes the same file): no Parquet sink in the graph.
    """

    def __init__(self, work_dir: str) -> None:
        self.work_dir = work_dir

    def setup(self) -> None:
        self.reader = UnitReader()

    def process(self, unit: WorkUnit):
        rejected = []
        for record in self.reader.records(unit):
            rejection = sample_rejection(record)
            if rejection is None:
                yield record
            else:
                rejected.append(rejection.as_record())
        if rejected:
            write_rejections(Path(self.work_dir), unit, rejected)


class ShardStarts(beam.DoFn):
    """For one bucket of sort keys: the keys that start a shard, as ``(shard, key)``."""

    def __init__(self, samples_per_shard: int) -> None:
        self.samples_per_shard = samples_per_shard
        self._offsets: dict[str, int] | None = None

    def process(self, bucket_and_keys: tuple[str, Any], counts: dict[str, int]):
        if self._offsets is None:  # prefix sums of the bucket sizes, once per worker
            offsets, total = {}, 0
            for bucket in sorted(counts):
                offsets[bucket] = total
                total += counts[bucket]
            self._offsets = offsets
        bucket, keys = bucket_and_keys
        rank = self._offsets[bucket]
        for key in sorted(keys):
            if rank % self.samples_per_shard == 0:
                yield rank // self.samples_per_shard, key
            rank += 1


class AssignShard(beam.DoFn):
    """``(shard, record)``: the last shard whose first key is not after the record's key."""

    def __init__(self) -> None:
        self._source: Any = None
        self._keys: list[Any] = []
        self._shards: list[int] = []

    def process(self, record: dict[str, Any], starts: list[tuple[int, Any]]):
        if starts is not self._source:  # sort the side input once per worker, not per record
            ordered = sorted(starts)
            self._source, self._shards = starts, [shard for shard, _ in ordered]
            self._keys = [key for _, key in ordered]
        position = bisect.bisect_right(self._keys, sample_order(record)) - 1
        yield self._shards[position], record


class WriteShard(beam.DoFn):
    def __init__(self, shards_dir: str, samples_per_shard: int) -> None:
        self.shards_dir = shards_dir
        self.samples_per_shard = samples_per_shard

    def process(self, shard_and_records: tuple[int, Any]):
        shard, records = shard_and_records
        ordered = sorted(records, key=sample_order)
        first = shard * self.samples_per_shard
        for offset, record in enumerate(ordered):
            record["key"] = sample_key(first + offset)
        info = write_shard(Path(self.shards_dir), shard, ordered)
        counter = "shards_written" if info.written else "shards_kept"
        beam.metrics.Metrics.counter(STAGE, counter).inc()
        yield info.index


class ShardStage(Stage):
    """Number the samples in uid order and write them as webdataset shards."""

    name = STAGE
    version = 1
    resumable = True
    config_keys = ("shards",)
    #: Input records per work unit read by one worker.
    records_per_unit = 1000

    def output_files(self, stage_dir: Path) -> list[Path]:
        """The shard indexes: one row per sample written (``OUT/shards/NNNNN.parquet``)."""
        shards = shards_dir_of(stage_dir)
        found = shard_files(shards)
        return sorted(p for paths in found.values() for p in paths if p.suffix == ".parquet")

    def run(self, ctx: StageContext) -> StageResult:
        per_shard = ctx.config.shards.samples_per_shard
        shards = ctx.build_dir / "shards"
        shards.mkdir(parents=True, exist_ok=True)
        for leftover in shards.glob(".*.tmp"):  # from a write that was killed
            leftover.unlink()
        # Every run reads the whole input again, so it writes every rejection file again;
        # one left by an earlier run (another input, another plan) must not be counted.
        for stale in ctx.work_dir.glob(REJECTION_GLOB):
            stale.unlink()
        n_in = count_rows(ctx.input_files)
        if n_in >= 10**KEY_DIGITS:
            raise UserError(
                f"shard: {n_in:,} samples do not fit {KEY_DIGITS}-digit keys; split the build"
            )
        if n_in:
            self._run_pipeline(ctx, shards, per_shard)
        rejected = sum(count_reasons(sorted(ctx.work_dir.glob(REJECTION_GLOB))).values())
        n_shards = math.ceil((n_in - rejected) / per_shard)
        sizes = finish_shards(shards, n_shards)
        stats = {
            "shards": n_shards,
            "samples": sum(sizes.values()),
            "tar_bytes": sum(p.stat().st_size for p in shards.glob("*.tar")),
        }
        atomic_write_json(ctx.work_dir / "shards.json", {"sizes": sizes, **stats})
        return StageResult(stats=stats)

    def _run_pipeline(self, ctx: StageContext, shards: Path, per_shard: int) -> None:
        units = plan_units(ctx.input_files, self.records_per_unit)
        with ctx.new_pipeline() as pipeline:
            records = spread(pipeline, units, "Work units") | "Read samples" >> beam.ParDo(
                ReadSamples(str(ctx.work_dir))
            )
            keys = records | "Sort keys" >> beam.Map(sample_order)
            counts = (
                keys
                | "Bucket" >> beam.Map(lambda key: (bucket_of(key[0]), 1))
                | "Count per bucket" >> beam.CombinePerKey(sum)
            )
            starts = (
                keys
                | "Key by bucket" >> beam.Map(lambda key: (bucket_of(key[0]), key))
                | "Group buckets" >> beam.GroupByKey()
                | "Shard starts"
                >> beam.ParDo(ShardStarts(per_shard), counts=beam.pvalue.AsDict(counts))
            )
            _ = (
                records
                | "Assign shard" >> beam.ParDo(AssignShard(), starts=beam.pvalue.AsList(starts))
                | "Group shards" >> beam.GroupByKey()
                | "Write shards" >> beam.ParDo(WriteShard(str(shards), per_shard))
            )


def shards_dir_of(stage_dir: Path) -> Path:
    """``OUT/shards`` for ``OUT/stages/shard`` or its work directory ``OUT/stages/.shard.tmp``."""
    return stage_dir.parent.parent / "shards"


def finish_shards(shards: Path, n_shards: int) -> dict[str, int]:
    """Drop shards beyond ``n_shards`` (left by an earlier, larger build); write sizes.json."""
    import pyarrow.parquet as pq

    found = shard_files(shards)
    for index, paths in found.items():
        if index >= n_shards:
            for path in paths:
                path.unlink()
    sizes = {}
    for index in range(n_shards):
        index_file = shards / f"{shard_name(index)}.parquet"
        if not index_file.is_file() or not (shards / f"{shard_name(index)}.tar").is_file():
            raise RuntimeError(f"shard {shard_name(index)} was not written")
        sizes[f"{shard_name(index)}.tar"] = pq.ParquetFile(index_file).metadata.num_rows
    atomic_write_json(shards / "sizes.json", sizes)
    return sizes
