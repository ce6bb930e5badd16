"""Build stage ``match``: which queries each caption contains (MetaCLIP substring matching).

Sets ``query_ids`` (sorted row numbers in queries.parquet); a caption that contains no
query is rejected as ``no_query_match``. The automaton is built in ``DoFn.setup()`` from
the queries file, once per worker process (:func:`openwit.pipeline.matcher.shared_matcher`),
never shipped with the transform or as a side input. The stage's fingerprint includes the
sha256 of the queries file, so a rebuilt query list reruns matching.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from openwit.config import BuildConfig
from openwit.funnel import Rejection
from openwit.schemas import candidate_schema
from openwit.stage import CoreStage

from .matcher import QueryMatcher, check_queries_file, file_digest, shared_matcher

STAGE = "match"


def match_record(
    matcher: QueryMatcher, record: dict[str, Any]
) -> Iterator[dict[str, Any] | Rejection]:
    """The match-stage core: the record with its ``query_ids``, or ``no_query_match``."""
    query_ids = matcher.match(record["text"])
    if not query_ids:
        yield Rejection(record["uid"], STAGE, "no_query_match", record["text"][:80])
    else:
        yield {**record, "query_ids": query_ids}


def match_core(queries_path: str, digest: str) -> Callable[[dict[str, Any]], Any]:
    return functools.partial(match_record, shared_matcher(queries_path, digest))


class MatchStage(CoreStage):
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
        return candidate_schema("match")

    def make_core(self, config: BuildConfig) -> Callable[[], Any]:
        check_queries_file(config.queries)  # a bad file fails here, not in every worker
        return functools.partial(match_core, config.queries, file_digest(config.queries))
