"""Build stage ``shard``: the kept records -> webdataset shards open_clip_train reads as is.

``OUT/shards/NNNNN.tar`` (members ``KEY.jpg``, ``KEY.txt``, ``KEY.json``), ``NNNNN.parquet``
(one row per sample, no image bytes) and ``sizes.json``.

Samples keep the order of the dedup stage's output, which every stage since ingest has
kept: uid order (ingest writes its pairs bucket by bucket of the uid space), an order that
depends only on the set of records, never on how a runner split the work. Sample ``i`` gets
key ``i`` and goes to shard ``i // samples_per_shard``, so the launcher plans every shard
from the input's Parquet footers alone: shard ``k`` is rows ``[k*S, (k+1)*S)`` of the
dedup output. A shard's unit reads those rows (metadata), then the stored bytes they point
at (``image_file``/``image_row``, the download stage's part files): the images are read
once more and written once, never shuffled. A shard already complete on disk with the
same samples (``--resume``, reruns) is kept, not rewritten.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import pyarrow.parquet as pq

from openwit import fs
from openwit.errors import UserError
from openwit.outputs import StageTotals, UnitOutput
from openwit.pipeline.shard.tars import shard_files, shard_name, write_shard
from openwit.schemas import KEY_DIGITS, sample_key
from openwit.stage import Stage, StageContext, StageResult
from openwit.unit_transform import UnitWork, run_units
from openwit.units import Slice, WorkUnit, footers, row_group_sizes

STAGE = "shard"
SIZES_FILE = "sizes.json"


def plan_shards(files: list[str], per_shard: int) -> list[WorkUnit]:
    """One unit per shard: the slices of the input that make rows ``[k*S, (k+1)*S)``."""
    units: list[WorkUnit] = []
    pieces: list[Slice] = []
    taken = 0
    for path, sizes in zip(files, footers(files, row_group_sizes)):
        for group, rows in enumerate(sizes):
            start = 0
            while start < rows:
                stop = min(rows, start + per_shard - taken)
                pieces.append(Slice(path, group, start, stop))
                taken += stop - start
                start = stop
                if taken == per_shard:
                    units.append(WorkUnit(len(units), tuple(pieces)))
                    pieces, taken = [], 0
    if pieces:
        units.append(WorkUnit(len(units), tuple(pieces)))
    return units


class ImageBytes:
    """Stored image bytes by ``(image_file, image_row)``, one download part file at a time
    (a shard's samples come in the download's order, so each file is read once)."""

    def __init__(self, build_dir: str) -> None:
        self.build_dir = build_dir
        self._file: tuple[str, list[bytes]] | None = None

    def get(self, image_file: str, row: int) -> bytes:
        if self._file is None or self._file[0] != image_file:
            with fs.open_input(fs.join(self.build_dir, image_file)) as stream:
                column = pq.read_table(stream, columns=["image"]).column("image")
            self._file = (image_file, column.to_pylist())
        return self._file[1][row]


class ShardCore(UnitWork):
    """Writes one shard per unit into ``OUT/shards``."""

    def __init__(self, build_dir: str, per_shard: int) -> None:
        from openwit.units import UnitReader

        self.build_dir = build_dir
        self.shards_dir = fs.join(build_dir, "shards")
        self.per_shard = per_shard
        self.reader = UnitReader()
        self.images = ImageBytes(build_dir)
        self.existing = fs.list_files(self.shards_dir)

    def run(self, unit: WorkUnit) -> UnitOutput:
        records = self.reader.records(unit)
        first = unit.index * self.per_shard
        for offset, record in enumerate(records):
            record["key"] = sample_key(first + offset)
            record["image"] = self.images.get(record["image_file"], record["image_row"])
        info = write_shard(self.shards_dir, unit.index, records, self.existing)
        name = shard_name(unit.index)
        stats = {
            "tar_bytes": info.tar_bytes,
            "image_bytes": sum(len(r["image"]) for r in records),
            "shards_written": int(info.written),
            "shards_kept": int(not info.written),
        }
        published = {
            f"shards/{name}.tar": info.tar_bytes,
            f"shards/{name}.parquet": info.index_bytes,
        }
        return UnitOutput(n_out=len(records), stats=stats, published=published)

    def close(self) -> None:
        return None


class ShardStage(Stage):
    """Number the samples in order and write them as webdataset shards."""

    name = STAGE
    version = 2
    config_keys = ("shards",)

    def published_prefixes(self, build_dir: str) -> list[str]:
        return [fs.join(build_dir, "shards")]

    def run(self, ctx: StageContext) -> StageResult:
        per_shard = ctx.config.shards.samples_per_shard
        shards_dir = fs.join(ctx.build_dir, "shards")
        if fs.is_local(shards_dir):  # temporary files of a write that was killed
            for leftover in fs.local_path(shards_dir).glob(".*.tmp"):
                leftover.unlink()
        units = plan_shards(ctx.input_files, per_shard)
        samples = sum(unit.rows for unit in units)
        if samples >= 10**KEY_DIGITS:
            raise UserError(
                f"shard: {samples:,} samples do not fit {KEY_DIGITS}-digit keys; split the build"
            )
        ctx.start_plan({"shards": [[u.index, u.rows] for u in units], "per_shard": per_shard})
        if units:
            core = functools.partial(ShardCore, ctx.build_dir, per_shard)
            with ctx.new_pipeline(len(units)) as pipeline:
                run_units(pipeline, "Write shards", units, None, ctx.run_units_fn(core, None))
        return StageResult(units=len(units))

    def finalize(self, ctx: StageContext, totals: StageTotals) -> dict[str, Any]:
        """Drop shards beyond this build's (an earlier, larger build's); write sizes.json."""
        per_shard = ctx.config.shards.samples_per_shard
        shards_dir = fs.join(ctx.build_dir, "shards")
        n_shards = math.ceil(totals.n_out / per_shard)
        found = shard_files(fs.list_files(shards_dir))
        fs.delete([url for index, urls in found.items() if index >= n_shards for url in urls])
        sizes = {
            f"{shard_name(k)}.tar": min(per_shard, totals.n_out - k * per_shard)
            for k in range(n_shards)
        }
        fs.write_json(fs.join(shards_dir, SIZES_FILE), sizes)
        return {"shards": n_shards, "samples": totals.n_out}
