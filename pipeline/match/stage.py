"""Build stage ``match``: which queries each caption contains (MetaCLIP substring matching).

Sets ``query_ids`` (sorted row numbers in queries.parquet); a caption that contains no
query is rejected as ``no_query_match``. The automaton is built once per worker process
(:func:`openwit.pipeline.match.matcher.shared_matcher`), from the queries file, never
shipped with the transform or as a side input. The stage's fingerprint includes the
sha256 of the queries file, so a rebuilt query list reruns matching.

The core is a function of a unit's table (:func:`match_table`): one loop over the text
column, the kept table built with Arrow.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from openwit.config import BuildConfig
from openwit.outputs import UnitOutput
from openwit.resources import Resources
from openwit.schemas import REJECTION_SCHEMA, candidate_schema
from openwit.stage import Stage, StageContext
from openwit.unit_transform import TableCore

from .matcher import (
    QueryMatcher,
    check_queries_file,
    file_digest,
    prepare_shared_matcher,
    shared_matcher,
)

STAGE = "match"
MATCH_SCHEMA = candidate_schema("match")
QUERY_IDS_TYPE = MATCH_SCHEMA.field("query_ids").type


def match_table(matcher: QueryMatcher, table: pa.Table) -> UnitOutput:
    """The match core: a unit's kept records (with ``query_ids``) and its rejections."""
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
    return UnitOutput(kept, rejections)


def match_core(queries_path: str, digest: str) -> TableCore:
    return TableCore(functools.partial(match_table, shared_matcher(queries_path, digest)))


class MatchStage(Stage):
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

    def worker_state(self, config: BuildConfig) -> tuple[str, list[Any]]:
        # the automaton of 500k queries: about 2 s of CPU, in every worker at once
        return (f"{prepare_shared_matcher.__module__}:prepare_shared_matcher", [config.queries])

    def make_core(self, ctx: StageContext, resources: Resources) -> Callable[[], Any]:
        queries = ctx.config.queries
        check_queries_file(queries)  # a bad file fails here, not in every worker
        return functools.partial(match_core, queries, file_digest(queries))
