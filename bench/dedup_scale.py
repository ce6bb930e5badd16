"""Dedup at a given size: the stage on a real runner against its plain core, same input.

:func:`measure` runs, each in a process of its own (so peak memory is the run's own):

1. a build of :class:`dedup_data.SyntheticImages` (``records`` synthetic image records) and
   the dedup stage on the default runner (openwit's local worker pool, one worker per
   core) or another (``OPENWIT_WORKERS``); the stage's seconds come from the manifest;
2. the plain core over the same committed input (:func:`openwit.dedup.plain.plain_links`
   and the keep pass's apply-and-write per unit, one process, no Beam), whose rejections
   must equal the stage's.

It returns both timings, peak RSS (launcher and worker processes), cores and the stage's
shuffle figures (``links.summary.json``). ``bench_dedup_stage`` and ``bench_dedup_scale`` print
them.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent


def measure(records: int, workers: str | None = None, keep: bool = False) -> dict[str, Any]:
    """Stage and plain core on ``records`` synthetic records; ``workers``: the pool size
    (None: the default, one per core; "0": in the launcher process)."""
    from common import child_env, child_json

    env = child_env()
    env.pop("OPENWIT_WORKERS", None)
    if workers is not None:
        env["OPENWIT_WORKERS"] = workers
    work = Path(tempfile.mkdtemp(prefix=f"dedup-scale-{records}-"))
    script, build = Path(__file__).resolve(), str(work / "build")
    try:
        stage = child_json(script, ["stage", str(records), build], env)
        plain = child_json(script, ["plain", str(records), build, str(work / "plain")], env)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    if plain["rejections"] != stage["rejections"]:
        raise AssertionError("the stage and its plain core rejected different records")
    return {"records": records, "stage": stage, "plain": plain}


def _peak_rss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _process_peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_of_stage(runner: Any, stage: str) -> Any:
    """A build reporter for ``stage`` of ``runner`` (Beam-free bench code imports it late)."""
    from openwit.progress import SilentReporter

    class CpuOfStage(SilentReporter):
        """A build reporter that takes the CPU time of the launcher and of the worker pool's
        processes while one stage runs (the pool is already warm: an earlier stage started
        it, as in a real build), and the workers' peak RSS after it."""

        def __init__(self, runner: Any, stage: str) -> None:
            self.runner, self.stage = runner, stage
            self.cpu: dict[str, float] = {}
            self.worker_peak_mb = 0.0

        def _sample(self) -> dict[str, float]:
            own = resource.getrusage(resource.RUSAGE_SELF)
            pool = self.runner._pool  # the bench looks inside; a stage never does
            workers = [p.pid for p in pool.processes] if pool else []
            return {
                "launcher": own.ru_utime + own.ru_stime,
                "workers": sum(_process_cpu(pid) for pid in workers),
            }

        def stage_started(self, stage: str) -> None:
            if stage == self.stage:
                self.before = self._sample()

        def stage_finished(self, stage: str, counts: Any, seconds: float) -> None:
            if stage == self.stage:
                after = self._sample()
                self.cpu = {k: round(after[k] - self.before[k], 3) for k in after}
                pool = self.runner._pool
                if pool:
                    self.worker_peak_mb = round(
                        max(_process_peak_mb(p.pid) for p in pool.processes), 1
                    )

    return CpuOfStage(runner, stage)


def _rejection_digest(tables: list[Any]) -> str:
    import hashlib

    import pyarrow as pa

    if not tables:
        return ""
    table = pa.concat_tables(tables).sort_by([("uid", "ascending"), ("detail", "ascending")])
    digest = hashlib.sha256()
    for column in ("uid", "reason", "detail"):
        digest.update("\n".join(table.column(column).to_pylist()).encode())
    return f"{table.num_rows}:{digest.hexdigest()[:16]}"


def stage_child(records: int, out: str) -> dict[str, Any]:
    from dedup_data import SyntheticImages

    from openwit.builddir import BuildDir
    from openwit.config import load_build_config
    from openwit.dedup.stage import DedupStage
    from openwit.resources import machine_cores
    from openwit.runner import BuildRunner
    from openwit.workers import pool_size_for

    config = load_build_config(None, {"out": out})
    runner = BuildRunner(config, [SyntheticImages(records), DedupStage()])
    runner.reporter = cpu_of_stage(runner, "dedup")
    started = time.perf_counter()
    outcome = runner.run()
    total = time.perf_counter() - started
    # before this child reads the rejections back for the digest (2M rows at 10M)
    launcher_peak_mb = round(_peak_rss_mb(resource.RUSAGE_SELF), 1)
    cpu = runner.reporter.cpu
    entry = outcome.manifest["stages"]["dedup"]
    build = BuildDir(out)
    rejections = [build.read_table([f]) for f in build.rejection_files("dedup")]
    workers = pool_size_for(config.runner, config.beam_options)
    inputs = build.parts_of(build.stage_entry("synthetic_images"))
    input_bytes = sum(build.read_table([f]).nbytes for f in inputs)
    return {
        "input_bytes_per_record": round(input_bytes / records, 1),
        "seconds": entry["seconds"],
        "build_seconds": round(total, 3),
        "cores": workers or 1,
        "machine_cores": machine_cores(),
        "cpu_seconds": cpu,
        "funnel": entry["funnel"],
        "links": entry["stats"]["links"],
        "peak_rss_launcher_mb": launcher_peak_mb,
        "peak_rss_worker_mb": runner.reporter.worker_peak_mb,
        "rejections": _rejection_digest(rejections),
    }


def plain_child(records: int, build_dir: str, out: str) -> dict[str, Any]:
    import functools

    from openwit.builddir import BuildDir
    from openwit.config import DedupConfig
    from openwit.dedup.plain import plain_links
    from openwit.dedup.slim import Settings
    from openwit.dedup.stage import (
        OUTPUT_SCHEMA,
        DecideCore,
        partitions_for,
        unit_starts,
    )
    from openwit.outputs import parquet_bytes, write_unit
    from openwit.stage import cut_row_group
    from openwit.units import plan_row_groups

    build = BuildDir(build_dir)
    files = build.parts_of(build.stage_entry("synthetic_images"))
    Path(out).mkdir(parents=True, exist_ok=True)
    own = resource.getrusage(resource.RUSAGE_SELF)
    cpu = own.ru_utime + own.ru_stime
    started = time.perf_counter()
    per_unit = 50_000
    groups = plan_row_groups(files, per_unit)
    units = [u for g in groups for u in functools.partial(cut_row_group, per_unit)(g)]
    starts = unit_starts(groups, per_unit)
    config = DedupConfig()
    settings = Settings(
        config.near_duplicate_radius,
        config.near_duplicate_dhash_radius,
        config.decontaminate,
        partitions_for(int(starts[-1])),
        1,
        starts,
    )
    decisions, _ = plain_links(units, settings)
    for index, table in decisions.items():
        Path(out, f"links.decisions-{index:08d}.parquet").write_bytes(parquet_bytes(table))
    core = DecideCore(out)
    rejections = []
    for unit in units:
        output = core.start(unit)()
        write_unit(out, "", unit, output, OUTPUT_SCHEMA)
        if output.rejected is not None and output.rejected.num_rows:
            rejections.append(output.rejected)
    seconds = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "seconds": round(seconds, 3),
        "cpu_seconds": round(own.ru_utime + own.ru_stime - cpu, 3),
        "cores": 1,
        "peak_rss_mb": round(_peak_rss_mb(resource.RUSAGE_SELF), 1),
        "rejections": _rejection_digest(rejections),
    }


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH))
    from common import install_guard

    install_guard()
    kind, size = sys.argv[1], int(sys.argv[2])
    if kind == "stage":
        result = stage_child(size, sys.argv[3])
    else:
        result = plain_child(size, sys.argv[3], sys.argv[4])
    print(json.dumps(result))
