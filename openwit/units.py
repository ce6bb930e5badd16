"""Work units: slices of the rows of a stage's Parquet input, planned from footers alone.

A stage that processes its input in independent pieces (``download``, ``image``, and the
reading side of ``shard``) cuts it into units of at most N rows, each inside one row group
of one file. The plan depends only
on the input files and N, so a rerun or a resumed run numbers the units the same way; Beam
spreads the units over its workers and each unit is written (and committed) on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from openwit.io import atomic_path
from openwit.schemas import REJECTION_SCHEMA


@dataclass(frozen=True)
class WorkUnit:
    """Rows ``start:stop`` of one row group of one input file."""

    index: int
    path: str
    row_group: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"{self.index:08d}"


@dataclass(frozen=True)
class RowGroup:
    """One row group of one input file, and the number of its first work unit."""

    path: str
    row_group: int
    rows: int
    first_unit: int

    def units(self, records_per_unit: int) -> list[WorkUnit]:
        starts = range(0, self.rows, records_per_unit)
        return [
            WorkUnit(
                self.first_unit + i,
                self.path,
                self.row_group,
                s,
                min(self.rows, s + records_per_unit),
            )
            for i, s in enumerate(starts)
        ]


def plan_row_groups(files: list[Path], records_per_unit: int) -> list[RowGroup]:
    """The input's row groups with unit numbers, from Parquet footers only: the same input
    always gets the same plan. Workers cut them into units (a billion-row input is a
    million units, too many to list in the pipeline graph)."""
    groups: list[RowGroup] = []
    next_unit = 0
    for path in sorted(str(f) for f in files):
        metadata = pq.ParquetFile(path).metadata
        for group in range(metadata.num_row_groups):
            rows = metadata.row_group(group).num_rows
            if rows:
                groups.append(RowGroup(path, group, rows, next_unit))
                next_unit += math.ceil(rows / records_per_unit)
    return groups


def plan_units(files: list[Path], records_per_unit: int) -> list[WorkUnit]:
    """Every work unit of the input, in order."""
    groups = plan_row_groups(files, records_per_unit)
    return [unit for group in groups for unit in group.units(records_per_unit)]


class UnitReader:
    """Reads units' rows, keeping the last row group: neighbouring units share it."""

    def __init__(self) -> None:
        self._group: tuple[tuple[str, int], pa.Table] | None = None

    def table(self, unit: WorkUnit) -> pa.Table:
        key = (unit.path, unit.row_group)
        if self._group is None or self._group[0] != key:
            self._group = (key, pq.ParquetFile(unit.path).read_row_group(unit.row_group))
        return self._group[1].slice(unit.start, unit.stop - unit.start)

    def records(self, unit: WorkUnit) -> list[dict[str, Any]]:
        return self.table(unit).to_pylist()


def part_path(work_dir: Path, unit: WorkUnit) -> Path:
    return work_dir / f"part-{unit.name}.parquet"


def write_rejections(work_dir: Path, unit: WorkUnit, rejected: list[dict[str, Any]]) -> None:
    """``rejections-U.parquet``: one unit's rejection records, written whole and atomically
    (a retried unit writes the same file again)."""
    with atomic_path(work_dir / f"rejections-{unit.name}.parquet") as tmp:
        pq.write_table(pa.Table.from_pylist(rejected, schema=REJECTION_SCHEMA), tmp)


def write_unit_files(
    work_dir: Path,
    unit: WorkUnit,
    kept: list[dict[str, Any]],
    rejected: list[dict[str, Any]],
    schema: pa.Schema,
) -> None:
    """Commit one unit atomically: its rejections, then its kept records, whose part file,
    written last, marks the unit done."""
    write_rejections(work_dir, unit, rejected)
    # JPEG/WebP bytes do not compress; zstd on them would only cost CPU.
    compression = {name: "none" if name == "image" else "zstd" for name in schema.names}
    with atomic_path(part_path(work_dir, unit)) as tmp:
        pq.write_table(pa.Table.from_pylist(kept, schema=schema), tmp, compression=compression)
