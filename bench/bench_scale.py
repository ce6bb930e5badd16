"""The cost curve of the candidate stages: ingest -> balance at 100k, 1M (and 10M) candidates.

A synthetic pool (``scale_pool``: Parquet files of (url, caption) rows with Zipf-drawn
English captions, duplicates and junk, as a user's first real build looks) and a
500,000-query list. ``openwit build --until balance`` runs as a user runs it (the default
runner: openwit's local worker pool, one worker per core), while a sampler reads ``/proc``
of the launcher and its workers every 0.2 s: CPU seconds (so cores used, per stage, from
the manifest's stage start times) and peak RSS of each process.

Figures per size and stage: records/s, records/s per core used, cores used; peak RSS of
the launcher and of each worker; at the end the slope of each stage's time against the
size on a log-log fit (1.0 is linear), the 2-core run against the same build held to one
core (``taskset -c 0``, everything in the launcher), and each stage's rate per core against
its plain core (the same core functions over the same files in one plain loop, no Beam;
the match core's time includes building its automaton once, and is also given without),
that plain core's rate while two copies of it run at once, one per core (the most a core
gives while the other works too, on this machine), and the stage against the plain loop
when that also writes its outputs as the stage writes a unit's (all the stage's work but
Beam's; the plain core above only computes them).

``OPENWIT_BENCH_SCALE`` lists the sizes (default ``100000,1000000``; ``make bench`` adds the
10M point with ``OPENWIT_BENCH_SCALE_FULL=1``).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import REPO, child_env, emit, guarded_env, install_guard, last_json
from scale_pool import vocabulary, write_pool, write_queries

install_guard()

SIZES = [int(s) for s in os.environ.get("OPENWIT_BENCH_SCALE", "100000,1000000").split(",")]
if os.environ.get("OPENWIT_BENCH_SCALE_FULL") == "1" and 10_000_000 not in SIZES:
    SIZES.append(10_000_000)
STAGES = ("ingest", "text", "match", "balance")


# -- measuring ------------------------------------------------------------------------------
def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


def _cpu_and_rss(pid: int) -> tuple[float, int, str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        status = Path(f"/proc/{pid}/status").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(stat[11]) + int(stat[12])) / ticks
    rss = next(
        (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")), 0
    )
    return cpu, rss * 1024, cmdline


class Sampler:
    """CPU seconds of a process tree over time, and each process's peak RSS."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.series: list[tuple[float, float]] = []
        self.peaks: dict[int, tuple[int, str]] = {}
        self.last_cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for pid in _tree(self.pid):
                sample = _cpu_and_rss(pid)
                if sample is None:
                    continue
                cpu, rss, cmd = sample
                self.last_cpu[pid] = cpu
                if rss > self.peaks.get(pid, (0, ""))[0]:
                    self.peaks[pid] = (rss, cmd)
            self.series.append((time.time(), sum(self.last_cpu.values())))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def cpu_between(self, start: float, stop: float) -> float:
        def at(moment: float) -> float:
            before = [cpu for t, cpu in self.series if t <= moment]
            return before[-1] if before else 0.0

        return at(stop) - at(start)


def run_build(root: Path, pool: Path, queries: Path, out: Path, one_core: bool) -> dict:
    config = {
        "out": str(out),
        "queries": str(queries),
        "inputs": [{"path": str(pool / "*.parquet"), "text_column": "caption"}],
        "text": {"min_lang_score": 0.3},
        "balance": {"max_per_query": 20_000},
    }
    path = root / f"{out.name}.yaml"
    path.write_text(json.dumps(config))
    env = guarded_env()
    command = [
        sys.executable,
        "-m",
        "openwit.cli",
        "build",
        "--config",
        str(path),
        "--until",
        "balance",
    ]
    if one_core:
        env["OPENWIT_WORKERS"] = "0"
        command = ["taskset", "-c", "0", *command]
    else:
        env.pop("OPENWIT_WORKERS", None)
    started = time.time()
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    with Sampler(process.pid) as sampler:
        _, err = process.communicate()
    wall = time.time() - started
    if process.returncode != 0 or b"Traceback" in err:
        raise RuntimeError(f"build failed: {err.decode()[-2000:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    stages = {}
    for name in STAGES:
        entry = manifest["stages"][name]
        begin, seconds = entry["started_unix"], entry["seconds"]
        cpu = sampler.cpu_between(begin, begin + seconds)
        stages[name] = {"in": entry["funnel"]["in"], "seconds": seconds, "cpu": cpu}
    launcher = sampler.peaks.get(process.pid, (0, ""))[0]
    # every other process of the tree is a worker (forked from the launcher, or spawned)
    workers = [rss for pid, (rss, _) in sampler.peaks.items() if pid != process.pid]
    return {"wall": wall, "stages": stages, "launcher_rss": launcher, "worker_rss": workers}


# -- plain cores ----------------------------------------------------------------------------
def plain_core_rates(out: Path, queries: Path, write: bool = False) -> dict[str, float]:
    """Records/s of each stage's core functions in one plain loop over the stage's committed
    input files (no Beam, no unit transform), one core. With ``write``, each output is also
    written as the stage writes a unit's (``write_unit``: Parquet files and a marker, into a
    temporary folder), so the loop does all of a stage's work but Beam's."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from openwit.builddir import BuildDir
    from openwit.config import BuildConfig
    from openwit.outputs import write_unit
    from openwit.pipeline.balance.stage import balance_table, query_counts
    from openwit.pipeline.ingest.readers import plan_read_units, read_unit
    from openwit.pipeline.ingest.stage import unique_pairs
    from openwit.pipeline.match.matcher import file_digest, shared_matcher
    from openwit.pipeline.match.stage import match_table
    from openwit.pipeline.text.langid import language_id
    from openwit.pipeline.text.stage import filter_texts
    from openwit.schemas import candidate_schema
    from openwit.units import WorkUnit

    build = BuildDir(out)
    config = BuildConfig.model_validate(build.manifest()["config"])
    rates = {}
    written = tempfile.mkdtemp(prefix="plain-writes-") if write else None
    units = itertools.count()

    def put(output: Any, schema: Any) -> None:
        if written is not None:
            write_unit(written, "", WorkUnit(next(units)), output, schema)

    started = time.perf_counter()
    n = 0
    tables = []
    for spec in plan_read_units(config):
        items = [i for i in read_unit(spec, {}) if isinstance(i, dict)]
        n += len(items)
        tables.append(pa.Table.from_pylist(items, schema=candidate_schema("ingest")))
    put(unique_pairs(pa.concat_tables(tables)), candidate_schema("ingest"))
    rates["ingest"] = n / (time.perf_counter() - started)

    identify = language_id(config.text.lang_backend)
    files = build.stage_files("ingest")
    started, n = time.perf_counter(), 0
    for path in files:
        table = pq.read_table(path)
        n += table.num_rows
        put(filter_texts(config.text, identify, table), candidate_schema("text"))
    rates["text"] = n / (time.perf_counter() - started)

    built = time.perf_counter()
    matcher = shared_matcher(str(queries), file_digest(str(queries)))
    started, n = time.perf_counter(), 0
    for path in build.stage_files("text"):
        table = pq.read_table(path)
        n += table.num_rows
        put(match_table(matcher, table), candidate_schema("match"))
    done = time.perf_counter()
    # A plain loop cannot match without the automaton: its build is part of the core's
    # cost (once here; the stage builds it in each worker process). Both are reported.
    rates["match"] = n / (done - built)
    rates["match_without_automaton_build"] = n / (done - started)

    files = build.stage_files("match")
    started, n = time.perf_counter(), 0
    counts: dict[int, int] = {}
    for path in files:
        table = pq.read_table(path, columns=["query_ids"])
        n += table.num_rows
        part = query_counts(table)
        for q, c in zip(part.column("query_id").to_pylist(), part.column("count").to_pylist()):
            counts[q] = counts.get(q, 0) + c
    for path in files:
        kept = balance_table(
            config.balance.max_per_query, config.balance.seed, counts, pq.read_table(path)
        )
        put(kept, candidate_schema("balance"))
    rates["balance"] = n / (time.perf_counter() - started)
    if written is not None:
        shutil.rmtree(written, ignore_errors=True)
    return rates


def plain_core_rates_in_children(
    out: Path, queries: Path, copies: int, write: bool = False
) -> dict[str, float]:
    """:func:`plain_core_rates` in ``copies`` fresh processes at once (mean of their rates):
    each builds its own automaton, as the first plain loop does."""
    command = [sys.executable, str(Path(__file__).resolve()), "plain", str(out), str(queries)]
    if write:
        command.append("write")
    env = child_env()
    children = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(copies)
    ]
    rates = [last_json(p.communicate()[0]) for p in children]
    if any(p.returncode for p in children):
        raise RuntimeError("a plain core process failed")
    return {name: sum(r[name] for r in rates) / copies for name in rates[0]}


def plain_core_rates_both_busy(out: Path, queries: Path) -> dict[str, float]:
    """The plain cores' records/s when both cores of the machine run one at once (two
    processes over the same files, mean of the two): what a core gives while the other
    works too. On a shared VM the cores share caches and memory bandwidth, so this, not
    the plain core alone, bounds what any parallel build can reach per core."""
    return plain_core_rates_in_children(out, queries, copies=2)


def main() -> None:
    root = Path(tempfile.gettempdir()) / "openwit-bench-scale"
    root.mkdir(exist_ok=True)
    words = vocabulary()
    queries = root / "queries.parquet"
    if not queries.exists():
        write_queries(queries, words)
    times: dict[str, list[tuple[int, float]]] = {name: [] for name in STAGES}
    first_peaks: dict[str, float] = {}
    for size in SIZES:
        pool = root / f"pool-{size}"
        write_pool(pool, size, words)
        out = root / f"build-{size}"
        subprocess.run(["rm", "-rf", str(out)], check=True)
        result = run_build(root, pool, queries, out, one_core=False)
        total_in = result["stages"]["ingest"]["in"]
        for name, stage in result["stages"].items():
            rate = stage["in"] / stage["seconds"]
            cores = stage["cpu"] / stage["seconds"] if stage["seconds"] else 0.0
            per_core = stage["in"] / stage["cpu"] if stage["cpu"] else 0.0
            times[name].append((size, stage["seconds"]))
            emit(
                f"scale_{name}_{size}_records_per_s",
                rate,
                "records/s",
                "records/s per core used",
                per_core,
                cores_used=round(cores, 2),
            )
        # Each peak against the same process's at the smallest size. Workers are matched by
        # rank: their roles keep their order at every size (ingest-and-text workers, then
        # match-and-balance workers, then the zygote, which builds the automaton).
        peaks = {"launcher": result["launcher_rss"] / 2**20}
        for index, rss in enumerate(sorted(result["worker_rss"])):
            peaks[f"worker{index}"] = rss / 2**20
        first_peaks = first_peaks or peaks
        for role, mib in peaks.items():
            emit(
                f"scale_{size}_{role}_peak_rss",
                mib,
                "MiB",
                f"the same process's peak at {SIZES[0]:,} candidates",
                first_peaks.get(role, 0.0),
                records=total_in,
            )
        if size == 1_000_000 or (size == SIZES[-1] and 1_000_000 not in SIZES):
            one_core_out = root / f"one-core-{size}"
            subprocess.run(["rm", "-rf", str(one_core_out)], check=True)
            single = run_build(root, pool, queries, one_core_out, one_core=True)
            emit(
                f"scale_{size}_two_cores_vs_one",
                single["wall"] / result["wall"],
                "x",
                "one core (taskset, in-process)",
                1.0,
                wall_two_cores=round(result["wall"], 2),
                wall_one_core=round(single["wall"], 2),
            )
            cores = plain_core_rates(out, queries)
            busy = plain_core_rates_both_busy(out, queries)
            with_writes = plain_core_rates_in_children(out, queries, copies=1, write=True)
            for name, core_rate in cores.items():
                stage = result["stages"][name.split("_without_")[0]]
                per_core = stage["in"] / stage["cpu"] if stage["cpu"] else 0.0
                emit(
                    f"scale_{name}_per_core_vs_plain_core",
                    per_core,
                    "records/s/core",
                    "plain core, one loop",
                    core_rate,
                    plain_core_both_cores_busy=round(busy[name], 1),
                )
                emit(
                    f"scale_{name}_per_core_vs_plain_core_with_its_writes",
                    per_core,
                    "records/s/core",
                    "plain core, one loop, writing its outputs as the stage does",
                    with_writes[name],
                )
                emit(
                    f"scale_{name}_plain_core_both_cores_busy_vs_alone",
                    busy[name],
                    "records/s",
                    "plain core alone on the machine",
                    core_rate,
                )
    for name, points in times.items():
        if len(points) >= 2:
            xs = [math.log(s) for s, _ in points]
            ys = [math.log(t) for _, t in points]
            mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
            slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum(
                (x - mx) ** 2 for x in xs
            )
            emit(f"scale_{name}_time_slope", slope, "log-log", "linear", 1.0)


if __name__ == "__main__":
    if sys.argv[1:2] == ["plain"]:
        write = sys.argv[4:5] == ["write"]
        print(json.dumps(plain_core_rates(Path(sys.argv[2]), Path(sys.argv[3]), write)))
    else:
        main()
