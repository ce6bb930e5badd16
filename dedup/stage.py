"""The ``dedup`` build stage: exact duplicates, near duplicates, eval-set overlap.

Input and output are ``candidate_schema("image")`` records; the stage only removes records.
Rejections: ``exact_duplicate`` (same sha256 as a kept record), ``near_duplicate`` (pHash
within ``near_duplicate_radius`` bits and dHash within ``near_duplicate_dhash_radius`` of
another record of its group), ``eval_overlap`` (matches an evaluation image; only with
``decontaminate: true``). In each group the record with the smallest uid is kept
(:func:`openwit.dedup.groups.rank_key`). Every eval match is written, rejected or not, to
``stages/dedup/eval-matches-*.parquet`` for the audit.

The Beam graph, all of it distributed except the last merge of duplicate links:

    records ─ slim (key, hashes) ─┬─ GroupByKey(sha256) ─────────── exact rejections
                                  ├─ batches ─ eval index search ── eval matches (+ rejections)
                                  └─ survivors ─ GroupByKey((band, band value))
                                        ─ bucket forests ─ one global union-find ── near rejections
    records ─ CoGroupByKey(rank key) with the three rejection sets ─ kept | rejected
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

# Beam through openwit.beam, which quiets Beam's import-time warning before importing it.
from openwit.beam import REJECTED, CoreDoFn, beam, write_parquet
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
from openwit.dedup.layout import EVAL_MATCH_SCHEMA, MATCHES_GLOB, MATCHES_PREFIX, STAGE
from openwit.funnel import Rejection
from openwit.schemas import REJECTION_SCHEMA, candidate_schema
from openwit.stage import BeamStage, StageContext, StageResult

#: When one record has several reasons, the first in this order is the one recorded.
REASON_ORDER = ("eval_overlap", "exact_duplicate", "near_duplicate")


def slim(record: dict[str, Any]) -> Slim:
    return Slim(rank_key(record), record.get("sha256"), record.get("phash"), record.get("dhash"))


def slim_with_url(record: dict[str, Any]) -> tuple[Slim, dict[str, Any]]:
    return slim(record), {"url": record.get("url")}


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


# -- the final join --------------------------------------------------------------------------
def decide(element: tuple[str, dict[str, list]]) -> Iterator[dict[str, Any] | Rejection]:
    """Pass a record on, or reject it with the most important of its reasons."""
    _, joined = element
    records = joined["record"]
    reasons = {r: detail for tag in ("eval", "exact", "near") for r, detail in joined[tag]}
    for index, record in enumerate(records):
        chosen = next((r for r in REASON_ORDER if r in reasons), None)
        if chosen is not None:
            yield Rejection(record["uid"], STAGE, chosen, reasons[chosen])
        elif index > 0:  # the same record (uid, file, offset) read twice
            yield Rejection(record["uid"], STAGE, "exact_duplicate", "the same record twice")
        else:
            yield record


def _strip_key(match: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in match.items() if k != "key"}


def build_graph(
    records: Any, config: DedupConfig, detector: Detector, eval_hashes: list
) -> tuple[Any, Any, Any]:
    """The dedup transform: ``(kept, rejected, eval_matches)`` PCollections."""
    slims = records | "Slim" >> beam.Map(slim_with_url)

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
        matches = records.pipeline | "No eval sets" >> beam.Create([])
    if config.decontaminate:
        eval_rejects = (
            matches
            | "Eval candidates" >> beam.Map(eval_candidate)
            | "Closest eval match" >> beam.CombinePerKey(closest_first)
            | "Eval rejection" >> beam.Map(eval_rejection)
        )
    else:
        eval_rejects = records.pipeline | "No decontamination" >> beam.Create([])

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

    by_key = records | "Key records" >> beam.Map(lambda r: (rank_key(r), r))
    decided = (
        {"record": by_key, "exact": exact, "eval": eval_rejects, "near": near}
        | "Join reasons" >> beam.CoGroupByKey()
        | "Decide" >> beam.ParDo(CoreDoFn(STAGE, _decide_core)).with_outputs(REJECTED, main="kept")
    )
    return decided.kept, decided[REJECTED], matches | "Drop keys" >> beam.Map(_strip_key)


def _decide_core():
    return decide


class DedupStage(BeamStage):
    name = STAGE
    version = 1
    config_keys = ("dedup",)

    def output_schema(self, config: BuildConfig) -> pa.Schema:
        return candidate_schema("image")

    def expand(self, records: Any, ctx: StageContext) -> tuple[Any, Any]:
        """Kept and rejected records (:meth:`run` also writes the eval matches)."""
        kept, rejected, _ = self.graph(records, ctx, self.eval_catalog(ctx))
        return kept, rejected

    def eval_catalog(self, ctx: StageContext) -> Any:
        """The hashed eval sets of the config (hashed on the launcher), or None."""
        from openwit.dedup.evalhash import EvalCatalog

        config = ctx.config.dedup
        if not config.eval_sets:
            return None
        return EvalCatalog.build(config.eval_sets, Detector.from_config(config))

    def graph(self, records: Any, ctx: StageContext, catalog: Any) -> tuple[Any, Any, Any]:
        config = ctx.config.dedup
        eval_hashes = catalog.sets if catalog is not None else []
        return build_graph(records, config, Detector.from_config(config), eval_hashes)

    def run(self, ctx: StageContext) -> StageResult | None:
        catalog = self.eval_catalog(ctx)
        with ctx.new_pipeline() as pipeline:
            kept, rejected, matches = self.graph(self.read(pipeline, ctx), ctx, catalog)
            write_parquet(kept, ctx.output_prefix, self.output_schema(ctx.config), "Write kept")
            write_parquet(rejected, ctx.rejections_prefix, REJECTION_SCHEMA, "Write rejected")
            write_parquet(
                matches, str(ctx.work_dir / MATCHES_PREFIX), EVAL_MATCH_SCHEMA, "Write matches"
            )
        config = ctx.config.dedup
        detector = Detector.from_config(config)
        return StageResult(stats=eval_stats(ctx.work_dir, catalog, detector, config.decontaminate))


def eval_stats(
    stage_dir: Path, catalog: Any, detector: Detector, decontaminate: bool
) -> dict[str, Any]:
    """Per eval set: images, images matched, training samples matched (for the manifest)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if catalog is None:
        return {"eval_sets": {}}
    files = sorted(stage_dir.glob(MATCHES_GLOB))
    table = pa.concat_tables([pq.read_table(f) for f in files]) if files else None
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
