"""Work units of the download stage: every input row in exactly one unit, the same plan
for the same input, and partial work of another plan thrown away."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from openwit.pipeline.download.downloader import DownloadSettings
from openwit.pipeline.download.fetch.client import ClientSettings
from openwit.pipeline.download.resize import ResizeSettings
from openwit.pipeline.download.stage import _start_plan
from openwit.units import plan_row_groups, plan_units
from tests.download.stages import candidate


def write_input(path, rows: int, row_group_size: int):
    records = [candidate(f"http://127.0.0.1/{i}.jpg", f"caption {i}") for i in range(rows)]
    pq.write_table(pa.Table.from_pylist(records), path, row_group_size=row_group_size)
    return path


def test_units_cover_every_row_once_in_a_stable_order(tmp_path):
    files = [write_input(tmp_path / "b.parquet", 25, 10), write_input(tmp_path / "a.parquet", 7, 7)]
    units = plan_units(files, 4)
    assert [u.index for u in units] == list(range(len(units)))
    covered = [(u.path, u.row_group, row) for u in units for row in range(u.start, u.stop)]
    assert len(covered) == len(set(covered)) == 32
    assert all(u.stop - u.start <= 4 for u in units)
    assert units[0].path.endswith("a.parquet")  # files in name order, not argument order
    assert plan_units(list(reversed(files)), 4) == units
    groups = plan_row_groups(files, 4)
    assert [g.first_unit for g in groups] == [0, 2, 5, 8]


def test_partial_work_of_another_plan_is_thrown_away(tmp_path):
    files = [write_input(tmp_path / "in.parquet", 10, 10)]
    work = tmp_path / "work"
    work.mkdir()

    def start(per_unit: int, timeout_s: float = 10.0) -> None:
        client = ClientSettings(timeout_s=timeout_s)
        settings = DownloadSettings(client, ResizeSettings(), records_per_unit=per_unit)
        _start_plan(work, plan_row_groups(files, per_unit), settings)

    start(5)
    (work / "part-00000000.parquet").write_bytes(b"done earlier")
    start(5)  # the same plan: kept
    assert (work / "part-00000000.parquet").exists()
    start(5, timeout_s=3.0)  # another setting: gone
    assert not (work / "part-00000000.parquet").exists()
    (work / "part-00000000.parquet").write_bytes(b"done earlier")
    start(3)  # another unit size: gone
    assert not (work / "part-00000000.parquet").exists()
