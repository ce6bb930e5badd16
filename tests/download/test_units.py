"""Work units: every input row in exactly one unit, the same plan for the same input, and
the partial work of an attempt planned differently thrown away on resume."""

from __future__ import annotations

import itertools
import math

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from openwit.config import BuildConfig
from openwit.resources import Resources
from openwit.stage import StageContext
from openwit.units import RowGroup, UnitReader, plan_row_groups, plan_units
from tests.download.stages import candidate


def write_input(path, rows: int, row_group_size: int):
    records = [candidate(f"http://127.0.0.1/{i}.jpg", f"caption {i}") for i in range(rows)]
    pq.write_table(pa.Table.from_pylist(records), path, row_group_size=row_group_size)
    return path


def test_units_cover_every_row_once_in_a_stable_order(tmp_path):
    files = [write_input(tmp_path / "b.parquet", 25, 10), write_input(tmp_path / "a.parquet", 7, 7)]
    units = plan_units(files, 4)
    assert [u.index for u in units] == list(range(len(units)))
    covered = [
        (piece.path, piece.row_group, row)
        for u in units
        for piece in u.slices
        for row in range(piece.start, piece.stop)
    ]
    assert len(covered) == len(set(covered)) == 32
    assert all(u.rows <= 4 and len(u.slices) == 1 for u in units)
    assert units[0].slices[0].path.endswith("a.parquet")  # files in name order
    assert plan_units(list(reversed(files)), 4) == units
    groups = plan_row_groups(files, 4)
    assert [g.first_unit for g in groups] == [0, 2, 5, 8]


def test_reader_gives_each_units_rows_and_their_place_in_the_file(tmp_path):
    path = write_input(tmp_path / "a.parquet", 25, 10)
    reader = UnitReader(["source_offset"])
    rows = []
    for unit in plan_units([path], 4):
        (piece,) = unit.slices
        table = reader.table(unit)
        assert reader.row_offset(piece.path, piece.row_group) == 10 * piece.row_group
        rows += table.column("source_offset").to_pylist()
    assert rows == [0] * 25  # candidate() sets offset 0; every row read once
    assert reader.records(plan_units([path], 30)[0])[0].keys() == {"source_offset"}


def test_a_resumed_attempt_planned_differently_starts_over(tmp_path):
    attempt = tmp_path / "attempt"

    def ctx(resume: bool) -> StageContext:
        return StageContext(
            "s", BuildConfig(), str(tmp_path), str(attempt), [], Resources(), resume
        )

    first = ctx(False)
    first.start_plan({"groups": [1, 2], "unit": 5})
    (attempt / "done-00000000.json").write_text("{}")
    same = ctx(True)
    same.start_plan({"groups": [1, 2], "unit": 5})
    assert (attempt / "done-00000000.json").exists() and same.resume
    other = ctx(True)
    other.start_plan({"groups": [1, 2], "unit": 3})
    assert not (attempt / "done-00000000.json").exists()
    assert not other.resume  # nothing of the old plan is trusted


@settings(max_examples=200, deadline=None)
@given(rows=st.integers(1, 100_000), per_unit=st.integers(1, 60_000), first=st.integers(0, 50))
def test_a_row_group_is_cut_into_equal_units_that_cover_it(rows, per_unit, first):
    """As many units as ``ceil(rows / per_unit)``, numbered from the group's first unit, in
    order, covering every row once, each at most ``per_unit`` rows and within one row of
    the others: the local pool's workers take units in turn, so a short remainder unit in
    every group would land on the same worker each time."""
    units = RowGroup("part.parquet", 3, rows, first).units(per_unit)
    assert [u.index for u in units] == list(range(first, first + math.ceil(rows / per_unit)))
    slices = [u.slices[0] for u in units]
    assert slices[0].start == 0 and slices[-1].stop == rows
    assert all(a.stop == b.start for a, b in itertools.pairwise(slices))
    sizes = [s.stop - s.start for s in slices]
    assert max(sizes) <= per_unit and max(sizes) - min(sizes) <= 1


def test_a_group_of_180k_rows_at_50k_is_four_units_of_45k():
    units = RowGroup("part.parquet", 0, 180_000, 0).units(50_000)
    assert [u.rows for u in units] == [45_000] * 4
