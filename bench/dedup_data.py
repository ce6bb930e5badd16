"""Synthetic stored-image metadata for the dedup benchmarks, with planted duplicate groups.

Record ``i`` of a synthetic input is a function of ``(seed, i)`` alone, so any unit of any
size can be made without the others. A share of the records are *exact copies* (same
sha256 and hashes) and a share *near copies* (pHash with 1-3 bits flipped, dHash with 0-2,
their own sha256) of an earlier record -- which may itself be a copy, so groups grow and
near-duplicate chains form, as they do in crawled data. Uids are random (not in input
order), so the kept record of a group is rarely its first.

:class:`SyntheticImages` is a first build stage that writes such records
(``candidate_schema("image")``) unit by unit, so a benchmark can time the dedup stage on
the real runner with a committed input.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from openwit.config import BuildConfig
from openwit.outputs import UnitOutput
from openwit.schemas import candidate_schema
from openwit.stage import Stage, StageContext, StageResult
from openwit.unit_transform import UnitWork, run_units
from openwit.units import WorkUnit

SCHEMA = candidate_schema("image")
EXACT_SHARE = 0.10
NEAR_SHARE = 0.10
_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)


def _mix(values: np.ndarray, salt: int) -> np.ndarray:
    """splitmix64 of ``values + salt``: a random-looking uint64 per index."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) + np.uint64(salt) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _flips(index: np.ndarray, salt: int, most: int, least: int) -> np.ndarray:
    """A mask of ``least..most`` random bits per index."""
    count = least + (_mix(index, salt) % np.uint64(most - least + 1)).astype(np.int64)
    mask = np.zeros(len(index), np.uint64)
    for k in range(most):
        bit = _mix(index, salt + 1 + k) % np.uint64(64)
        mask |= np.where(count > k, np.uint64(1) << bit, np.uint64(0))
    return mask


def _hex_column(words: list[np.ndarray]) -> pa.Array:
    """Hex strings of the concatenated 64-bit ``words`` of each row."""
    raw = np.stack([w.astype(">u8") for w in words], axis=1).view(np.uint8)
    digits = np.stack([_HEX[raw >> 4], _HEX[raw & 15]], axis=-1).reshape(len(raw), -1)
    width = digits.shape[1]
    offsets = pa.py_buffer((np.arange(len(raw) + 1, dtype=np.int32) * width).tobytes())
    return pa.Array.from_buffers(pa.string(), len(raw), [None, offsets, pa.py_buffer(digits)])


def synthetic_hashes(
    index: np.ndarray, seed: int = 0, exact: float = EXACT_SHARE, near: float = NEAR_SHARE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(phash, dhash, sha owner)`` of records ``index``: the sha256 of a record is that of
    its *sha owner* (itself, or the record it is an exact copy of)."""
    index = np.asarray(index, np.int64)
    current = index.copy()
    flip_p, flip_d = np.zeros(len(index), np.uint64), np.zeros(len(index), np.uint64)
    owner = np.full(len(index), -1, np.int64)
    while True:
        role = (_mix(current, seed * 7 + 1) % np.uint64(10_000)).astype(np.int64) / 10_000
        is_exact = (role < exact) & (current > 0)
        is_near = (role >= exact) & (role < exact + near) & (current > 0)
        undecided = owner < 0
        owner = np.where(undecided & ~is_exact, current, owner)
        copies = is_exact | is_near
        if not copies.any():
            break
        flip_p ^= np.where(is_near, _flips(current, seed * 7 + 2, 3, 1), np.uint64(0))
        flip_d ^= np.where(is_near, _flips(current, seed * 7 + 20, 2, 0), np.uint64(0))
        origin = (_mix(current, seed * 7 + 3) % np.maximum(current, 1).astype(np.uint64)).astype(
            np.int64
        )
        current = np.where(copies, origin, current)
    phash = _mix(current, seed * 7 + 4) ^ flip_p
    dhash = _mix(current, seed * 7 + 5) ^ flip_d
    return phash, dhash, owner


def synthetic_table(start: int, stop: int, seed: int = 0) -> pa.Table:
    """Records ``start..stop`` of the synthetic input as image-stage output."""
    index = np.arange(start, stop, dtype=np.int64)
    phash, dhash, owner = synthetic_hashes(index, seed)
    n = len(index)
    sha = _hex_column([_mix(owner, seed * 7 + 10 + k) for k in range(4)])
    uid = _hex_column([_mix(index, seed * 7 + 14), _mix(index, seed * 7 + 15)])
    numbers = pa.array(index).cast(pa.string())
    url = pc.binary_join_element_wise("https://img.example/", numbers, ".jpg", "")
    text = pc.binary_join_element_wise("a photo of thing number ", numbers, "")
    return pa.table(
        {
            "uid": uid,
            "url": url,
            "text": text,
            "source": pa.array(["pool-00000.parquet"] * n),
            "source_offset": pa.array(index),
            "lang": pa.array(["en"] * n),
            "lang_score": pa.array(np.full(n, 0.99, np.float32)),
            "query_ids": pa.ListArray.from_arrays(
                pa.array(np.arange(n + 1, dtype=np.int32)),
                pa.array((index % 1000).astype(np.int32)),
            ),
            "width": pa.array(np.full(n, 256, np.int32)),
            "height": pa.array(np.full(n, 192, np.int32)),
            "original_width": pa.array(np.full(n, 1024, np.int32)),
            "original_height": pa.array(np.full(n, 768, np.int32)),
            "sha256": sha,
            "phash": pa.array(phash),
            "dhash": pa.array(dhash),
            "image_file": pa.array([f"stages/download/a/part-{start // 50_000:08d}.parquet"] * n),
            "image_row": pa.array((index % 50_000).astype(np.int32)),
        },
        schema=SCHEMA,
    )


class SyntheticCore(UnitWork):
    def __init__(self, seed: int) -> None:
        self.seed = seed

    def run(self, unit: WorkUnit) -> UnitOutput:
        start, stop = unit.payload
        table = synthetic_table(start, stop, self.seed)
        return UnitOutput(table, None, n_in=table.num_rows)


class SyntheticImages(Stage):
    """A first stage that writes ``records`` synthetic image records (``inputs`` unused)."""

    name = "synthetic_images"
    config_keys = ()

    def __init__(self, records: int, seed: int = 0) -> None:
        self.records, self.seed = records, seed

    def fingerprint(self, config: BuildConfig) -> dict:
        return {"records": self.records, "seed": self.seed}

    def output_schema(self, config: BuildConfig) -> pa.Schema:
        return SCHEMA

    def run(self, ctx: StageContext) -> StageResult:
        per_unit = self.rows_per_unit
        count = math.ceil(self.records / per_unit)
        units = [
            WorkUnit(i, payload=(i * per_unit, min(self.records, (i + 1) * per_unit)))
            for i in range(count)
        ]
        fn = ctx.run_units_fn(functools.partial(SyntheticCore, self.seed), SCHEMA)
        with ctx.new_pipeline(count) as pipeline:
            run_units(pipeline, "Synthetic", units, None, fn)
        return StageResult(units=count)
