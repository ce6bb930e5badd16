"""The links pass in one process: the same functions as the Beam graph, without Beam.

Every step of :mod:`openwit.dedup.links` on all the records at once -- one partition, the
components straight from :func:`openwit.dedup.components.star_components` -- for the
benchmarks' baseline (the stage's cost over its plain core) and for tests that check the
stage against it. It holds every record's hashes in memory: not for large inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from openwit.dedup.batches import text_array
from openwit.dedup.components import star_components
from openwit.dedup.near import near_links
from openwit.dedup.resolve import (
    EVAL,
    EXACT,
    NEAR,
    Members,
    prefix_groups,
    settle,
    unit_decisions,
)
from openwit.dedup.slim import (
    EVAL_COLUMNS,
    RANK_COLUMNS,
    SEARCH_COLUMNS,
    Settings,
    UnitSlim,
    band_copies,
    slim_unit,
)
from openwit.units import UnitReader, WorkUnit


def plain_links(
    units: Sequence[WorkUnit], settings: Settings, catalog: Any = None
) -> tuple[dict[int, pa.Table], dict[int, pa.Table]]:
    """``(decisions, eval matches)`` per unit index (units without any are left out)."""
    columns = SEARCH_COLUMNS + (EVAL_COLUMNS if catalog is not None else [])
    reader = UnitReader(columns)
    starts = settings.unit_starts
    slims: list[UnitSlim] = []
    for unit in units:
        slims.append(slim_unit(reader.table(unit), int(starts[unit.index]), settings, catalog))

    def joined(name: str) -> np.ndarray:
        return np.concatenate([getattr(s, name) for s in slims])

    exact_label, exact_id = prefix_groups(joined("exact_prefix"), joined("exact_ids"))
    copies = band_copies(joined("near_ids"), joined("phash"), joined("dhash"), settings.radius)
    member, root = near_links(
        copies["id"],
        copies["phash"],
        copies["dhash"],
        copies["band"],
        settings.radius,
        settings.dhash_radius,
    )
    roots, _ = star_components(member, root)
    near_id = np.asarray(list(roots), np.int64)
    near_label = np.asarray(list(roots.values()), np.int64)

    kind = np.r_[np.full(len(exact_id), EXACT, np.uint8), np.full(len(near_id), NEAR, np.uint8)]
    label, ids = np.r_[exact_label, near_label], np.r_[exact_id, near_id]
    ranks = rank_parts(units, starts, ids)
    sha = pc.if_else(pa.array(kind == EXACT), ranks.column("sha256"), "")
    members = Members(
        kind,
        label,
        ids,
        ranks.column("uid").combine_chunks(),
        pc.fill_null(ranks.column("source"), "").combine_chunks(),
        pc.fill_null(ranks.column("source_offset"), -1).to_numpy(),
        sha.combine_chunks() if isinstance(sha, pa.ChunkedArray) else sha,
    )
    rejected, reasons, kept = settle(members)

    decisions, matches = {}, {}
    unit_of = np.searchsorted(starts, rejected, side="right") - 1
    for unit, slim in zip(units, slims):
        first = int(starts[unit.index])
        mine = np.flatnonzero(unit_of == unit.index)
        rows = np.r_[rejected[mine] - first, slim.eval_rows]
        codes = np.r_[reasons[mine], np.full(len(slim.eval_rows), EVAL, np.uint8)]
        arguments = pa.concat_arrays([kept.take(pa.array(mine)), text_array(slim.eval_details)])
        if len(rows):
            decisions[unit.index] = unit_decisions(rows, codes, arguments)
        if slim.matches is not None:
            matches[unit.index] = slim.matches
    return decisions, matches


def rank_parts(units: Sequence[WorkUnit], starts: np.ndarray, ids: np.ndarray) -> pa.Table:
    """The rank-key columns (and sha256) of the records ``ids``, in that order."""
    reader = UnitReader(RANK_COLUMNS)
    by_index = {u.index: u for u in units}
    unit_of = np.searchsorted(starts, ids, side="right") - 1
    order = np.argsort(unit_of, kind="stable")
    present, firsts = np.unique(unit_of[order], return_index=True)
    tables = [
        pa.table(
            {
                "uid": pa.array([], pa.string()),
                "source": pa.array([], pa.string()),
                "source_offset": pa.array([], pa.int64()),
                "sha256": pa.array([], pa.string()),
            }
        )
    ]
    for index, start, stop in zip(present.tolist(), firsts, [*firsts[1:], len(order)]):
        where = order[start:stop]
        table = reader.table(by_index[index]).take(pa.array(ids[where] - starts[index]))
        tables.append(table.select(tables[0].column_names).cast(tables[0].schema))
    joined = pa.concat_tables(tables)
    back = np.empty(len(order), np.int64)
    back[order] = np.arange(len(order))
    return joined.take(pa.array(back))
