"""The ``dedup`` build stage: exact duplicates, near duplicates, eval-set overlap.

Input and output are ``candidate_schema("image")`` records (metadata: the image bytes stay
in the download stage's files); the stage only removes records.
Rejections: ``exact_duplicate`` (same sha256 as a kept record), ``near_duplicate`` (pHash
within ``near_duplicate_radius`` bits and dHash within ``near_duplicate_dhash_radius`` of
another record of its group), ``eval_overlap`` (matches an evaluation image; only with
``decontaminate: true``). In each group the record with the smallest uid is kept
(:func:`openwit.dedup.groups.rank_key`). Every eval match is written, rejected or not, to
``stages/dedup/eval-matches-*.parquet`` for the audit.

Two passes. ``links`` (one Beam graph over slim records: rank key, hashes, unit):

    units ─ slim ─┬─ GroupByKey(sha256) ─────────── exact rejections
                  ├─ batches ─ eval index search ── eval matches (+ rejections)
                  └─ survivors ─ GroupByKey((band, band value))
                        ─ bucket forests ─ components ── near rejections
    rejections ─ by the unit of their record ─ one decisions file per unit

then the keep pass reads each unit with its decisions file and writes kept | rejected.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from openwit import fs

# Beam through openwit.beam, which quiets Beam's import-time warning before importing it.
from openwit.beam import beam, listed
from openwit.config import BuildConfig, DedupConfig
from openwit.dedup.detector import Detector
from openwit.dedup.groups import (
    Slim,
    band_keys,
    bucket_forest,
    components,
    exact_duplicates,
    rank_key,
    uid_of,
)
from openwit.dedup.layout import EVAL_MATCH_SCHEMA, MATCHES_FILE, STAGE
from openwit.funnel import Rejection
from openwit.outputs import StageTotals, UnitOutput, parquet_bytes, rejections_table
from openwit.schemas import candidate_schema
from openwit.stage import Stage, StageContext, StageResult, cut_row_group
from openwit.unit_transform import TableCore, run_units
from openwit.units import UnitReader, WorkUnit, count_units, plan_row_groups

#: When one record has several reasons, the first in this order is the one recorded.
REASON_ORDER = ("eval_overlap", "exact_duplicate", "near_duplicate")


OUTPUT_SCHEMA = candidate_schema("image")
LINKS_PASS = "links"
DECISIONS = "decisions"
DECISION_SCHEMA = pa.schema(
    [pa.field("key", pa.string()), pa.field("reason", pa.string()), pa.field("detail", pa.string())]
)
SLIM_COLUMNS = ["uid", "source", "source_offset", "sha256", "phash", "dhash", "url"]


def slim(record: dict[str, Any]) -> Slim:
    return Slim(rank_key(record), record.get("sha256"), record.get("phash"), record.get("dhash"))


class ReadSlims(beam.DoFn):
    """A unit's records as ``(Slim, {"url", "unit"})``: what the duplicate search needs."""

    def __init__(self, fs_options: dict[str, Any]) -> None:
        self.fs_options = fs_options

    def setup(self) -> None:
        fs.configure(self.fs_options)
        self.reader = UnitReader(SLIM_COLUMNS)

    def process(self, unit: WorkUnit) -> Iterator[tuple[Slim, dict[str, Any]]]:
        for record in self.reader.records(unit):
            yield slim(record), {"url": record.get("url"), "unit": unit.index}


def keyed_by_sha256(pair: tuple[Slim, dict[str, Any]]) -> Iterator[tuple[str, str]]:
    item = pair[0]
    if item.sha256:
        yield item.sha256, item.key


def keyed_by_band(item: Slim, radius: int) -> Iterator[tuple[tuple[int, int], Slim]]:
    for key in band_keys(item.phash, radius):  # type: ignore[arg-type]
        yield key, item


def forest_of_bucket(
    bucket: tuple[tuple[int, int], Iterable[Slim]], radius: int, dhash_radius: int | None
) -> list[tuple[str, str]]:
    return bucket_forest(list(bucket[1]), radius, dhash_radius)


# -- exact duplicates ------------------------------------------------------------------------
def exact_rejections(sha_and_keys: tuple[str, Iterable[str]]) -> Iterator[tuple[str, tuple]]:
    _, keys = sha_and_keys
    kept, rejected = exact_duplicates(keys)
    for key in rejected:
        yield key, ("exact_duplicate", f"same sha256 as uid {uid_of(kept)}")


# -- near duplicates -------------------------------------------------------------------------
def near_candidate(
    element: tuple[str, dict[str, list]],
) -> Iterator[Slim]:
    """Records that are still in play: not rejected as exact duplicates or eval overlap."""
    _, joined = element
    if joined["exact"] or joined["eval"]:
        return
    for item in joined["slim"][:1]:
        if item.phash is not None:
            yield item


def near_rejections(
    links: list[tuple[str, str]],
) -> Iterator[tuple[str, tuple]]:
    for member, root in sorted(components(links).items()):
        yield member, ("near_duplicate", f"near duplicate of uid {uid_of(root)}")


# -- eval overlap ----------------------------------------------------------------------------
class MatchEvalSets(beam.DoFn):
    """Over batches of slim records: the eval matches of each record."""

    def __init__(self, detector: Detector, eval_hashes: list, decontaminate: bool) -> None:
        self.detector = detector
        self.eval_hashes = eval_hashes  # the index is built per worker, not pickled
        self.decontaminate = decontaminate
        self.catalog: Any = None

    def setup(self) -> None:
        from openwit.dedup.evalhash import EvalCatalog

        self.catalog = EvalCatalog(self.detector, self.eval_hashes)

    def process(self, batch: list[tuple[Slim, dict[str, Any]]]) -> Iterator[dict[str, Any]]:
        import numpy as np

        usable = [(s, info) for s, info in batch if s.phash is not None and s.dhash is not None]
        if not usable:
            return
        phash = np.asarray([int(s.phash) for s, _ in usable], dtype=np.uint64)  # type: ignore[arg-type]
        dhash = np.asarray([int(s.dhash) for s, _ in usable], dtype=np.uint64)  # type: ignore[arg-type]
        for match in self.catalog.match(phash, dhash):
            item, info = usable[match.query]
            hashes = self.catalog.sets[match.set_index]
            yield {
                "key": item.key,
                "eval_set": hashes.name,
                "eval_path": hashes.paths[match.sample],
                "eval_label": int(hashes.labels[match.sample]),
                "uid": uid_of(item.key),
                "url": info.get("url"),
                "sha256": item.sha256,
                "phash": int(item.phash),  # type: ignore[arg-type]
                "dhash": int(item.dhash),  # type: ignore[arg-type]
                "variant": match.variant,
                "phash_distance": match.phash_distance,
                "dhash_distance": match.dhash_distance,
                "rejected": self.decontaminate,
            }


def eval_candidate(match: dict[str, Any]) -> tuple[str, tuple]:
    """``(key, (distances, detail))``: the distances order a record's matches."""
    detail = (
        f"matches {match['eval_set']}/{match['eval_path']} "
        f"(pHash {match['phash_distance']}, dHash {match['dhash_distance']}, {match['variant']})"
    )
    return match["key"], ((match["phash_distance"], match["dhash_distance"]), detail)


def closest_first(candidates: Iterable[tuple]) -> tuple:
    return min(candidates)


def eval_rejection(keyed: tuple[str, tuple]) -> tuple[str, tuple[str, str]]:
    key, (_, detail) = keyed
    return key, ("eval_overlap", detail)


# -- the decisions ---------------------------------------------------------------------------
def first_reason(reasons: Iterable[tuple[str, str]]) -> tuple[str, str]:
    """When one record has several reasons, the first in :data:`REASON_ORDER` is recorded."""
    by_reason = dict(reasons)
    chosen = next(r for r in REASON_ORDER if r in by_reason)
    return chosen, by_reason[chosen]


def route_to_unit(element: tuple[str, dict[str, list]]) -> Iterator[tuple[int, dict[str, str]]]:
    key, joined = element
    if not joined["reasons"]:
        return
    reason, detail = first_reason(joined["reasons"])
    for unit in joined["unit"][:1]:
        yield unit, {"key": key, "reason": reason, "detail": detail}


class WriteDecisions(beam.DoFn):
    """One unit's decisions, written whole into the attempt (a retry writes the same file)."""

    def __init__(self, attempt: str, fs_options: dict[str, Any]) -> None:
        self.attempt, self.fs_options = attempt, fs_options

    def setup(self) -> None:
        fs.configure(self.fs_options)

    def process(self, element: tuple[int, Iterable[dict[str, str]]]) -> Iterator[int]:
        unit, decisions = element
        rows = sorted(decisions, key=lambda d: d["key"])
        url = fs.join(self.attempt, f"{LINKS_PASS}.{DECISIONS}-{unit:08d}.parquet")
        fs.write_bytes(url, parquet_bytes(pa.Table.from_pylist(rows, schema=DECISION_SCHEMA)))
        yield unit


class WriteMatches(beam.DoFn):
    def __init__(self, url: str, fs_options: dict[str, Any]) -> None:
        self.url, self.fs_options = url, fs_options

    def setup(self) -> None:
        fs.configure(self.fs_options)

    def process(self, matches: list[dict[str, Any]]) -> Iterator[int]:
        rows = sorted(matches, key=lambda m: (m["eval_set"], m["eval_path"], m["uid"]))
        table = pa.Table.from_pylist(rows, schema=EVAL_MATCH_SCHEMA)
        fs.write_bytes(self.url, parquet_bytes(table))
        yield len(rows)


def _strip_key(match: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in match.items() if k != "key"}


def build_links(
    units: Any, config: DedupConfig, detector: Detector, eval_hashes: list, fs_options: dict
) -> tuple[Any, Any]:
    """The links pass: ``(decisions by unit, eval matches)`` PCollections."""
    slims = units | "Slim" >> beam.ParDo(ReadSlims(fs_options))

    exact = (
        slims
        | "Key by sha256" >> beam.FlatMap(keyed_by_sha256)
        | "Group by sha256" >> beam.GroupByKey()
        | "Exact duplicates" >> beam.FlatMap(exact_rejections)
    )

    if eval_hashes:
        matcher = MatchEvalSets(detector, eval_hashes, config.decontaminate)
        matches = (
            slims
            | "Batch for eval search" >> beam.BatchElements(min_batch_size=256, max_batch_size=4096)
            | "Search eval index" >> beam.ParDo(matcher)
        )
    else:
        matches = units.pipeline | "No eval sets" >> beam.Create([])
    if config.decontaminate:
        eval_rejects = (
            matches
            | "Eval candidates" >> beam.Map(eval_candidate)
            | "Closest eval match" >> beam.CombinePerKey(closest_first)
            | "Eval rejection" >> beam.Map(eval_rejection)
        )
    else:
        eval_rejects = units.pipeline | "No decontamination" >> beam.Create([])

    slim_by_key = slims | "Key slim" >> beam.Map(lambda pair: (pair[0].key, pair[0]))
    radius, dhash_radius = config.near_duplicate_radius, config.near_duplicate_dhash_radius
    links = (
        {"slim": slim_by_key, "exact": exact, "eval": eval_rejects}
        | "Join for near search" >> beam.CoGroupByKey()
        | "Survivors" >> beam.FlatMap(near_candidate)
        | "Band keys" >> beam.FlatMap(keyed_by_band, radius)
        | "Group by band" >> beam.GroupByKey()
        | "Bucket forests" >> beam.FlatMap(forest_of_bucket, radius, dhash_radius)
    )
    near = (
        links
        | "All links" >> beam.combiners.ToList()
        | "Components" >> beam.FlatMap(near_rejections)
    )

    unit_of_key = slims | "Unit of key" >> beam.Map(lambda pair: (pair[0].key, pair[1]["unit"]))
    reasons = (exact, eval_rejects, near) | "All reasons" >> beam.Flatten()
    decisions = (
        {"unit": unit_of_key, "reasons": reasons}
        | "Join reasons" >> beam.CoGroupByKey()
        | "Route to unit" >> beam.FlatMap(route_to_unit)
        | "Group by unit" >> beam.GroupByKey()
    )
    return decisions, matches | "Drop keys" >> beam.Map(_strip_key)


# -- the keep pass -----------------------------------------------------------------------------
def apply_decisions(attempt: str, table: pa.Table, unit: WorkUnit) -> UnitOutput:
    """A unit's records without the rejected ones (whose decisions the links pass wrote)."""
    url = fs.join(attempt, f"{LINKS_PASS}.{DECISIONS}-{unit.index:08d}.parquet")
    decided: dict[str, tuple[str, str]] = {}
    if fs.exists(url):
        with fs.open_input(url) as stream:
            for row in pq.read_table(stream).to_pylist():
                decided[row["key"]] = (row["reason"], row["detail"])
    if not decided:
        return UnitOutput(table, rejections_table([]))
    keys = [rank_key(r) for r in table.select(["uid", "source", "source_offset"]).to_pylist()]
    keep = [key not in decided for key in keys]
    rejected = [Rejection(uid_of(key), STAGE, *decided[key]) for key in keys if key in decided]
    return UnitOutput(table.filter(pa.array(keep, pa.bool_())), rejections_table(rejected))


class DecideCore(TableCore):
    def __init__(self, attempt: str) -> None:
        super().__init__(lambda table: UnitOutput())
        self.attempt = attempt

    def start(self, unit: WorkUnit) -> Callable[[], UnitOutput]:
        output = apply_decisions(self.attempt, self.reader.table(unit), unit)
        return lambda: output


def local_eval_set(root: str) -> str:
    """An eval set's folder on this machine: itself, or a copy of a remote one (a bucket
    prefix) in a temporary folder of the launcher, which hashes the eval sets once."""
    if fs.is_local(root):
        return root
    import tempfile

    folder = tempfile.mkdtemp(prefix="openwit-eval-")
    prefix = root.rstrip("/") + "/"
    for url in fs.list_files(root):
        target = fs.join(folder, url[len(prefix) :])
        fs.makedirs(fs.parent(target))
        fs.write_bytes(target, fs.read_bytes(url))
    return folder


class DedupStage(Stage):
    name = STAGE
    version = 2
    config_keys = ("dedup",)

    def output_schema(self, config: BuildConfig) -> pa.Schema:
        return OUTPUT_SCHEMA

    def eval_catalog(self, ctx: StageContext) -> Any:
        """The hashed eval sets of the config (hashed on the launcher), or None."""
        from openwit.dedup.evalhash import EvalCatalog

        config = ctx.config.dedup
        if not config.eval_sets:
            return None
        roots = {name: local_eval_set(root) for name, root in config.eval_sets.items()}
        return EvalCatalog.build(roots, Detector.from_config(config))

    def run(self, ctx: StageContext) -> StageResult:
        config = ctx.config.dedup
        per_unit = self.unit_size(ctx.config)
        groups = plan_row_groups(ctx.input_files, per_unit)
        units = count_units(groups, per_unit)
        ctx.start_plan({"groups": [list(vars(g).values()) for g in groups], "unit": per_unit})
        catalog = self.eval_catalog(ctx)
        self.catalog = catalog
        cut = functools.partial(cut_row_group, per_unit)
        options = dict(ctx.config.beam_options)
        if groups:
            eval_hashes = catalog.sets if catalog is not None else []
            detector = Detector.from_config(config)
            with ctx.new_pipeline(units) as pipeline:
                planned = listed(pipeline, groups, "Links: plan") | "Links: cut" >> beam.FlatMap(
                    cut
                )
                decisions, matches = build_links(planned, config, detector, eval_hashes, options)
                _ = decisions | "Write decisions" >> beam.ParDo(
                    WriteDecisions(ctx.attempt, options)
                )
                _ = (
                    matches
                    | "All matches" >> beam.combiners.ToList()
                    | "Write matches"
                    >> beam.ParDo(WriteMatches(fs.join(ctx.attempt, MATCHES_FILE), options))
                )
            core = functools.partial(DecideCore, ctx.attempt)
            with ctx.new_pipeline(units) as pipeline:
                run_units(pipeline, "Keep", groups, cut, ctx.run_units_fn(core, OUTPUT_SCHEMA))
        return StageResult(units=units)

    def finalize(self, ctx: StageContext, totals: StageTotals) -> dict[str, Any]:
        config = ctx.config.dedup
        detector = Detector.from_config(config)
        return eval_stats(
            ctx.attempt, getattr(self, "catalog", None), detector, config.decontaminate
        )


def eval_stats(
    attempt: str, catalog: Any, detector: Detector, decontaminate: bool
) -> dict[str, Any]:
    """Per eval set: images, images matched, training samples matched (for the manifest)."""
    import pyarrow.compute as pc

    if catalog is None:
        return {"eval_sets": {}}
    url = fs.join(attempt, MATCHES_FILE)
    table = None
    if fs.exists(url):
        with fs.open_input(url) as stream:
            table = pq.read_table(stream)
    sets = {}
    for hashes in catalog.sets:
        if table is not None and table.num_rows:
            rows = table.filter(pc.equal(table["eval_set"], hashes.name))
            images = len(set(rows["eval_path"].to_pylist()))
            samples = len(set(rows["uid"].to_pylist()))
        else:
            images = samples = 0
        sets[hashes.name] = {
            "images": len(hashes),
            "unreadable_images": len(hashes.errors),
            "images_matched": images,
            "training_samples_matched": samples,
        }
    return {"detector": detector.to_json(), "decontaminate": decontaminate, "eval_sets": sets}
