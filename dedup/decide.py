"""From groups to each unit's decisions: the second half of the links pass (Beam DoFns).

Group members (a kind, a group label, a record id) arrive by unit; :class:`MemberRanks`
reads their rank-key parts from the unit and sends them to the group's partition, where
:class:`Settle` applies the keep rule (:func:`openwit.dedup.resolve.settle`); each rejection
goes back to its unit, where :class:`WriteDecisions` merges it with the unit's eval
rejections into the unit's decisions file. Both read steps do nothing unless the
components are final (the side input: the last round's changes).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from openwit import fs
from openwit.beam import beam
from openwit.dedup import batches
from openwit.dedup.batches import concat, text_array
from openwit.dedup.resolve import NEAR, Members, settle, unit_decisions
from openwit.dedup.shuffling import MAIN, Shuffling
from openwit.dedup.slim import RANK_COLUMNS, Settings
from openwit.outputs import parquet_bytes, unit_file
from openwit.units import RowGroup, UnitReader, WorkUnit

LINKS_PASS = "links"
DECISIONS = "decisions"
SUMMARY = "links.summary.json"


class UnitLookup:
    """Finds a work unit by its index among the planned row groups."""

    def __init__(self, groups: Sequence[RowGroup], per_unit: int) -> None:
        self.groups, self.per_unit = list(groups), per_unit
        self.firsts = [g.first_unit for g in self.groups]

    def __call__(self, index: int) -> WorkUnit:
        group = self.groups[bisect.bisect_right(self.firsts, index) - 1]
        return group.units(self.per_unit)[index - group.first_unit]


class MemberRanks(Shuffling):
    """Per unit: the rank-key parts (and sha256) of its records that are in a group, sent
    on to the group's partition. Does nothing unless the components are final."""

    shuffles: ClassVar[dict[str, str]] = {MAIN: "settle", "exact": "settle"}

    def __init__(
        self, settings: Settings, groups: Sequence[RowGroup], per_unit: int, fs_options: dict
    ) -> None:
        super().__init__(settings)
        self.lookup = UnitLookup(groups, per_unit)
        self.fs_options = fs_options

    def setup(self) -> None:
        fs.configure(self.fs_options)
        self.reader = UnitReader(RANK_COLUMNS)

    def start_bundle(self) -> None:
        super().start_bundle()
        # Sources are few (input files): rows carry a code, each payload the list so far.
        self.sources: dict[str, int] = {}
        for buffer in self.buffers.values():
            buffer.extras = lambda: {"sources": text_array(self.sources)}

    def process(self, element: tuple[int, Iterable[batches.Payload]], changes: int) -> Iterator:
        if changes:
            return
        index, payloads = element
        arrays = concat(payloads)
        if not arrays:
            return
        kind, label, ids = distinct_members(arrays["kind"], arrays["label"], arrays["id"])
        table = self.reader.table(self.lookup(index))
        rows = table.take(pa.array(ids - int(self.settings.unit_starts[index])))
        source = pc.fill_null(rows.column("source"), "").combine_chunks()
        for name in pc.unique(source).to_pylist():
            self.sources.setdefault(name, len(self.sources))
        codes = pc.index_in(source, value_set=pa.array(list(self.sources), pa.string()))
        offsets = pc.fill_null(rows.column("source_offset"), -1).to_numpy()
        group_key = label.astype(np.uint64) ^ (kind.astype(np.uint64) << np.uint64(62))
        payload = {
            "kind": kind,
            "label": label,
            "id": ids,
            "uid": pc.fill_null(rows.column("uid"), "").combine_chunks(),
            "source": codes.to_numpy(zero_copy_only=False).astype(np.int64),
            "offset": np.asarray(offsets, np.int64),
        }
        near = np.flatnonzero(kind == NEAR)
        part = {name: batches.take(array, near) for name, array in payload.items()}
        yield from self.send(MAIN, self.partitions(group_key[near]), part)
        # exact groups are split by full sha256 when settled: only their members carry it
        exact = np.flatnonzero(kind != NEAR)
        part = {name: batches.take(array, exact) for name, array in payload.items()}
        part["sha256"] = rows.column("sha256").combine_chunks().take(pa.array(exact))
        yield from self.send("exact", self.partitions(group_key[exact]), part)


def distinct_members(
    kind: np.ndarray, label: np.ndarray, ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.lexsort((ids, label, kind))
    kind, label, ids = kind[order], label[order], ids[order]
    first = np.r_[True, (kind[1:] != kind[:-1]) | (label[1:] != label[:-1]) | (ids[1:] != ids[:-1])]
    return kind[first], label[first], ids[first]


def members_of(payloads: Iterable[batches.Payload]) -> Members | None:
    """The members a group partition received (each payload with its own source list)."""
    parts = []
    for payload in batches.load(payloads):
        part = batches.unpack(payload)
        part["source"] = part.pop("sources").take(pa.array(part["source"]))
        if "sha256" not in part:
            part["sha256"] = pa.repeat(pa.scalar("", pa.string()), len(part["id"]))
        parts.append(part)
    if not parts:
        return None
    columns = batches.join_columns(parts)
    return Members(**{name: columns[name] for name in Members.__dataclass_fields__})


class Settle(Shuffling):
    """Per group partition: the keep rule; each rejection goes to its record's unit."""

    shuffles: ClassVar[dict[str, str]] = {MAIN: "decisions"}

    def process(self, element: tuple[int, Iterable[batches.Payload]]) -> Iterator:
        members = members_of(element[1])
        if members is None:
            return
        ids, reasons, kept = settle(members)
        arrays = {"id": ids, "reason": reasons, "argument": kept}
        yield from self.send(MAIN, self.units(ids), arrays)


class WriteDecisions(beam.DoFn):
    """One unit's decisions, written whole into the attempt (a retry writes the same
    file). Does nothing unless the components are final."""

    def __init__(self, settings: Settings, attempt: str, fs_options: dict) -> None:
        self.settings, self.attempt, self.fs_options = settings, attempt, fs_options

    def setup(self) -> None:
        fs.configure(self.fs_options)

    def process(
        self, element: tuple[int, Iterable[batches.Payload]], changes: int
    ) -> Iterator[int]:
        if changes:
            return
        unit, payloads = element
        arrays = concat(payloads)
        rows = arrays["id"] - int(self.settings.unit_starts[unit])
        table = unit_decisions(rows, arrays["reason"], arrays["argument"])
        url = unit_file(self.attempt, LINKS_PASS, DECISIONS, unit, "parquet")
        fs.write_bytes(url, parquet_bytes(table))
        yield unit


class WriteSummary(beam.DoFn):
    def __init__(self, settings: Settings, url: str, fs_options: dict) -> None:
        self.settings, self.url, self.fs_options = settings, url, fs_options

    def process(self, stats: dict[str, int], changes: int) -> Iterator[int]:
        fs.configure(self.fs_options)
        shuffles: dict[str, dict[str, int]] = {}
        for key, value in sorted(stats.items()):
            name, stat = key.rsplit(":", 1)
            shuffles.setdefault(name, {})[stat] = value
        summary = {
            "records": self.settings.records,
            "partitions": self.settings.partitions,
            "rounds": self.settings.rounds,
            "changes_in_last_round": changes,
            "shuffles": shuffles,
        }
        fs.write_json(self.url, summary, skip_if_same=False)
        yield changes
