"""The one Beam transform every stage's units run through.

``items | cut into units | Reshuffle | ParDo(RunUnits)``: the launcher lists coarse items
(row groups, input file parts, shard ranges), workers cut them into :class:`WorkUnit`\\ s,
Beam spreads the units over its workers, and :class:`RunUnits` hands each unit to the
stage's core and writes what the core returns (:func:`openwit.outputs.write_unit`). A
stage never writes its own records: it returns them.

A core is an object with ``start(unit) -> finish`` (``finish()`` returns the unit's
:class:`UnitOutput`) and ``in_flight``: how many started units may wait for their finish
while the next ones start (the download keeps one unit's slowest images in flight while the
next unit's fill the threads). A ``finish`` with a ``done()`` method says whether it would
return at once: finished units are written first, so one slow unit never holds back the
commits of those started after it. Most cores do a unit's work when they start it: they
subclass :class:`UnitWork` and write ``run(unit)``. :class:`TableCore` wraps a plain
function of an Arrow table; :func:`apply_record_core` applies a function of one record to a
table's records.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

import pyarrow as pa

from openwit import fs
from openwit.beam import beam, listed
from openwit.funnel import Rejection
from openwit.logs import quiet_beam_logging
from openwit.outputs import UnitOutput, done_marker, rejections_table, write_unit
from openwit.units import UnitReader, WorkUnit

#: A unit's result, once asked for.
Finish = Callable[[], UnitOutput]


class UnitCore(Protocol):
    in_flight: int

    def start(self, unit: WorkUnit) -> Finish: ...

    def close(self) -> None: ...


class UnitWork:
    """A core that does a unit's work when it starts it (nothing stays in flight):
    subclasses write :meth:`run`, and :meth:`close` where they hold something to release."""

    in_flight = 0

    def run(self, unit: WorkUnit) -> UnitOutput:
        raise NotImplementedError

    def start(self, unit: WorkUnit) -> Finish:
        output = self.run(unit)
        return lambda: output

    def close(self) -> None:
        return None


class TableCore(UnitWork):
    """A core that is a function of the unit's rows (an Arrow table)."""

    def __init__(
        self, apply: Callable[[pa.Table], UnitOutput], columns: Sequence[str] | None = None
    ) -> None:
        self.apply = apply
        self.reader = UnitReader(columns)

    def run(self, unit: WorkUnit) -> UnitOutput:
        return self.apply(self.reader.table(unit))


#: A record core: one record in, records or rejections out.
RecordCore = Callable[[dict[str, Any]], Iterable["dict[str, Any] | Rejection"]]


def apply_record_core(
    stage: str, core: RecordCore, table: pa.Table, schema: pa.Schema
) -> UnitOutput:
    """Run a record core over a table's records. A core that raises on a record rejects it
    as ``stage_error`` (with the exception text): one odd record never stops a build."""
    kept: list[dict[str, Any]] = []
    rejected: list[Rejection] = []
    for record in table.to_pylist():
        try:
            outputs = list(core(record))
        except Exception as exc:
            rejected.append(Rejection.stage_error(record.get("uid", ""), stage, exc))
            continue
        for output in outputs:
            if isinstance(output, Rejection):
                rejected.append(output)
            else:
                kept.append(output)
    return UnitOutput(pa.Table.from_pylist(kept, schema=schema), rejections_table(rejected))


class RunUnits(beam.DoFn):
    """Runs a stage's core over work units and writes each unit's files.

    Outputs one element per finished unit (its index), which later passes of the same
    pipeline may wait on as a side input. With ``resume``, units whose done marker exists
    (an interrupted run finished them) are not run again.
    """

    def __init__(
        self,
        stage: str,
        attempt: str,
        make_core: Callable[[], UnitCore],
        schema: pa.Schema | None,
        fs_options: dict[str, Any],
        pass_name: str = "",
        resume: bool = False,
    ) -> None:
        self.stage = stage
        self.attempt = attempt
        self.make_core = make_core
        self.schema = schema
        self.fs_options = fs_options
        self.pass_name = pass_name
        self.resume = resume

    def setup(self) -> None:
        quiet_beam_logging()
        fs.configure(self.fs_options)
        self.core = self.make_core()
        self.done: set[str] = set()
        if self.resume:
            self.done = set(fs.list_files(self.attempt))
        self.units_done = beam.metrics.Metrics.counter(self.stage, "units_done")
        self.kept = beam.metrics.Metrics.counter(self.stage, "kept")
        self.rejected = beam.metrics.Metrics.counter(self.stage, "rejected")

    def teardown(self) -> None:
        core = getattr(self, "core", None)
        if core is not None:
            core.close()

    def start_bundle(self) -> None:
        self.pending: deque[tuple[WorkUnit, Finish]] = deque()

    def process(self, unit: WorkUnit) -> Iterator[int]:
        if done_marker(self.attempt, self.pass_name, unit) in self.done:
            yield unit.index
            return
        self.pending.append((unit, self.core.start(unit)))
        while len(self.pending) > self.core.in_flight:
            yield self._finish(*self._next_pending())

    def finish_bundle(self) -> None:
        while self.pending:  # their indexes are not needed: the bundle's end is the barrier
            self._finish(*self.pending.popleft())

    def _next_pending(self) -> tuple[WorkUnit, Finish]:
        """The first pending unit that is finished; when none is yet and every one can say
        (``done()``), the first to finish; else the oldest."""
        checks = [getattr(finish, "done", None) for _, finish in self.pending]
        if any(check is None for check in checks):
            return self.pending.popleft()
        while True:
            for index, done in enumerate(checks):
                if done():
                    item = self.pending[index]
                    del self.pending[index]
                    return item
            time.sleep(0.005)  # a unit's images are on the network; check again shortly

    def _finish(self, unit: WorkUnit, finish: Finish) -> int:
        marker = write_unit(self.attempt, self.pass_name, unit, finish(), self.schema)
        self.units_done.inc()
        self.kept.inc(marker["out"])
        self.rejected.inc(sum(marker["rejected"].values()))
        return unit.index


def run_units(
    pipeline: Any,
    label: str,
    items: Sequence[Any],
    cut: Callable[[Any], Iterable[WorkUnit]] | None,
    dofn: RunUnits,
    after: Any = None,
) -> Any:
    """``items`` (cut into units by ``cut``, or units already) through ``dofn`` on every
    worker; ``after``: a PCollection this pass must wait for (an earlier pass's output).
    Returns the finished units' indexes."""
    units = listed(pipeline, items, f"{label}: plan")
    if cut is not None:
        units = units | f"{label}: cut into units" >> beam.FlatMap(cut)
    units = units | f"{label}: spread" >> beam.Reshuffle()
    if after is not None:
        units = units | f"{label}: after earlier pass" >> beam.Map(
            lambda unit, _: unit, beam.pvalue.AsList(after)
        )
    return units | label >> beam.ParDo(dofn)
