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
and the bytes and elements each shuffle carried. The search's DoFns are here, those from
groups to decisions in :mod:`openwit.dedup.decide`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar

import numpy as np

from openwit import fs
from openwit.beam import beam
from openwit.dedup import batches
from openwit.dedup.batches import concat, partition_of, text_array
from openwit.dedup.components import distinct, large_star, small_star
from openwit.dedup.decide import (
    DECISIONS,
    LINKS_PASS,
    SUMMARY,
    MemberRanks,
    Settle,
    WriteDecisions,
    WriteSummary,
)
from openwit.dedup.near import near_links
from openwit.dedup.resolve import EVAL, EXACT, NEAR, prefix_groups
from openwit.dedup.shuffling import CHANGES, MAIN, STATS, Shuffling, windowed
from openwit.dedup.slim import Settings, band_copies, slim_unit
from openwit.outputs import parquet_bytes, unit_file
from openwit.units import RowGroup, UnitReader, WorkUnit

MATCHES = "eval-matches"


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
    of the units whose decisions it wrote, and the last round's changes (one number: 0
    when the components are final)."""
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
    return written, changed
