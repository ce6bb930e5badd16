"""The dedup stage's ``links`` pass as one Beam graph: every shuffle carries batches.

::

    units ─ SlimUnits ─┬─ GroupByKey(sha256 prefix) ─ ExactGroups ──────────────┐ members
                       │                                                         │ (by unit)
                       ├─ GroupByKey(band bucket) ─ NearLinks ─ R rounds of      │
                       │     GroupByKey(node) ─ LargeStar ─ GroupByKey(node)     │
                       │     ─ SmallStar ────────────────────────────────────────┤
                       │                                                         ▼
                       │          GroupByKey(unit) ─ MemberRanks ─ GroupByKey(group) ─ Settle
                       └─ eval rejections ────────────────────┐                      │
                                                              ▼                      ▼
                                               GroupByKey(unit) ─ WriteDecisions (per unit)

Every element is ``(partition, payload)`` (:mod:`openwit.dedup.batches`); no step sees
more than one partition's records or links. ``R`` rounds of large-star / small-star are
unrolled in the graph; if the last one still changed the graph, the components are not
final, ``MemberRanks`` and ``WriteDecisions`` write nothing, and the stage runs the pass
again with twice the rounds (:mod:`openwit.dedup.stage`). The pass writes, besides the
decisions, each unit's eval matches and ``links.summary.json``: the last round's changes
and the bytes and elements each shuffle carried.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from openwit import fs
from openwit.beam import beam
from openwit.dedup import batches
from openwit.dedup.batches import (
    PartitionBuffers,
    concat,
    partition_of,
    text_array,
    unit_of,
)
from openwit.dedup.components import distinct, large_star, small_star
from openwit.dedup.near import near_links
from openwit.dedup.resolve import EVAL, EXACT, NEAR, Members, prefix_groups, settle, unit_decisions
from openwit.dedup.slim import RANK_COLUMNS, Settings, band_copies, slim_unit
from openwit.outputs import parquet_bytes, unit_file
from openwit.units import RowGroup, UnitReader, WorkUnit

LINKS_PASS = "links"
DECISIONS = "decisions"
MATCHES = "eval-matches"
SUMMARY = "links.summary.json"
MAIN = "main"
STATS = "stats"
CHANGES = "changes"


def windowed(value: Any) -> Any:
    from apache_beam.transforms.window import GlobalWindows

    return GlobalWindows.windowed_value(value)


class Shuffling(beam.DoFn):
    """A DoFn whose outputs feed shuffles: rows are buffered per destination partition and
    sent as one payload each at the bundle's end; the bytes sent are reported as stats.
    ``shuffles`` maps output tags (``main`` first) to the names of the shuffles they feed."""

    shuffles: ClassVar[dict[str, str]] = {}

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def start_bundle(self) -> None:
        spill = self.settings.shuffle_dir
        self.buffers = {
            tag: PartitionBuffers(spill_to=spill, name=name) for tag, name in self.shuffles.items()
        }

    def send(self, tag: str, partitions: np.ndarray, arrays: dict[str, np.ndarray]) -> Iterator:
        for element in self.buffers[tag].add(partitions, arrays):
            yield element if tag == MAIN else beam.pvalue.TaggedOutput(tag, element)

    def finish_bundle(self) -> Iterator:
        for tag, buffer in self.buffers.items():
            for element in buffer.flush():
                value = windowed(element)
                yield value if tag == MAIN else beam.pvalue.TaggedOutput(tag, value)
            name = self.shuffles[tag]
            for stat, number in (
                ("bytes", buffer.bytes_emitted),
                ("runner_bytes", buffer.runner_bytes),
                ("elements", buffer.elements_emitted),
            ):
                yield beam.pvalue.TaggedOutput(STATS, windowed((f"{name}:{stat}", number)))

    def partitions(self, ids: np.ndarray) -> np.ndarray:
        return partition_of(ids, self.settings.partitions)

    def units(self, ids: np.ndarray) -> np.ndarray:
        return unit_of(ids, self.settings.unit_starts)


class UnitLookup:
    """Finds a work unit by its index among the planned row groups."""

    def __init__(self, groups: Sequence[RowGroup], per_unit: int) -> None:
        self.groups, self.per_unit = list(groups), per_unit
        self.firsts = [g.first_unit for g in self.groups]

    def __call__(self, index: int) -> WorkUnit:
        group = self.groups[bisect.bisect_right(self.firsts, index) - 1]
        return group.units(self.per_unit)[index - group.first_unit]


class SlimUnits(Shuffling):
    """Per unit: the exact and band keys of its records, its eval matches (written as the
    unit's file) and eval rejections."""

    shuffles: ClassVar[dict[str, str]] = {MAIN: "exact", "bands": "bands", DECISIONS: "decisions"}

    def __init__(
        self, settings: Settings, eval_hashes: list, detector: Any, attempt: str, fs_options: dict
    ) -> None:
        super().__init__(settings)
        self.eval_hashes, self.detector = eval_hashes, detector
        self.attempt, self.fs_options = attempt, fs_options

    def setup(self) -> None:
        from openwit.dedup.slim import EVAL_COLUMNS, SEARCH_COLUMNS

        fs.configure(self.fs_options)
        self.catalog = None
        columns = list(SEARCH_COLUMNS)
        if self.eval_hashes:
            from openwit.dedup.evalhash import EvalCatalog

            self.catalog = EvalCatalog(self.detector, self.eval_hashes)
            columns += EVAL_COLUMNS
        self.reader = UnitReader(columns)

    def process(self, unit: WorkUnit) -> Iterator:
        settings = self.settings
        first = int(settings.unit_starts[unit.index])
        slim = slim_unit(self.reader.table(unit), first, settings, self.catalog)
        if slim.matches is not None:
            url = unit_file(self.attempt, LINKS_PASS, MATCHES, unit, "parquet")
            fs.write_bytes(url, parquet_bytes(slim.matches))
        prefix = slim.exact_prefix
        exact = {"prefix": prefix, "id": slim.exact_ids}
        yield from self.send(MAIN, partition_of(prefix, settings.partitions), exact)
        copies = band_copies(slim.near_ids, slim.phash, slim.dhash, settings.radius)
        key = copies.pop("key")
        if settings.dhash_radius is None:
            del copies["dhash"]
        yield from self.send("bands", partition_of(key, settings.partitions), copies)
        if len(slim.eval_rows):
            n = len(slim.eval_rows)
            decisions = {
                "id": slim.eval_rows + first,
                "reason": np.full(n, EVAL, np.uint8),
                "argument": text_array(slim.eval_details),
            }
            yield from self.send(DECISIONS, np.full(n, unit.index), decisions)


class ExactGroups(Shuffling):
    """Per sha256-prefix partition: the records whose prefix another record shares."""

    shuffles: ClassVar[dict[str, str]] = {MAIN: "members"}

    def process(self, element: tuple[int, Iterable[batches.Payload]]) -> Iterator:
        arrays = concat(element[1])
        if not arrays:
            return
        label, member = prefix_groups(arrays["prefix"], arrays["id"])
        kind = np.full(len(member), EXACT, np.uint8)
        yield from self.send(MAIN, self.units(member), {"kind": kind, "label": label, "id": member})


class NearLinks(Shuffling):
    """Per partition of band buckets: a forest of the near-duplicate links found there,
    sent to the first large-star round (each link keyed by both its ends)."""

    shuffles: ClassVar[dict[str, str]] = {MAIN: "star-1-large"}

    def process(self, element: tuple[int, Iterable[batches.Payload]]) -> Iterator:
        arrays = concat(element[1])
        if not arrays:
            return
        ids = arrays["id"]
        dhash = arrays.get("dhash", np.zeros(len(ids), np.uint64))
        radius, dhash_radius = self.settings.radius, self.settings.dhash_radius
        member, root = near_links(ids, arrays["phash"], dhash, arrays["band"], radius, dhash_radius)
        yield from send_both_ways(self, member, root)


def send_both_ways(fn: Shuffling, a: np.ndarray, b: np.ndarray) -> Iterator:
    node, neighbour = np.r_[a, b], np.r_[b, a]
    yield from fn.send(MAIN, fn.partitions(node), {"node": node, "neighbour": neighbour})


class StarRound(Shuffling):
    """One half of a round; counts how much it changed the graph (reported by the last)."""

    def start_bundle(self) -> None:
        super().start_bundle()
        self.changed = 0

    def finish_bundle(self) -> Iterator:
        yield from super().finish_bundle()
        yield beam.pvalue.TaggedOutput(CHANGES, windowed(self.changed))


class LargeStar(StarRound):
    def __init__(self, settings: Settings, round_: int) -> None:
        super().__init__(settings)
        self.shuffles = {MAIN: f"star-{round_}-small"}

    def process(self, element: tuple[int, Iterable[batches.Payload]]) -> Iterator:
        arrays = concat(element[1])
        if not arrays:
            return
        larger, smaller, changed = large_star(arrays["node"], arrays["neighbour"])
        self.changed += changed
        yield from self.send(MAIN, self.partitions(larger), {"larger": larger, "smaller": smaller})


class SmallStar(StarRound):
    """Small-star; after the last round, each node of a component is sent to its unit
    with the component's label (its smallest id)."""

    def __init__(self, settings: Settings, round_: int, last: bool) -> None:
        super().__init__(settings)
        self.last = last
        self.shuffles = {MAIN: "members" if last else f"star-{round_ + 1}-large"}

    def process(self, element: tuple[int, Iterable[batches.Payload]]) -> Iterator:
        arrays = concat(element[1])
        if not arrays:
            return
        larger, smaller, changed = small_star(arrays["larger"], arrays["smaller"])
        self.changed += changed
        if not self.last:
            yield from send_both_ways(self, larger, smaller)
            return
        roots = distinct(smaller)
        member, label = np.r_[larger, roots], np.r_[smaller, roots]
        kind = np.full(len(member), NEAR, np.uint8)
        yield from self.send(MAIN, self.units(member), {"kind": kind, "label": label, "id": member})


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
            "uid": rows.column("uid").combine_chunks(),
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


def build_links(
    units: Any,
    settings: Settings,
    eval_hashes: list,
    detector: Any,
    groups: Sequence[RowGroup],
    per_unit: int,
    attempt: str,
    fs_options: dict,
) -> Any:
    """The links pass over ``units`` (a PCollection of work units); returns the indexes
    of the units whose decisions it wrote."""
    slim = units | "Slim units" >> beam.ParDo(
        SlimUnits(settings, eval_hashes, detector, attempt, fs_options)
    ).with_outputs("bands", DECISIONS, STATS, main=MAIN)
    stats = [slim[STATS]]

    exact = (
        slim[MAIN]
        | "Group by sha256 prefix" >> beam.GroupByKey()
        | "Exact groups" >> beam.ParDo(ExactGroups(settings)).with_outputs(STATS, main=MAIN)
    )
    near = (
        slim["bands"]
        | "Group by band bucket" >> beam.GroupByKey()
        | "Near links" >> beam.ParDo(NearLinks(settings)).with_outputs(STATS, main=MAIN)
    )
    stats += [exact[STATS], near[STATS]]
    edges = near[MAIN]
    changes = []
    for round_ in range(1, settings.rounds + 1):
        last = round_ == settings.rounds
        large = (
            edges
            | f"Round {round_}: group by node" >> beam.GroupByKey()
            | f"Round {round_}: large-star"
            >> beam.ParDo(LargeStar(settings, round_)).with_outputs(STATS, CHANGES, main=MAIN)
        )
        small = (
            large[MAIN]
            | f"Round {round_}: group by larger node" >> beam.GroupByKey()
            | f"Round {round_}: small-star"
            >> beam.ParDo(SmallStar(settings, round_, last)).with_outputs(STATS, CHANGES, main=MAIN)
        )
        stats += [large[STATS], small[STATS]]
        edges = small[MAIN]
        if last:
            changes = [large[CHANGES], small[CHANGES]]
    changed = (
        changes
        | "Last round's changes" >> beam.Flatten()
        | "Sum changes" >> beam.CombineGlobally(sum)
    )
    final = beam.pvalue.AsSingleton(changed)

    ranks = (
        (exact[MAIN], edges)
        | "Members" >> beam.Flatten()
        | "Group members by unit" >> beam.GroupByKey()
        | "Rank keys"
        >> beam.ParDo(MemberRanks(settings, groups, per_unit, fs_options), final).with_outputs(
            "exact", STATS, main=MAIN
        )
    )
    settled = (
        (ranks[MAIN], ranks["exact"])
        | "Members with ranks" >> beam.Flatten()
        | "Group by group" >> beam.GroupByKey()
        | "Keep rule" >> beam.ParDo(Settle(settings)).with_outputs(STATS, main=MAIN)
    )
    stats += [ranks[STATS], settled[STATS]]
    written = (
        (settled[MAIN], slim[DECISIONS])
        | "Decisions" >> beam.Flatten()
        | "Group decisions by unit" >> beam.GroupByKey()
        | "Write decisions" >> beam.ParDo(WriteDecisions(settings, attempt, fs_options), final)
    )
    _ = (
        stats
        | "All stats" >> beam.Flatten()
        | "Sum stats" >> beam.CombinePerKey(sum)
        | "Stats as one" >> beam.combiners.ToDict()
        | "Write summary"
        >> beam.ParDo(WriteSummary(settings, fs.join(attempt, SUMMARY), fs_options), final)
    )
    return written
