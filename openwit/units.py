"""Work units: the pieces a stage's input is cut into, planned from Parquet footers alone.

Every build stage works unit by unit: a unit is a few row slices of the previous stage's
Parquet output (or, for ingest, part of an input file), numbered in input order. Beam
spreads the units over the workers; each unit's results are written (and committed) on
their own, under names that carry the unit's number. The plan depends only on the input
files and the unit size, so every runner, rerun and resumed run numbers the units the same
way, and the records of a stage's output keep the order of its input.

A billion-row input is a million units: too many to list in a pipeline graph. The launcher
lists row groups (:class:`RowGroup`, with the number of their first unit) and the workers
cut them into units (:meth:`RowGroup.units`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from openwit import fs

T = TypeVar("T")


@dataclass(frozen=True)
class Slice:
    """Rows ``start:stop`` of one row group of one Parquet file."""

    path: str
    row_group: int
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class WorkUnit:
    """Unit ``index`` of a stage: its row slices (in order), or a stage's own ``payload``
    (an input file's part for ingest, a shard's sample range for shard)."""

    index: int
    slices: tuple[Slice, ...] = ()
    payload: Any = None

    @property
    def name(self) -> str:
        return f"{self.index:08d}"

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.slices)


@dataclass(frozen=True)
class RowGroup:
    """One row group of one input file, and the number of its first work unit."""

    path: str
    row_group: int
    rows: int
    first_unit: int

    def units(self, rows_per_unit: int) -> list[WorkUnit]:
        """The group cut into ``ceil(rows / rows_per_unit)`` units of equal size (within a
        row). Not ``rows_per_unit`` and a remainder: the local pool's workers take units in
        turn, and a group of 180k rows cut 50k, 50k, 50k, 30k gave every short unit to the
        same worker (3M candidates: one worker idle for the last 3.5 s of a 33 s stage)."""
        count = math.ceil(self.rows / rows_per_unit)
        bounds = [self.rows * i // count for i in range(count + 1)]
        return [
            WorkUnit(self.first_unit + i, (Slice(self.path, self.row_group, start, stop),))
            for i, (start, stop) in enumerate(itertools.pairwise(bounds))
        ]


def parquet_metadata(path: str) -> pq.FileMetaData:
    """The footer of a Parquet file, local or remote."""
    with fs.open_input(path) as stream:
        return pq.ParquetFile(stream).metadata


def row_group_sizes(metadata: pq.FileMetaData) -> list[int]:
    return [metadata.row_group(index).num_rows for index in range(metadata.num_row_groups)]


def footers(paths: Sequence[str], summarize: Callable[[pq.FileMetaData], T]) -> list[T]:
    """``summarize`` of each file's footer, read side by side when the files are remote.

    Each footer is dropped once summarized: a footer carries every column's statistics for
    every row group, and 200 of them held together cost a worker 50 MB at 10M candidates."""

    def summary(path: str) -> T:
        return summarize(parquet_metadata(path))

    return fs.map_urls(summary, paths)


def plan_row_groups(files: Sequence[str], rows_per_unit: int) -> list[RowGroup]:
    """The input's non-empty row groups with their first unit numbers (files in name order)."""
    paths = sorted(str(f) for f in files)
    groups: list[RowGroup] = []
    next_unit = 0
    for path, sizes in zip(paths, footers(paths, row_group_sizes)):
        for group, rows in enumerate(sizes):
            if rows:
                groups.append(RowGroup(path, group, rows, next_unit))
                next_unit += math.ceil(rows / rows_per_unit)
    return groups


def renumber(groups: Sequence[RowGroup], rows_per_unit: int) -> list[RowGroup]:
    """The same row groups with first unit numbers for another unit size."""
    renumbered, next_unit = [], 0
    for group in groups:
        renumbered.append(RowGroup(group.path, group.row_group, group.rows, next_unit))
        next_unit += math.ceil(group.rows / rows_per_unit)
    return renumbered


def count_units(groups: Sequence[RowGroup], rows_per_unit: int) -> int:
    return sum(math.ceil(g.rows / rows_per_unit) for g in groups)


def plan_units(files: Sequence[str], rows_per_unit: int) -> list[WorkUnit]:
    """Every work unit of the input, in order (for small inputs and tests)."""
    groups = plan_row_groups(files, rows_per_unit)
    return [unit for group in groups for unit in group.units(rows_per_unit)]


class UnitReader:
    """Reads units' rows, keeping the last row group read: neighbouring units share it."""

    def __init__(self, columns: Sequence[str] | None = None) -> None:
        self.columns = list(columns) if columns is not None else None
        self._group: tuple[tuple[str, int], pa.Table] | None = None
        self._offsets: dict[str, list[int]] = {}

    def row_offset(self, path: str, row_group: int) -> int:
        """The row number, in its file, of a row group's first row."""
        offsets = self._offsets.get(path)
        if offsets is None:
            metadata = parquet_metadata(path)
            offsets, total = [], 0
            for index in range(metadata.num_row_groups):
                offsets.append(total)
                total += metadata.row_group(index).num_rows
            self._offsets = {path: offsets}  # units of one file come together
        return offsets[row_group]

    def _row_group(self, path: str, row_group: int) -> pa.Table:
        key = (path, row_group)
        if self._group is None or self._group[0] != key:
            self._group = None  # not two groups in memory while the next one is read
            with fs.open_input(path) as stream:
                table = pq.ParquetFile(stream).read_row_group(row_group, columns=self.columns)
            self._group = (key, table)
        return self._group[1]

    def read_slice(self, piece: Slice) -> pa.Table:
        return self._row_group(piece.path, piece.row_group).slice(piece.start, piece.rows)

    def table(self, unit: WorkUnit) -> pa.Table:
        """The unit's rows as one table."""
        tables = [self.read_slice(piece) for piece in unit.slices]
        if len(tables) == 1:
            return tables[0]
        return pa.concat_tables(tables) if tables else pa.table({})

    def records(self, unit: WorkUnit) -> list[dict[str, Any]]:
        return self.table(unit).to_pylist()
