"""The image stage's checks and the shard stage against their plain cores, at 100k and 1M
samples: records/s per core on openwit's local worker pool.

A synthetic download stage writes ``n`` stored images' metadata and 1 kB of bytes each
(``candidate_schema("download")``; 4% of the originals below the minimum side, 2% too
elongated), then the build runs ``image`` -> ``dedup`` -> ``shard`` on the default runner
(openwit's local worker pool, one worker per core). The plain cores are the same core
classes over the same files in one loop in one process, writing what the stages write
(``ImageCore`` with ``write_unit``; ``ShardCore`` writing the same shards from the same
dedup output into another folder). Both sides run as fresh processes; per core is the
plain core's time over (cores x the stage's). ``OPENWIT_BENCH_SCALE`` lists the sizes.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from openwit.config import BuildConfig
from openwit.outputs import UnitOutput
from openwit.schemas import candidate_schema
from openwit.stage import Stage, StageContext, StageResult
from openwit.unit_transform import UnitWork, run_units
from openwit.units import WorkUnit

BENCH = Path(__file__).resolve().parent
IMAGE_BYTES = 1_000
ROWS_PER_UNIT = 50_000
DOWNLOAD_SCHEMA = candidate_schema("download")


def synthetic_downloads(start: int, stop: int) -> pa.Table:
    """Records ``start..stop`` as download-stage output, with ``IMAGE_BYTES`` each."""
    from dedup_data import synthetic_table

    table = synthetic_table(start, stop).drop_columns(["image_file", "image_row"])
    n = table.num_rows
    index = np.arange(start, stop)
    side = np.where(index % 25 == 0, 150, 768).astype(np.int32)  # 4% too small
    width = np.where(index % 50 == 1, 3000, 1024).astype(np.int32)  # 2% too elongated
    for name, values in (("original_width", width), ("original_height", side)):
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(values))
    raw = np.random.default_rng(start).integers(0, 256, n * IMAGE_BYTES, np.uint8)
    offsets = pa.py_buffer((np.arange(n + 1, dtype=np.int32) * IMAGE_BYTES).tobytes())
    images = pa.Array.from_buffers(pa.binary(), n, [None, offsets, pa.py_buffer(raw)])
    table = table.append_column("image", images)
    return table.select(DOWNLOAD_SCHEMA.names).cast(DOWNLOAD_SCHEMA)


class SyntheticDownloadCore(UnitWork):
    def run(self, unit: WorkUnit) -> UnitOutput:
        table = synthetic_downloads(*unit.payload)
        return UnitOutput(table, None, n_in=table.num_rows)


class SyntheticDownloads(Stage):
    """A first stage that writes ``records`` stored images (``inputs`` unused)."""

    name = "synthetic_downloads"
    config_keys = ()

    def __init__(self, records: int) -> None:
        self.records = records

    def fingerprint(self, config: BuildConfig) -> dict:
        return {"records": self.records, "bytes": IMAGE_BYTES}

    def output_schema(self, config: BuildConfig) -> pa.Schema:
        return DOWNLOAD_SCHEMA

    def run(self, ctx: StageContext) -> StageResult:
        count = math.ceil(self.records / ROWS_PER_UNIT)
        units = [
            WorkUnit(i, payload=(i * ROWS_PER_UNIT, min(self.records, (i + 1) * ROWS_PER_UNIT)))
            for i in range(count)
        ]
        fn = ctx.run_units_fn(SyntheticDownloadCore, DOWNLOAD_SCHEMA)
        with ctx.new_pipeline(count) as pipeline:
            run_units(pipeline, "Synthetic", units, None, fn)
        return StageResult(units=count)


def _stages(records: int) -> list[Stage]:
    from openwit.dedup.stage import DedupStage
    from openwit.pipeline.image.stage import ImageStage
    from openwit.pipeline.shard.stage import ShardStage

    return [SyntheticDownloads(records), ImageStage(), DedupStage(), ShardStage()]


def stage_child(records: int, out: str) -> dict[str, Any]:
    from openwit.config import load_build_config
    from openwit.runner import BuildRunner
    from openwit.workers import pool_size_for

    config = load_build_config(None, {"out": out})
    outcome = BuildRunner(config, _stages(records)).run()
    stages = outcome.manifest["stages"]
    return {
        "cores": pool_size_for(config.runner, config.beam_options) or 1,
        "image_s": stages["image"]["seconds"],
        "shard_s": stages["shard"]["seconds"],
        "image_funnel": stages["image"]["funnel"],
        "samples": stages["shard"]["funnel"]["out"],
    }


def plain_child(build_dir: str, out: str) -> dict[str, Any]:
    """The two cores over the stage build's own inputs, one loop each, one process."""
    from openwit.builddir import BuildDir
    from openwit.config import load_build_config
    from openwit.outputs import write_unit
    from openwit.pipeline.image.stage import OUTPUT_SCHEMA, ImageCore
    from openwit.pipeline.shard.stage import ShardCore, plan_shards
    from openwit.stage import cut_row_group
    from openwit.units import plan_row_groups

    config = load_build_config(None, {"out": build_dir})
    build = BuildDir(build_dir)
    plain = Path(out)
    plain.mkdir(parents=True)
    (plain / "stages").symlink_to(Path(build_dir) / "stages")  # the stored bytes' pointers
    downloads = build.parts_of(build.stage_entry("synthetic_downloads"))
    groups = plan_row_groups(downloads, ROWS_PER_UNIT)
    units = [u for g in groups for u in cut_row_group(ROWS_PER_UNIT, g)]
    started = time.perf_counter()
    core = ImageCore(config.image.min_side, config.image.max_aspect, build_dir)
    kept = 0
    for unit in units:
        output = core.run(unit)
        kept += output.kept.num_rows
        write_unit(str(plain / "image"), "", unit, output, OUTPUT_SCHEMA)
    image_s = time.perf_counter() - started

    per_shard = config.shards.samples_per_shard
    shard_units = plan_shards(build.parts_of(build.stage_entry("dedup")), per_shard)
    started = time.perf_counter()
    shards = ShardCore(str(plain), per_shard)
    samples = sum(shards.run(unit).n_out for unit in shard_units)
    shard_s = time.perf_counter() - started
    return {"image_s": image_s, "image_kept": kept, "shard_s": shard_s, "samples": samples}


def _child(args: list[str]) -> dict[str, Any]:
    from common import child_env, child_json

    env = child_env()
    env.pop("OPENWIT_WORKERS", None)
    return child_json(Path(__file__).resolve(), args, env)


def main() -> None:
    from common import emit

    sizes = [int(s) for s in os.environ.get("OPENWIT_BENCH_SCALE", "100000,1000000").split(",")]
    for n in sizes:
        work = Path(tempfile.mkdtemp(prefix=f"image-shard-scale-{n}-"))
        try:
            stage = _child(["stage", str(n), str(work / "build")])
            plain = _child(["plain", str(work / "build"), str(work / "plain")])
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if plain["image_kept"] != stage["image_funnel"]["out"]:
            raise AssertionError("the image stage and its plain core kept different records")
        if plain["samples"] != stage["samples"]:
            raise AssertionError("the shard stage and its plain core wrote different samples")
        cores = stage["cores"]
        for name, count in (("image", n), ("shard", stage["samples"])):
            emit(
                f"scale_{name}_records_per_core_{n}",
                count / stage[f"{name}_s"] / cores,
                "records/s",
                "plain core, one process",
                count / plain[f"{name}_s"],
                records=count,
                cores=cores,
                stage_s=round(stage[f"{name}_s"], 3),
                plain_s=round(plain[f"{name}_s"], 3),
            )


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH))
    from common import install_guard

    install_guard()
    if sys.argv[1:2] == ["stage"]:
        print(json.dumps(stage_child(int(sys.argv[2]), sys.argv[3])))
    elif sys.argv[1:2] == ["plain"]:
        print(json.dumps(plain_child(sys.argv[2], sys.argv[3])))
    else:
        main()
