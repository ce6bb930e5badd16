"""Two toy stages on the real stage runner: a JSONL reader and a length filter.

They live in a module (not inside a test function) so Beam's multi-processing workers can
unpickle them by reference.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa

from openwit.config import BuildConfig
from openwit.funnel import Rejection
from openwit.schemas import candidate_schema, uid_for
from openwit.stage import CoreStage, StageContext, StageResult

INGEST_SCHEMA = candidate_schema("ingest")


def parse_line(
    source: str, offset_and_line: tuple[int, str]
) -> Iterator[dict[str, Any] | Rejection]:
    offset, line = offset_and_line
    try:
        item = json.loads(line)
        url, text = item["url"], item["caption"]
    except (ValueError, KeyError, TypeError) as exc:
        yield Rejection(f"{source}:{offset}", "toy_ingest", "malformed_record", str(exc))
        return
    yield {
        "uid": uid_for(url, text),
        "url": url,
        "text": text,
        "source": source,
        "source_offset": offset,
    }


class ToyIngest(CoreStage):
    name = "toy_ingest"
    config_keys = ("inputs",)

    def output_schema(self, config: BuildConfig) -> pa.Schema:
        return INGEST_SCHEMA

    def make_core(self, config: BuildConfig):  # the real work is in read(); see below
        return _identity_core

    def read(self, pipeline: Any, ctx: StageContext) -> Any:
        path = ctx.config.inputs[0].path
        with open(path, encoding="utf-8") as handle:
            lines = list(enumerate(handle.read().splitlines()))
        return pipeline | "Read lines" >> beam.Create(lines)

    def expand(self, records: Any, ctx: StageContext) -> tuple[Any, Any]:
        from openwit.beam import apply_core

        path = ctx.config.inputs[0].path
        return apply_core(records, self.name, functools.partial(_line_core, path))

    def run(self, ctx: StageContext) -> StageResult | None:
        super().run(ctx)
        with open(ctx.config.inputs[0].path, encoding="utf-8") as handle:
            return StageResult(n_in=len(handle.read().splitlines()), stats={"files": 1})


def _line_core(source: str):
    return functools.partial(parse_line, source)


def _identity_core():
    return lambda record: [record]


def keep_long_texts(min_chars: int, record: dict[str, Any]) -> Iterator[dict[str, Any] | Rejection]:
    if len(record["text"]) < min_chars:
        yield Rejection(record["uid"], "toy_filter", "too_short", f"{len(record['text'])} chars")
    else:
        yield record


def _filter_core(min_chars: int):
    return functools.partial(keep_long_texts, min_chars)


class ToyFilter(CoreStage):
    name = "toy_filter"
    config_keys = ("text",)

    def output_schema(self, config: BuildConfig) -> pa.Schema:
        return INGEST_SCHEMA

    def make_core(self, config: BuildConfig):
        return functools.partial(_filter_core, config.text.min_chars)


class LossyFilter(ToyFilter):
    """A buggy stage: drops every third record without a rejection."""

    name = "toy_filter"

    def make_core(self, config: BuildConfig):
        return _lossy_core


def _drop_some(record: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if int(record["uid"], 16) % 3:
        yield record


def _lossy_core():
    return _drop_some


class Interrupted(Exception):
    """Stands in for a kill in the middle of a stage."""


class CrashingFilter(ToyFilter):
    name = "toy_filter"

    def run(self, ctx: StageContext) -> StageResult | None:
        (ctx.work_dir / "partial-file").write_text("half done")
        raise Interrupted("killed mid-stage")


class ResumableCrashingFilter(CrashingFilter):
    resumable = True


class ResumableFilter(ToyFilter):
    """Counts how much an interrupted run left behind, then runs normally."""

    resumable = True

    def run(self, ctx: StageContext) -> StageResult | None:
        left = sorted(p.name for p in ctx.work_dir.iterdir())
        (ctx.work_dir / "partial-file").unlink(missing_ok=True)
        super().run(ctx)
        return StageResult(stats={"resumed": ctx.resume, "found": left})
