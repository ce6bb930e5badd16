"""Build stage ``match``: which queries each caption contains (MetaCLIP substring matching).

Sets ``query_ids`` (sorted row numbers in queries.parquet); a caption that contains no
query is rejected as ``no_query_match``. The automaton is built in ``DoFn.setup()`` from
the queries file, once per worker process (:func:`openwit.pipeline.match.matcher.shared_matcher`),
never shipped with the transform or as a side input. The stage's fingerprint includes the
sha256 of the queries file, so a rebuilt query list reruns matching.

Matching costs a few microseconds a caption, less than Beam spends moving one dict record
through a DoFn, so the stage moves Arrow tables instead: it reads the previous stage's
Parquet as tables, matches a table's text column in one loop (:func:`match_table`) and
writes tables. ``match_record`` is the same core for one record.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from openwit.beam import REJECTED, listed
from openwit.config import BuildConfig
from openwit.funnel import Rejection
from openwit.schemas import REJECTION_SCHEMA, candidate_schema
from openwit.stage import BeamStage, StageContext, StageResult

from .matcher import QueryMatcher, check_queries_file, file_digest, shared_matcher

STAGE = "match"
MATCH_SCHEMA = candidate_schema("match")
QUERY_IDS_TYPE = MATCH_SCHEMA.field("query_ids").type


def match_record(
    matcher: QueryMatcher, record: dict[str, Any]
) -> Iterator[dict[str, Any] | Rejection]:
    """The match core for one record: with its ``query_ids``, or ``no_query_match``."""
    query_ids = matcher.match(record["text"])
    if not query_ids:
        yield Rejection(record["uid"], STAGE, "no_query_match", record["text"][:80])
    else:
        yield {**record, "query_ids": query_ids}


def match_table(matcher: QueryMatcher, table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """The match core for a table of text-stage records: ``(kept, rejections)`` tables."""
    texts = table.column("text").to_pylist()
    match = matcher.match
    query_ids = [match(text) for text in texts]
    matched = pa.array([bool(ids) for ids in query_ids], pa.bool_())
    with_ids = table.append_column("query_ids", pa.array(query_ids, QUERY_IDS_TYPE))
    kept = with_ids.filter(matched).select(MATCH_SCHEMA.names).cast(MATCH_SCHEMA)
    missed = table.filter(pc.invert(matched))
    rejections = pa.table(
        {
            "uid": missed.column("uid"),
            "stage": pa.array([STAGE] * missed.num_rows, pa.string()),
            "reason": pa.array(["no_query_match"] * missed.num_rows, pa.string()),
            "detail": pc.utf8_slice_codeunits(missed.column("text"), 0, 80),
        },
        schema=REJECTION_SCHEMA,
    )
    return kept, rejections


class MatchTableDoFn(beam.DoFn):
    """Applies :func:`match_table` to each Arrow table; rejections to the tagged output."""

    def __init__(self, queries_path: str, digest: str) -> None:
        self.queries_path, self.digest = queries_path, digest

    def setup(self) -> None:
        self.matcher = shared_matcher(self.queries_path, self.digest)
        self.kept = Metrics.counter(STAGE, "kept")
        self.rejected = Metrics.counter(STAGE, "rejected_no_query_match")

    def process(self, table: pa.Table) -> Any:
        kept, rejections = match_table(self.matcher, table)
        self.kept.inc(kept.num_rows)
        self.rejected.inc(rejections.num_rows)
        if kept.num_rows:
            yield kept
        if rejections.num_rows:
            yield beam.pvalue.TaggedOutput(REJECTED, rejections)


def match_core(queries_path: str, digest: str) -> Callable[[dict[str, Any]], Any]:
    return functools.partial(match_record, shared_matcher(queries_path, digest))


class MatchStage(BeamStage):
    name = STAGE
    version = 1
    config_keys = ("queries",)

    def fingerprint(self, config: BuildConfig) -> dict[str, Any]:
        fingerprint = super().fingerprint(config)
        try:
            fingerprint["queries_sha256"] = file_digest(config.queries)
        except OSError:  # reported by the input checks before the stage runs
            fingerprint["queries_sha256"] = None
        return fingerprint

    def output_schema(self, config: BuildConfig) -> pa.Schema:
        return MATCH_SCHEMA

    def make_core(self, config: BuildConfig) -> Callable[[], Any]:
        """The record core (for tests and other runners' per-record use)."""
        check_queries_file(config.queries)
        return functools.partial(match_core, config.queries, file_digest(config.queries))

    def read(self, pipeline: Any, ctx: StageContext) -> Any:
        paths = sorted(str(f) for f in ctx.input_files)
        if not paths:
            return pipeline | "No input" >> beam.Create([])
        # ReadAllFromParquetBatched reshuffles the files' ranges itself.
        return listed(pipeline, paths, "Input files") | "Read tables" >> (
            beam.io.ReadAllFromParquetBatched()
        )

    def expand(self, tables: Any, ctx: StageContext) -> tuple[Any, Any]:
        check_queries_file(ctx.config.queries)  # a bad file fails here, not in every worker
        dofn = MatchTableDoFn(ctx.config.queries, file_digest(ctx.config.queries))
        outputs = tables | "Match tables" >> beam.ParDo(dofn).with_outputs(REJECTED, main="kept")
        return outputs.kept, outputs[REJECTED]

    def run(self, ctx: StageContext) -> StageResult:
        with ctx.new_pipeline() as pipeline:
            kept, rejected = self.expand(self.read(pipeline, ctx), ctx)
            _ = kept | "Write kept" >> beam.io.WriteToParquetBatched(
                ctx.output_prefix, MATCH_SCHEMA, codec="zstd", file_name_suffix=".parquet"
            )
            _ = rejected | "Write rejected" >> beam.io.WriteToParquetBatched(
                ctx.rejections_prefix, REJECTION_SCHEMA, codec="zstd", file_name_suffix=".parquet"
            )
        return StageResult()
