"""Build stage ``ingest``: crawl and pool files -> unique candidate (url, text) pairs.

Two passes, so that neither the launcher nor any worker ever holds all the pairs:

1. ``read``: each read unit (a crawl file, or some row groups of a Parquet pool:
   :func:`openwit.pipeline.ingest.readers.plan_read_units`) yields one pair or one
   rejection per record; its pairs are written sorted by uid, in row groups small enough
   (:func:`rows_per_row_group`) that a later reader picks a uid range from the footers
   without reading much more than that range.
2. ``dedup``: the uid space is cut into buckets of about :data:`PAIRS_PER_BUCKET` pairs
   (the count comes from pass 1's markers); each bucket reads its uid range from every
   pass-1 file, and keeps one pair per uid -- the one with the smallest
   ``(source, source_offset)``, so every runner keeps the same -- rejecting the other
   copies (same url and raw text) as ``duplicate_pair``.

The shuffle goes through the attempt directory, not through the runner: on the local
runner a Beam shuffle is held in the launcher's memory. The stage's output is in uid order
(bucket by bucket), an order that owes nothing to the input's and that every later stage
keeps, down to the shards.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from openwit import fs
from openwit.config import BuildConfig
from openwit.funnel import Rejection
from openwit.outputs import StageTotals, UnitOutput, collect_totals, rejections_table
from openwit.schemas import candidate_schema
from openwit.stage import Stage, StageContext, StageResult
from openwit.unit_transform import UnitWork, run_units
from openwit.units import Slice, UnitReader, WorkUnit, footers

from .readers import ReadUnit, plan_read_units, read_unit

STAGE = "ingest"
OUTPUT_SCHEMA = candidate_schema(STAGE)
READ_PASS = "read"
PAIRS = "pairs"
#: Rows per row group of pass 1's sorted pairs (the grain a bucket reads at), at most and
#: at least: see :func:`rows_per_row_group`.
MAX_ROWS_PER_ROW_GROUP = 8192
MIN_ROWS_PER_ROW_GROUP = 1024
#: Pairs per bucket of pass 2 (its memory: ~300 bytes a pair in Arrow, twice while sorted).
PAIRS_PER_BUCKET = 100_000
#: The order of pairs in both passes: by uid, the copies of a pair by where they were read
#: (the first of them is the one kept).
PAIR_ORDER = [("uid", "ascending"), ("source", "ascending"), ("source_offset", "ascending")]
#: Uids are hex; buckets cut the space of their first 8 digits.
PREFIX_DIGITS = 8
PREFIX_SPACE = 16**PREFIX_DIGITS


# -- pass 1: read ------------------------------------------------------------------------
def rows_per_row_group(read_units: int) -> int:
    """Row-group size of pass 1's files for a plan of ``read_units`` units.

    A bucket reads, from every pass-1 file, the row groups its uid range overlaps: about one
    per file, so ``read_units x rows`` rows for a bucket of :data:`PAIRS_PER_BUCKET`. Fixed
    groups of 8,192 read 8x the bucket at 10M candidates (200 units) and held it all in a
    worker's memory; groups of about a bucket's share of a file keep the reading near the
    bucket's size (within the bounds, which cap the footers' size and the amplification
    at about 100M candidates on one machine)."""
    share = PAIRS_PER_BUCKET // max(1, read_units)
    return max(MIN_ROWS_PER_ROW_GROUP, min(MAX_ROWS_PER_ROW_GROUP, share))


def read_pairs(unit: WorkUnit, rows_per_group: int = MAX_ROWS_PER_ROW_GROUP) -> UnitOutput:
    """The ``read`` core: a read unit's pairs (sorted by uid, in row groups of
    ``rows_per_group``) and rejections."""
    spec: ReadUnit = unit.payload
    scanned: dict[str, int] = {}
    pairs: list[dict[str, Any]] = []
    rejected: list[Rejection] = []
    for item in read_unit(spec, scanned):
        if isinstance(item, Rejection):
            rejected.append(item)
        else:
            pairs.append(item)
    n_in = len(pairs) + len(rejected)
    table = pa.Table.from_pylist(pairs, schema=OUTPUT_SCHEMA)
    table = table.sort_by(PAIR_ORDER)
    groups = [
        table.slice(start, rows_per_group) for start in range(0, table.num_rows, rows_per_group)
    ]
    stats = {f"{spec.format}.{key}": value for key, value in scanned.items()}
    stats[f"{spec.format}.records"] = n_in
    if spec.part == 0:
        stats[f"{spec.format}.files"] = 1
    return UnitOutput(
        rejected=rejections_table(rejected),
        sides={PAIRS: groups} if groups else {},
        stats=stats,
        n_in=n_in,
    )


class ReadCore(UnitWork):
    """Pass 1's core."""

    def __init__(self, rows_per_group: int = MAX_ROWS_PER_ROW_GROUP) -> None:
        self.rows_per_group = rows_per_group

    def run(self, unit: WorkUnit) -> UnitOutput:
        return read_pairs(unit, self.rows_per_group)


# -- pass 2: one pair per uid ------------------------------------------------------------
def uid_prefix(uid: str) -> int:
    return int(uid[:PREFIX_DIGITS], 16)


def bucket_range(bucket: int, buckets: int) -> tuple[int, int]:
    """Uid prefixes ``[low, high)`` of a bucket."""
    return bucket * PREFIX_SPACE // buckets, (bucket + 1) * PREFIX_SPACE // buckets


#: A row group of pass 1: its file, index, rows and the uid prefixes of its first and last row.
GroupRange = tuple[str, int, int, int, int]


def _uid_ranges(metadata: pq.FileMetaData) -> list[tuple[int, int, int, int]]:
    column = metadata.schema.names.index("uid")
    ranges = []
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        stats = group.column(column).statistics
        ranges.append((index, group.num_rows, uid_prefix(stats.min), uid_prefix(stats.max)))
    return ranges


def row_group_ranges(files: list[str]) -> list[GroupRange]:
    """The uid range of every row group of pass 1's files, from the footers' statistics."""
    return [
        (path, *group)
        for path, groups in zip(files, footers(files, _uid_ranges))
        for group in groups
    ]


def bucket_slices(ranges: list[GroupRange], bucket: int, buckets: int) -> list[Slice]:
    """The row groups of pass 1 that may hold uids of ``bucket``."""
    low, high = bucket_range(bucket, buckets)
    return [
        Slice(path, index, 0, rows)
        for path, index, rows, first, last in ranges
        if first < high and last >= low
    ]


def unique_pairs(table: pa.Table) -> UnitOutput:
    """The ``dedup`` core: one pair per uid (the smallest ``(source, source_offset)``);
    each other copy is a ``duplicate_pair`` rejection naming the kept one.

    It sorts indices, not the table, and takes the kept rows once: a bucket's rows are
    copied once, not twice (sorted, then filtered), and only the duplicates become Python
    objects."""
    if table.num_rows == 0:
        return UnitOutput(kept=table, rejected=rejections_table([]))
    order = pc.sort_indices(table.select([name for name, _ in PAIR_ORDER]), sort_keys=PAIR_ORDER)
    uids = table.column("uid").take(order).combine_chunks()
    first = pc.not_equal(uids.slice(1), uids.slice(0, len(uids) - 1))
    keep = pa.concat_arrays([pa.array([True]), first]).to_numpy(zero_copy_only=False)
    kept = table.take(order.filter(pa.array(keep)))
    rejected = []
    if not keep.all():
        kept_at = np.flatnonzero(keep)
        duplicate_at = np.flatnonzero(~keep)
        # The kept copy of a duplicate is the last kept row at or before it in sorted order.
        owner_rows = order.take(kept_at[np.searchsorted(kept_at, duplicate_at, "right") - 1])
        rejected = [
            Rejection(uid, STAGE, "duplicate_pair", f"same url and text as {source}#{offset}")
            for uid, source, offset in zip(
                uids.take(duplicate_at).to_pylist(),
                table.column("source").take(owner_rows).to_pylist(),
                table.column("source_offset").take(owner_rows).to_pylist(),
            )
        ]
    return UnitOutput(kept=kept, rejected=rejections_table(rejected))


class BucketCore(UnitWork):
    """Pass 2's core: a bucket's uid range from every pass-1 file, deduplicated."""

    def __init__(self, attempt: str, buckets: int) -> None:
        self.attempt, self.buckets = attempt, buckets
        self.reader = UnitReader()
        listing = fs.list_files(attempt)
        files = sorted(u for u in listing if fs.basename(u).startswith(f"{READ_PASS}.{PAIRS}-"))
        # Once per worker, not per bucket: every bucket looks at the same footers (a
        # request each when the build directory is a bucket).
        self.ranges = row_group_ranges(files)

    def run(self, unit: WorkUnit) -> UnitOutput:
        low, high = bucket_range(unit.index, self.buckets)
        # Uids are lower-case hex: "prefix in [low, high)" is a comparison of strings with
        # the bounds written as prefixes. Each row group is cut to the range as it is read,
        # so a worker holds the bucket and one row group, not every group it touched.
        low_uid, high_uid = f"{low:0{PREFIX_DIGITS}x}", f"{high:0{PREFIX_DIGITS}x}"
        tables = []
        for piece in bucket_slices(self.ranges, unit.index, self.buckets):
            table = self.reader.read_slice(piece)
            inside = pc.greater_equal(table.column("uid"), low_uid)
            if high < PREFIX_SPACE:
                inside = pc.and_(inside, pc.less(table.column("uid"), high_uid))
            tables.append(table.filter(inside))
        table = pa.concat_tables(tables) if tables else OUTPUT_SCHEMA.empty_table()
        return unique_pairs(table)


def _file_state(path: str) -> list[Any]:
    if not fs.is_local(path):
        return [path]
    try:
        info = os.stat(fs.local_path(path))
    except OSError:
        return [path]
    return [path, info.st_size, info.st_mtime_ns]


class IngestStage(Stage):
    """Reads every input in parallel and writes unique candidate pairs, in uid order."""

    name = STAGE
    version = 2
    config_keys = ("inputs",)

    def fingerprint(self, config: BuildConfig) -> dict[str, Any]:
        """Also the size and mtime of each local input file, so a changed file reruns."""
        from openwit.inputs import expand_input_paths

        fingerprint = super().fingerprint(config)
        try:
            paths = [p for group in expand_input_paths(config) for p in group]
        except Exception:  # reported properly by the input checks before the stage runs
            paths = []
        fingerprint["files"] = [_file_state(p) for p in paths]
        return fingerprint

    def output_schema(self, config: BuildConfig) -> pa.Schema:
        return OUTPUT_SCHEMA

    def run(self, ctx: StageContext) -> StageResult:
        spec_units = plan_read_units(ctx.config)
        units = [WorkUnit(i, payload=spec) for i, spec in enumerate(spec_units)]
        ctx.start_plan({"read": [[u.index, list(vars(u.payload).values())] for u in units]})
        read_core = functools.partial(ReadCore, rows_per_row_group(len(units)))
        read = ctx.run_units_fn(read_core, None, READ_PASS)
        with ctx.new_pipeline(len(units)) as pipeline:
            run_units(pipeline, "Read inputs", units, None, read)
        read_totals = collect_totals(
            u for u in fs.list_files(ctx.attempt) if fs.basename(u).startswith(f"{READ_PASS}.")
        )
        pairs = (read_totals.n_in or 0) - sum(read_totals.rejected.values())
        buckets = max(1, math.ceil(pairs / PAIRS_PER_BUCKET))
        workers = ctx.local_workers
        if workers and buckets > 1:
            # The local pool's workers take fixed shares of the buckets: 5 buckets on 2
            # workers are 3 and 2, one worker idle for a bucket's time. (One bucket stays
            # one: a one-unit pass runs in the launcher, without the pool.)
            buckets = math.ceil(buckets / workers) * workers
        bucket_units = [WorkUnit(b, payload=b) for b in range(buckets)]
        dedup = ctx.run_units_fn(functools.partial(BucketCore, ctx.attempt, buckets), OUTPUT_SCHEMA)
        with ctx.new_pipeline(buckets) as pipeline:
            run_units(pipeline, "Unique pairs", bucket_units, None, dedup)
        return StageResult(units=buckets, stats={"buckets": buckets})

    def finalize(self, ctx: StageContext, totals: StageTotals) -> dict[str, Any]:
        """Per-format input counts for the manifest (files, records, scan counts)."""
        by_format: dict[str, dict[str, int]] = {}
        for key, value in totals.stats.items():
            fmt, _, name = key.partition(".")
            if name:
                by_format.setdefault(fmt, {"files": 0, "records": 0})[name] = int(value)
        for key in [k for k in totals.stats if "." in k]:
            del totals.stats[key]
        return {"inputs": dict(sorted(by_format.items()))}
