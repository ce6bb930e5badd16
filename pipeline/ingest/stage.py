"""Build stage ``ingest``: crawl and pool files -> candidate (url, text) pairs.

The inputs are split into read units (:func:`openwit.pipeline.ingest.readers.plan_read_units`) that
Beam spreads over workers; each unit yields one pair or one rejection per record. Exact
duplicates (same uid, i.e. same url and raw text) are then reduced to one pair with a
combine, keeping the one with the smallest ``(source, source_offset)`` so every runner keeps
the same record; the others are rejected as ``duplicate_pair``.

Besides ``part-*`` and ``rejections-*`` the stage writes ``inputs-*.parquet``: records read
per unit, which the runner's funnel takes as the stage's ``in``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics

from openwit.beam import spread, write_parquet
from openwit.config import BuildConfig
from openwit.funnel import Rejection
from openwit.schemas import REJECTION_SCHEMA, candidate_schema
from openwit.stage import BeamStage, StageContext, StageResult

from .readers import plan_read_units, read_unit

INPUT_COUNTS_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string()),
        pa.field("format", pa.string()),
        pa.field("part", pa.int32()),
        pa.field("records", pa.int64()),
        pa.field("scanned", pa.string()),  # JSON of the reader's scan counts
    ]
)
INPUT_COUNTS_PREFIX = "inputs"


def _dedup_key(record: dict[str, Any]) -> tuple[str, int, str, str]:
    return (record["source"], record["source_offset"], record["url"], record["text"])


def key_by_uid(record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return record["uid"], record


class FirstOfDuplicates(beam.CombineFn):
    """Keeps the record of a uid with the smallest (source, offset), and counts the copies."""

    def create_accumulator(self) -> tuple[Any, int]:
        return (None, 0)

    def add_input(self, accumulator: tuple[Any, int], record: dict[str, Any]) -> tuple[Any, int]:
        best, count = accumulator
        if best is None or _dedup_key(record) < _dedup_key(best):
            best = record
        return (best, count + 1)

    def merge_accumulators(self, accumulators: Any) -> tuple[Any, int]:
        best, total = None, 0
        for record, count in accumulators:
            total += count
            if record is not None and (best is None or _dedup_key(record) < _dedup_key(best)):
                best = record
        return (best, total)

    def extract_output(self, accumulator: tuple[Any, int]) -> tuple[Any, int]:
        return accumulator


def split_duplicates(item: tuple[str, tuple[dict[str, Any], int]]):
    """The kept record of a uid, and one ``duplicate_pair`` rejection per extra copy."""
    uid, (record, count) = item
    yield record
    if count > 1:
        kept = f"{record['source']}#{record['source_offset']}"
        rejection = Rejection(uid, "ingest", "duplicate_pair", f"same url and text as {kept}")
        for _ in range(count - 1):
            yield beam.pvalue.TaggedOutput("rejected", rejection.as_record())


class ReadUnitDoFn(beam.DoFn):
    """Reads one unit: pairs to the main output; rejections and the unit's count tagged."""

    def setup(self) -> None:
        self.records = Metrics.counter("ingest", "records_read")

    def process(self, unit: Any) -> Any:
        stats: dict[str, int] = {}
        count = 0
        for item in read_unit(unit, stats):
            count += 1
            if isinstance(item, Rejection):
                yield beam.pvalue.TaggedOutput("rejected", item.as_record())
            else:
                yield item
        self.records.inc(count)
        yield beam.pvalue.TaggedOutput(
            "counts",
            {
                "source": unit.path,
                "format": unit.format,
                "part": unit.part,
                "records": count,
                "scanned": json.dumps(stats, sort_keys=True),
            },
        )


def _file_state(path: str) -> list[Any]:
    try:
        info = os.stat(path)
    except OSError:
        return [path]
    return [path, info.st_size, info.st_mtime_ns]


class IngestStage(BeamStage):
    """Reads every input in parallel and writes unique candidate pairs."""

    name = "ingest"
    version = 1
    config_keys = ("inputs",)

    def fingerprint(self, config: BuildConfig) -> dict[str, Any]:
        """Also the size and mtime of each local input file, so a changed file reruns."""
        from openwit.build import expand_input_paths

        fingerprint = super().fingerprint(config)
        try:
            paths = [p for group in expand_input_paths(config) for p in group]
        except Exception:  # reported properly by the input checks before the stage runs
            paths = []
        fingerprint["files"] = [_file_state(p) if "://" not in p else [p] for p in paths]
        return fingerprint

    def output_schema(self, config: BuildConfig) -> pa.Schema:
        return candidate_schema("ingest")

    def read(self, pipeline: Any, ctx: StageContext) -> Any:
        return spread(pipeline, plan_read_units(ctx.config), "Input units")

    def expand_all(self, units: Any) -> tuple[Any, Any, Any]:
        """``(kept, rejected, counts)`` PCollections from the read units."""
        read = units | "Read units" >> beam.ParDo(ReadUnitDoFn()).with_outputs(
            "rejected", "counts", main="pairs"
        )
        unique = (
            read.pairs
            | "Key by uid" >> beam.Map(key_by_uid)
            | "First of each uid" >> beam.CombinePerKey(FirstOfDuplicates())
            | "Split duplicates"
            >> beam.FlatMap(split_duplicates).with_outputs("rejected", main="kept")
        )
        rejected = (read.rejected, unique.rejected) | "All rejections" >> beam.Flatten()
        return unique.kept, rejected, read.counts

    def expand(self, records: Any, ctx: StageContext) -> tuple[Any, Any]:
        kept, rejected, _ = self.expand_all(records)
        return kept, rejected

    def run(self, ctx: StageContext) -> StageResult:
        with ctx.new_pipeline() as pipeline:
            kept, rejected, counts = self.expand_all(self.read(pipeline, ctx))
            write_parquet(kept, ctx.output_prefix, self.output_schema(ctx.config), "Write kept")
            write_parquet(rejected, ctx.rejections_prefix, REJECTION_SCHEMA, "Write rejected")
            write_parquet(
                counts,
                str(ctx.work_dir / INPUT_COUNTS_PREFIX),
                INPUT_COUNTS_SCHEMA,
                "Write input counts",
            )
        return summarize_input_counts(ctx.work_dir)


def summarize_input_counts(work_dir: Path) -> StageResult:
    """Records read (the stage's ``in``) and per-format scan counts from ``inputs-*``."""
    import pyarrow.parquet as pq

    files = sorted(work_dir.glob(f"{INPUT_COUNTS_PREFIX}-*.parquet"))
    rows = [row for f in files for row in pq.read_table(f).to_pylist()]
    by_format: dict[str, dict[str, int]] = {}
    for row in rows:
        totals = by_format.setdefault(row["format"], {"files": 0, "records": 0})
        totals["records"] += row["records"]
        if row["part"] == 0:
            totals["files"] += 1
        for key, value in json.loads(row["scanned"] or "{}").items():
            totals[key] = totals.get(key, 0) + value
    n_in = sum(row["records"] for row in rows)
    return StageResult(n_in=n_in, stats={"inputs": dict(sorted(by_format.items()))})
