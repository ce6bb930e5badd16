"""Image records with planted duplicate groups, a stage that feeds them to dedup in many
small units, and what the dedup rules say about them, computed the plain way.

The reference (:func:`expected_rejections`) is the rule as written, record by record:
exact groups by sha256, then near groups by comparing every pair of the records left
(single linkage, :func:`openwit.dedup.groups.components`), the smallest rank key kept,
eval overlap before exact before near. It lives in a module so Beam's workers can unpickle
the stage.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from openwit.config import BuildConfig
from openwit.dedup.groups import components, exact_duplicates, rank_key, uid_of
from openwit.dedup.stage import DedupStage
from openwit.outputs import UnitOutput
from openwit.schemas import candidate_schema, uid_for
from openwit.stage import Stage, StageContext, StageResult
from openwit.unit_transform import UnitWork, run_units
from openwit.units import WorkUnit

SCHEMA = candidate_schema("image")


def record(index: int, sha: str | None, phash: int | None, dhash: int | None, **extra) -> dict:
    url, text = f"http://img.example/{index}.jpg", f"picture {index}"
    return {
        "uid": uid_for(url, text),
        "url": url,
        "text": text,
        "source": "a.jsonl",
        "source_offset": index,
        "lang": "en",
        "lang_score": 0.9,
        "query_ids": [0],
        "width": 256,
        "height": 192,
        "original_width": 256,
        "original_height": 192,
        "sha256": sha,
        "phash": phash,
        "dhash": dhash,
        "image_file": "x.parquet",
        "image_row": index,
        **extra,
    }


def planted_records(seed: int, count: int) -> list[dict[str, Any]]:
    """Originals, exact copies (same sha256 and hashes), near copies (a few bits off, of
    originals or of other copies: chains), records without hashes, and the same pair read
    twice (same uid, another source and offset)."""
    rng = np.random.default_rng(seed)
    records: list[dict[str, Any]] = []
    for i in range(count):
        role = rng.random()
        if i and role < 0.12:
            other = records[rng.integers(len(records))]
            item = record(i, other["sha256"], other["phash"], other["dhash"])
        elif i and role < 0.32 and records[-1]["phash"] is not None:
            other = records[rng.integers(max(0, len(records) - 20), len(records))]
            if other["phash"] is None:
                other = records[-1]
            phash, dhash = other["phash"], other["dhash"]
            for bit in rng.choice(64, rng.integers(1, 6), replace=False):
                phash ^= 1 << int(bit)
            for bit in rng.choice(64, rng.integers(0, 16), replace=False):
                dhash ^= 1 << int(bit)
            item = record(i, _sha(seed, i), phash, dhash)
        elif role < 0.36:
            item = record(i, _sha(seed, i) if role < 0.34 else None, None, None)
        else:
            item = record(i, _sha(seed, i), *(int(x) for x in rng.integers(0, 2**63, 2)))
        if i and rng.random() < 0.03:  # the same pair twice
            item["uid"] = records[rng.integers(len(records))]["uid"]
            item["source"] = "b.jsonl"
        records.append(item)
    return records


def chain_records(length: int) -> list[dict[str, Any]]:
    """A path of near duplicates: each record 3 new bits away from the one before, so only
    neighbours are within radius 4 and the group is one long chain."""
    phash, out = 0, []
    for i in range(length):
        out.append(record(i, _sha(99, i), phash, 0))
        phash ^= 0b111 << (3 * i)
    return out


def _sha(seed: int, index: int) -> str:
    return hashlib.sha256(f"{seed}/{index}".encode()).hexdigest()


def write_records(path: Any, records: list[dict[str, Any]]) -> str:
    pq.write_table(pa.Table.from_pylist(records, schema=SCHEMA), path)
    return str(path)


def expected_rejections(
    records: list[dict[str, Any]],
    radius: int = 4,
    dhash_radius: int | None = 14,
    eval_overlap: dict[str, str] | None = None,
) -> list[tuple[str, str, str]]:
    """``(uid, reason, detail)`` of every record the dedup rules reject (sorted);
    ``eval_overlap``: rank key -> detail of records matched to an eval set."""
    eval_overlap = eval_overlap or {}
    keyed = [(rank_key(r), r) for r in records]
    exact: dict[str, str] = {}
    by_sha: dict[str, list[str]] = {}
    for key, r in keyed:
        if r["sha256"]:
            by_sha.setdefault(r["sha256"], []).append(key)
    for keys in by_sha.values():
        kept, rejected = exact_duplicates(keys)
        exact.update({k: f"same sha256 as uid {uid_of(kept)}" for k in rejected})
    left = [
        (k, r)
        for k, r in keyed
        if k not in exact and k not in eval_overlap and r["phash"] is not None
    ]
    links = []
    for i, (key_a, a) in enumerate(left):
        for key_b, b in left[i + 1 :]:
            if (a["phash"] ^ b["phash"]).bit_count() > radius:
                continue
            if dhash_radius is not None and (
                a["dhash"] is None
                or b["dhash"] is None
                or (a["dhash"] ^ b["dhash"]).bit_count() > dhash_radius
            ):
                continue
            links.append((key_a, key_b))
    near = {k: f"near duplicate of uid {uid_of(root)}" for k, root in components(links).items()}
    out = []
    for key, r in keyed:
        for reason, found in (
            ("eval_overlap", eval_overlap),
            ("exact_duplicate", exact),
            ("near_duplicate", near),
        ):
            if key in found:
                out.append((r["uid"], reason, found[key]))
                break
    return sorted(out)


class RecordsCore(UnitWork):
    def __init__(self, path: str) -> None:
        self.table = pq.read_table(path)

    def run(self, unit: WorkUnit) -> UnitOutput:
        start, stop = unit.payload
        table = self.table.slice(start, stop - start)
        return UnitOutput(table, None, n_in=table.num_rows)


class RecordsSource(Stage):
    """A first stage: the records of the (Parquet) input, in units of ``rows`` rows."""

    name = "records"
    config_keys = ("inputs",)
    rows = 37

    def output_schema(self, config: BuildConfig) -> pa.Schema:
        return SCHEMA

    def run(self, ctx: StageContext) -> StageResult:
        path = ctx.config.inputs[0].path
        total = pq.ParquetFile(path).metadata.num_rows
        units = [
            WorkUnit(i, payload=(start, min(total, start + self.rows)))
            for i, start in enumerate(range(0, total, self.rows))
        ]
        fn = ctx.run_units_fn(functools.partial(RecordsCore, path), SCHEMA)
        with ctx.new_pipeline(len(units)) as pipeline:
            run_units(pipeline, "Records", units, None, fn)
        return StageResult(units=len(units))


class SmallUnitsDedup(DedupStage):
    """The dedup stage in units of 25 records, so that groups span many units."""

    rows_per_unit = 25


class OneRoundDedup(SmallUnitsDedup):
    """... unrolling one round: a long chain makes it run the pass again."""

    rounds = 1


class RunnerShuffleDedup(SmallUnitsDedup):
    """... with every shuffle through the runner, as on a build directory in a bucket."""

    spill_shuffles = False
