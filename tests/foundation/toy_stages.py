"""Toy stages on the real stage runner: a JSONL reader and a length filter.

They live in a module (not inside a test function) so Beam's workers can unpickle them by
reference. A toy core appends each unit it runs to the file ``$TOY_UNIT_LOG`` (when set),
so a test can see which units an interrupted and resumed run did again.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from openwit import fs
from openwit.config import BuildConfig
from openwit.funnel import Rejection
from openwit.outputs import UnitOutput, rejections_table
from openwit.resources import Resources
from openwit.schemas import candidate_schema, uid_for
from openwit.stage import Stage, StageContext, StageResult
from openwit.unit_transform import TableCore, UnitWork, apply_record_core, run_units
from openwit.units import WorkUnit

INGEST_SCHEMA = candidate_schema("ingest")


def log_unit(stage: str, unit: WorkUnit) -> None:
    path = os.environ.get("TOY_UNIT_LOG")
    if path:
        with open(path, "a") as handle:
            handle.write(f"{stage} {unit.index}\n")


def parse_line(source: str, offset: int, line: str) -> dict[str, Any] | Rejection:
    try:
        item = json.loads(line)
        url, text = item["url"], item["caption"]
    except (ValueError, KeyError, TypeError) as exc:
        return Rejection(f"{source}:{offset}", "toy_ingest", "malformed_record", str(exc))
    return {
        "uid": uid_for(url, text),
        "url": url,
        "text": text,
        "source": source,
        "source_offset": offset,
    }


class LineCore(UnitWork):
    """Reads a whole JSONL file (the unit's payload) into pairs and rejections."""

    def run(self, unit: WorkUnit) -> UnitOutput:
        log_unit("toy_ingest", unit)
        lines = fs.read_text(unit.payload).splitlines()
        items = [parse_line(unit.payload, i, line) for i, line in enumerate(lines)]
        kept = [i for i in items if not isinstance(i, Rejection)]
        rejected = [i for i in items if isinstance(i, Rejection)]
        return UnitOutput(
            pa.Table.from_pylist(kept, schema=INGEST_SCHEMA),
            rejections_table(rejected),
            stats={"files": 1},
            n_in=len(lines),
        )


class ToyIngest(Stage):
    name = "toy_ingest"
    config_keys = ("inputs",)

    def output_schema(self, config: BuildConfig) -> pa.Schema:
        return INGEST_SCHEMA

    def run(self, ctx: StageContext) -> StageResult:
        units = [WorkUnit(0, payload=ctx.config.inputs[0].path)]
        with ctx.new_pipeline(1) as pipeline:
            run_units(pipeline, "Read", units, None, ctx.run_units_fn(LineCore, INGEST_SCHEMA))
        return StageResult(units=1)


def keep_long_texts(min_chars: int, record: dict[str, Any]) -> Iterator[dict[str, Any] | Rejection]:
    if len(record["text"]) < min_chars:
        yield Rejection(record["uid"], "toy_filter", "too_short", f"{len(record['text'])} chars")
    else:
        yield record


class LoggedCore(TableCore):
    def run(self, unit: WorkUnit) -> UnitOutput:
        log_unit("toy_filter", unit)
        return super().run(unit)


def _filter_core(min_chars: int) -> TableCore:
    core = functools.partial(keep_long_texts, min_chars)
    return LoggedCore(
        functools.partial(apply_record_core, "toy_filter", core, schema=INGEST_SCHEMA)
    )


class ToyFilter(Stage):
    name = "toy_filter"
    config_keys = ("text",)
    rows_per_unit = 2  # several units from a handful of records

    def output_schema(self, config: BuildConfig) -> pa.Schema:
        return INGEST_SCHEMA

    def make_core(self, ctx: StageContext, resources: Resources) -> Callable[[], TableCore]:
        return functools.partial(_filter_core, ctx.config.text.min_chars)


def _drop_some(table: pa.Table) -> UnitOutput:
    keep = [int(uid, 16) % 3 != 0 for uid in table.column("uid").to_pylist()]
    return UnitOutput(table.filter(pa.array(keep)), rejections_table([]))


def _lossy_core() -> TableCore:
    return TableCore(_drop_some)


class LossyFilter(ToyFilter):
    """A buggy stage: drops every third record without a rejection."""

    def make_core(self, ctx: StageContext, resources: Resources) -> Callable[[], TableCore]:
        return _lossy_core


class Interrupted(Exception):
    """Stands in for a kill in the middle of a stage."""


class _CrashOnLastUnit(LoggedCore):
    def __init__(self, apply: Any, last: int) -> None:
        super().__init__(apply)
        self.last = last

    def run(self, unit: WorkUnit) -> UnitOutput:
        if unit.index == self.last:
            raise Interrupted(f"killed in unit {unit.index}")
        return super().run(unit)


def _crashing_core(min_chars: int, last: int) -> TableCore:
    core = functools.partial(keep_long_texts, min_chars)
    apply = functools.partial(apply_record_core, "toy_filter", core, schema=INGEST_SCHEMA)
    return _CrashOnLastUnit(apply, last)


class CrashingFilter(ToyFilter):
    """Dies when it reaches its last unit (after finishing whichever it ran before)."""

    def make_core(self, ctx: StageContext, resources: Resources) -> Callable[[], TableCore]:
        from openwit.units import plan_units

        last = len(plan_units(ctx.input_files, self.rows_per_unit)) - 1
        return functools.partial(_crashing_core, ctx.config.text.min_chars, last)


class _KillsItsWorker(LoggedCore):
    def __init__(self, apply: Any, marker: str | None) -> None:
        super().__init__(apply)
        self.marker = marker

    def run(self, unit: WorkUnit) -> UnitOutput:
        if unit.index == 1 and (self.marker is None or not os.path.exists(self.marker)):
            if self.marker is not None:
                open(self.marker, "w").close()
            import signal

            os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer
        return super().run(unit)


def _killing_core(min_chars: int, marker: str | None) -> TableCore:
    core = functools.partial(keep_long_texts, min_chars)
    apply = functools.partial(apply_record_core, "toy_filter", core, schema=INGEST_SCHEMA)
    return _KillsItsWorker(apply, marker)


class KillsItsWorker(ToyFilter):
    """ToyFilter whose second unit kills the worker process running it: once, when
    ``marker`` (a file it creates) names a path, or on every try when it is None."""

    def __init__(self, marker: str | None) -> None:
        self.marker = marker

    def make_core(self, ctx: StageContext, resources: Resources) -> Callable[[], TableCore]:
        return functools.partial(_killing_core, ctx.config.text.min_chars, self.marker)
