"""What the dedup search needs of one unit's records, and the eval matches of its records.

:func:`slim_unit` reads a unit's hashes into arrays (no Python object per record): the
rows that take part in the exact search (a sha256) and in the near search (hashes, and not
removed as eval overlap), the unit's eval matches and, with ``decontaminate``, their
rejections. The search itself works on record *ids* (row numbers in the stage's input,
:mod:`openwit.dedup.batches`); uids and sources are read again only for records found in a
group (:mod:`openwit.dedup.resolve`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from openwit.dedup.groups import band_layout
from openwit.dedup.layout import EVAL_MATCH_SCHEMA
from openwit.dedup.resolve import sha_prefixes

#: Columns the search reads; the eval matches also read ``uid`` and ``url``.
SEARCH_COLUMNS = ["sha256", "phash", "dhash"]
EVAL_COLUMNS = ["uid", "url"]
#: Columns the keep rule reads for the records of groups.
RANK_COLUMNS = ["uid", "source", "source_offset", "sha256"]


@dataclass
class Settings:
    """The search's parameters, shipped to every worker. ``unit_starts[u]`` is the id of
    unit ``u``'s first record (one more entry: the number of records); ``shuffle_dir``:
    where shuffled payloads are spilled to files (None: they go through the runner)."""

    radius: int
    dhash_radius: int | None
    decontaminate: bool
    partitions: int
    rounds: int
    unit_starts: np.ndarray
    shuffle_dir: str | None = None

    @property
    def records(self) -> int:
        return int(self.unit_starts[-1])


@dataclass
class UnitSlim:
    exact_ids: np.ndarray  # records with a sha256 ...
    exact_prefix: np.ndarray  # ... and its first 64 bits
    near_ids: np.ndarray  # records in the near search ...
    phash: np.ndarray  # ... and their hashes
    dhash: np.ndarray
    eval_rows: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    eval_details: list[str] = field(default_factory=list)  # rejection details (decontaminate)
    matches: pa.Table | None = None  # the unit's eval matches (EVAL_MATCH_SCHEMA)


def hash_column(table: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(valid, values)`` of a uint64 hash column (nulls read as 0, not valid)."""
    column = table.column(name)
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    values = column.fill_null(0).cast(pa.uint64()).to_numpy(zero_copy_only=False)
    return np.asarray(valid, dtype=bool), np.asarray(values, dtype=np.uint64)


def slim_unit(table: pa.Table, first_id: int, settings: Settings, catalog: Any) -> UnitSlim:
    """One unit's part of the search; ``catalog``: the eval sets' index, or None."""
    exact_rows, prefix = sha_prefixes(table.column("sha256"))
    has_phash, phash = hash_column(table, "phash")
    has_dhash, dhash = hash_column(table, "dhash")
    near = has_phash if settings.dhash_radius is None else has_phash & has_dhash
    slim = UnitSlim(exact_rows + first_id, prefix, np.empty(0, np.int64), phash, dhash)
    if catalog is not None:
        usable = np.flatnonzero(has_phash & has_dhash)
        slim.matches, slim.eval_rows, slim.eval_details = eval_matches(
            catalog, table, usable, phash[usable], dhash[usable], settings.decontaminate
        )
        if settings.decontaminate:
            near[slim.eval_rows] = False
    rows = np.flatnonzero(near)
    slim.near_ids, slim.phash, slim.dhash = rows + first_id, phash[rows], dhash[rows]
    return slim


def band_copies(
    ids: np.ndarray, phash: np.ndarray, dhash: np.ndarray, radius: int
) -> dict[str, np.ndarray]:
    """Each record once per band: ``id, phash, dhash, band`` and ``key`` (band and band
    value in one number, for choosing the copy's partition)."""
    layout = band_layout(radius)
    n_bands = len(layout)
    band = np.tile(np.arange(n_bands, dtype=np.uint8), len(ids))
    phash_copies = np.repeat(phash, n_bands)
    shifts = np.asarray([s for s, _ in layout], dtype=np.uint64)[band]
    masks = np.asarray([(1 << w) - 1 for _, w in layout], dtype=np.uint64)[band]
    key = ((phash_copies >> shifts) & masks) ^ (band.astype(np.uint64) << np.uint64(58))
    return {
        "id": np.repeat(ids, n_bands),
        "phash": phash_copies,
        "dhash": np.repeat(dhash, n_bands),
        "band": band,
        "key": key,
    }


# -- eval overlap ----------------------------------------------------------------------------
def eval_matches(
    catalog: Any,
    table: pa.Table,
    rows: np.ndarray,
    phash: np.ndarray,
    dhash: np.ndarray,
    decontaminate: bool,
) -> tuple[pa.Table | None, np.ndarray, list[str]]:
    """The matches of ``rows`` (with their hashes) to the eval sets, and -- with
    ``decontaminate`` -- the rows to reject with the closest match as the detail."""
    found = catalog.match(phash, dhash) if len(rows) else []
    if not found:
        return None, np.empty(0, np.int64), []
    matched = sorted({int(rows[m.query]) for m in found})
    columns = table.select([*EVAL_COLUMNS, "sha256"]).take(pa.array(matched)).to_pylist()
    record = dict(zip(matched, columns))
    out, by_row = [], {}
    for match in found:
        row = int(rows[match.query])
        hashes = catalog.sets[match.set_index]
        item = {
            "eval_set": hashes.name,
            "eval_path": hashes.paths[match.sample],
            "eval_label": int(hashes.labels[match.sample]),
            "uid": record[row]["uid"],
            "url": record[row]["url"],
            "sha256": record[row]["sha256"],
            "phash": int(phash[match.query]),
            "dhash": int(dhash[match.query]),
            "variant": match.variant,
            "phash_distance": match.phash_distance,
            "dhash_distance": match.dhash_distance,
            "rejected": decontaminate,
        }
        out.append(item)
        by_row.setdefault(row, []).append(eval_candidate(item))
    out.sort(key=lambda m: (m["eval_set"], m["eval_path"], m["uid"]))
    matches = pa.Table.from_pylist(out, schema=EVAL_MATCH_SCHEMA)
    if not decontaminate:
        return matches, np.empty(0, np.int64), []
    eval_rows = sorted(by_row)
    details = [closest_first(by_row[row])[1] for row in eval_rows]
    return matches, np.asarray(eval_rows, np.int64), details


def eval_candidate(match: dict[str, Any]) -> tuple[tuple[int, int], str]:
    """``(distances, detail)`` of one match: the distances order a record's matches."""
    detail = (
        f"matches {match['eval_set']}/{match['eval_path']} "
        f"(pHash {match['phash_distance']}, dHash {match['dhash_distance']}, {match['variant']})"
    )
    return (match["phash_distance"], match["dhash_distance"]), detail


def closest_first(candidates: Iterable[tuple]) -> tuple:
    return min(candidates)
