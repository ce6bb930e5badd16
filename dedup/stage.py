"""The ``dedup`` build stage: exact duplicates, near duplicates, eval-set overlap.

Input and output are ``candidate_schema("image")`` records (metadata: the image bytes stay
in the download stage's files); the stage only removes records.
Rejections: ``exact_duplicate`` (same sha256 as a kept record), ``near_duplicate`` (pHash
within ``near_duplicate_radius`` bits and dHash within ``near_duplicate_dhash_radius`` of
another record of its group), ``eval_overlap`` (matches an evaluation image; only with
``decontaminate: true``). In each group the record with the smallest rank key is kept
(:func:`openwit.dedup.groups.rank_key`). Every eval match is written, rejected or not, to
``links.eval-matches-U.parquet`` files of the stage for the audit.

Two passes in one pipeline. ``links`` (:mod:`openwit.dedup.links`) finds the groups with
batched shuffles of ids and hashes and writes one decisions file per unit that has
rejections; the keep pass, once every decisions file is written, reads each unit with its
decisions file and writes kept | rejected. When the components are not final after the
rounds the pipeline unrolled, the keep pass does nothing and the stage runs the pipeline
again with twice the rounds.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from openwit import fs
from openwit.config import BuildConfig
from openwit.dedup.decide import DECISIONS, LINKS_PASS, SUMMARY
from openwit.dedup.detector import Detector
from openwit.dedup.layout import MATCHES_GLOB, STAGE
from openwit.dedup.links import build_links
from openwit.dedup.slim import Settings
from openwit.outputs import StageTotals, UnitOutput, unit_file
from openwit.schemas import REJECTION_SCHEMA, candidate_schema
from openwit.stage import Stage, StageContext, StageResult, cut_row_group
from openwit.unit_transform import UnitWork
from openwit.units import RowGroup, UnitReader, WorkUnit, count_units

OUTPUT_SCHEMA = candidate_schema("image")
#: Records per partition of the search's shuffles (the memory of one step: ~100 bytes a
#: record), and the fewest partitions (so that every worker has some).
ROWS_PER_PARTITION = 250_000
MIN_PARTITIONS = 8
#: Spilled shuffle payloads, deleted after each links pass.
SHUFFLE_DIR = "links.shuffle"
#: The most large-star/small-star rounds a pass may unroll before the stage gives up.
MAX_ROUNDS = 1024


def unit_starts(groups: Sequence[RowGroup], per_unit: int) -> np.ndarray:
    """The id (input row number) of each unit's first record, and the number of records."""
    starts, total = [], 0
    for group in groups:
        starts.extend(total + unit.slices[0].start for unit in group.units(per_unit))
        total += group.rows
    return np.asarray([*starts, total], dtype=np.int64)


def shuffle_dir(attempt: str) -> str | None:
    """Where the links pass spills its shuffles: into the attempt when it is on this
    machine's disk (every worker of a build reads it), else through the runner."""
    return fs.join(attempt, SHUFFLE_DIR) if fs.is_local(attempt) else None


def partitions_for(records: int) -> int:
    return max(MIN_PARTITIONS, math.ceil(records / ROWS_PER_PARTITION))


# -- the keep pass -----------------------------------------------------------------------------
def apply_decisions(attempt: str, table: pa.Table, unit: WorkUnit) -> UnitOutput:
    """A unit's records without the rejected ones (whose decisions the links pass wrote)."""
    url = unit_file(attempt, LINKS_PASS, DECISIONS, unit, "parquet")
    if not fs.exists(url):
        return UnitOutput(table, None)
    with fs.open_input(url) as stream:
        decided = pq.read_table(stream)
    rows = decided.column("row")
    keep = np.ones(table.num_rows, dtype=bool)
    keep[rows.to_numpy()] = False
    rejected = pa.table(
        {
            "uid": table.column("uid").take(rows),
            "stage": pa.array([STAGE] * decided.num_rows, pa.string()),
            "reason": decided.column("reason"),
            "detail": decided.column("detail"),
        },
        schema=REJECTION_SCHEMA,
    )
    return UnitOutput(table.filter(pa.array(keep)), rejected)


class DecideCore(UnitWork):
    def __init__(self, attempt: str) -> None:
        self.attempt = attempt
        self.reader = UnitReader()

    def run(self, unit: WorkUnit) -> UnitOutput:
        return apply_decisions(self.attempt, self.reader.table(unit), unit)


class DedupStage(Stage):
    name = STAGE
    version = 3
    config_keys = ("dedup",)
    #: Large-star/small-star rounds unrolled in the links pass; a graph that needs more
    #: runs the pass again with twice as many (docs/dedup.md, "How it scales").
    rounds: ClassVar[int] = 3
    #: Spill the links pass's shuffles to files when the build directory is on this disk.
    spill_shuffles: ClassVar[bool] = True

    def output_schema(self, config: BuildConfig) -> pa.Schema:
        return OUTPUT_SCHEMA

    def eval_catalog(self, ctx: StageContext) -> Any:
        """The hashed eval sets of the config (hashed on the launcher), or None."""
        from openwit.dedup.evalhash import EvalCatalog

        config = ctx.config.dedup
        if not config.eval_sets:
            return None
        # EvalSet.open reads a set in a bucket from one local copy per process
        return EvalCatalog.build(config.eval_sets, Detector.from_config(config))

    def run(self, ctx: StageContext) -> StageResult:
        groups, per_unit = ctx.plan_groups(
            ctx.input_files, self.unit_size(ctx.config), self.min_rows_per_unit
        )
        units = count_units(groups, per_unit)
        ctx.start_plan({"groups": [list(vars(g).values()) for g in groups], "unit": per_unit})
        self.catalog = self.eval_catalog(ctx)
        stats: dict[str, Any] = {}
        if groups:
            summary = self.find_groups(ctx, groups, per_unit, units)
            stats = summary_stats(summary)
        return StageResult(units=units, stats=stats)

    def find_groups(
        self, ctx: StageContext, groups: list[RowGroup], per_unit: int, units: int
    ) -> dict[str, Any]:
        """Run the pipeline of both passes until the components are final (the keep pass
        waits for the decisions and runs only then); returns the links pass's summary."""
        from openwit.beam import beam, listed

        config = ctx.config.dedup
        starts = unit_starts(groups, per_unit)
        settings = Settings(
            config.near_duplicate_radius,
            config.near_duplicate_dhash_radius,
            config.decontaminate,
            partitions_for(int(starts[-1])),
            self.rounds,
            starts,
            shuffle_dir(ctx.attempt) if self.spill_shuffles else None,
        )
        eval_hashes = self.catalog.sets if self.catalog is not None else []
        detector = Detector.from_config(config)
        options = dict(ctx.config.beam_options)
        cut = functools.partial(cut_row_group, per_unit)
        keep = ctx.run_units_fn(functools.partial(DecideCore, ctx.attempt), OUTPUT_SCHEMA)
        while True:
            if settings.shuffle_dir:
                fs.delete_tree(settings.shuffle_dir)  # what an interrupted pass left
            with ctx.new_pipeline(units) as pipeline:
                planned = (
                    listed(pipeline, groups, "Links: plan")
                    | "Links: cut into units" >> beam.FlatMap(cut)
                    | "Links: spread" >> beam.Reshuffle()
                )
                written, changed = build_links(
                    planned, settings, eval_hashes, detector, groups, per_unit, ctx.attempt, options
                )
                final = beam.pvalue.AsSingleton(changed)
                _ = (
                    planned
                    | "Keep: when the decisions are final"
                    >> beam.FlatMap(when_final, final, beam.pvalue.AsList(written))
                    | "Keep" >> beam.ParDo(keep)
                )
            if settings.shuffle_dir:
                fs.delete_tree(settings.shuffle_dir)
            summary = fs.read_json(fs.join(ctx.attempt, SUMMARY))
            if summary["changes_in_last_round"] == 0:
                return summary
            if settings.rounds >= MAX_ROUNDS:
                raise RuntimeError(f"dedup: components not final after {settings.rounds} rounds")
            settings.rounds *= 2

    def finalize(self, ctx: StageContext, totals: StageTotals) -> dict[str, Any]:
        config = ctx.config.dedup
        detector = Detector.from_config(config)
        return eval_stats(
            ctx.attempt, getattr(self, "catalog", None), detector, config.decontaminate
        )


def when_final(unit: WorkUnit, changes: int, written: list[int]) -> Iterator[WorkUnit]:
    """A unit for the keep pass, once every decision is written, if they are final."""
    if changes == 0:
        yield unit


def summary_stats(summary: dict[str, Any]) -> dict[str, Any]:
    """The links pass's figures for the manifest: rounds, bytes shuffled per record."""
    shuffles = summary.get("shuffles", {})
    total = sum(s.get("bytes", 0) for s in shuffles.values())
    through_runner = sum(s.get("runner_bytes", 0) for s in shuffles.values())
    records = max(1, summary.get("records", 0))
    return {
        "links": {
            "partitions": summary.get("partitions"),
            "rounds": summary.get("rounds"),
            "shuffle_bytes": total,
            "shuffle_bytes_per_record": round(total / records, 1),
            "runner_bytes_per_record": round(through_runner / records, 2),
            "shuffle_bytes_per_record_by_step": {
                name: round(s.get("bytes", 0) / records, 1) for name, s in shuffles.items()
            },
        }
    }


def eval_stats(
    attempt: str, catalog: Any, detector: Detector, decontaminate: bool
) -> dict[str, Any]:
    """Per eval set: images, images matched, training samples matched (for the manifest)."""
    import fnmatch

    if catalog is None:
        return {"eval_sets": {}}
    images: dict[str, set[str]] = {h.name: set() for h in catalog.sets}
    samples: dict[str, set[str]] = {h.name: set() for h in catalog.sets}

    def matches(url: str) -> pa.Table:
        with fs.open_input(url) as stream:
            return pq.read_table(stream, columns=["eval_set", "eval_path", "uid"])

    listing = sorted(fs.list_files(attempt))
    urls = [u for u in listing if fnmatch.fnmatch(fs.basename(u), MATCHES_GLOB)]
    for table in fs.map_urls(matches, urls):  # a file per unit
        for name, path, uid in zip(*(table.column(c).to_pylist() for c in table.column_names)):
            images[name].add(path)
            samples[name].add(uid)
    sets = {
        hashes.name: {
            "images": len(hashes),
            "unreadable_images": len(hashes.errors),
            "images_matched": len(images[hashes.name]),
            "training_samples_matched": len(samples[hashes.name]),
        }
        for hashes in catalog.sets
    }
    return {"detector": detector.to_json(), "decontaminate": decontaminate, "eval_sets": sets}
