"""openwit's local worker pool: every pipeline of a build on worker processes started once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openwit.beam import beam, new_pipeline
from openwit.workers import LocalWorkerPool, pool_size_for

FORKS = pytest.mark.skipif(sys.platform != "linux", reason="forks (Linux only)")
REPO = Path(__file__).resolve().parents[2]


def _python(script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``script`` in a fresh interpreter (one thread: it may fork its pool), from the repo."""
    env = {**os.environ, "OPENWIT_WORKER_START": "fork"}
    return subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, env=env,
        cwd=REPO, timeout=timeout,
    )  # fmt: skip


def _log_pid(_: int, path: str) -> None:
    with open(path, "a") as handle:
        handle.write(f"{os.getpid()}\n")


def test_pool_size_follows_the_options(monkeypatch):
    monkeypatch.delenv("OPENWIT_WORKERS", raising=False)
    assert pool_size_for("DirectRunner", {}) == max(0, os.cpu_count() if os.cpu_count() > 1 else 0)
    assert pool_size_for("DirectRunner", {"direct_num_workers": 3}) == 3
    assert pool_size_for("DirectRunner", {"direct_running_mode": "in_memory"}) == 0
    assert pool_size_for("DirectRunner", {"direct_running_mode": "multi_processing"}) == 0
    assert pool_size_for("FlinkRunner", {}) == 0
    monkeypatch.setenv("OPENWIT_WORKERS", "0")
    assert pool_size_for("DirectRunner", {}) == 0


def test_pipelines_run_in_the_pool_processes_which_outlive_each_pipeline(tmp_path):
    pids = tmp_path / "pids"
    with LocalWorkerPool(2) as pool:
        worker_pids = {p.pid for p in pool.processes}
        for round_ in range(2):
            with new_pipeline("DirectRunner", {}, pool) as pipeline:
                _ = (
                    pipeline
                    | f"Items {round_}" >> beam.Create(list(range(40)), reshuffle=False)
                    | beam.Reshuffle()
                    | beam.Map(_log_pid, str(pids))
                )
            assert pool.alive()
        assert {p.pid for p in pool.processes} == worker_pids  # the same processes
    seen = {int(line) for line in pids.read_text().split()}
    assert seen <= worker_pids and os.getpid() not in seen


_LAUNCHER = """
from openwit.beam import beam, new_pipeline
from openwit.workers import LocalWorkerPool
import sys, time
pool = LocalWorkerPool(int(sys.argv[1])); pool.start()
with new_pipeline("DirectRunner", {}, pool) as pipeline:
    _ = pipeline | beam.Create(list(range(8)), reshuffle=False) | beam.Reshuffle() | beam.Map(abs)
zygote = [] if pool.zygote is None else [pool.zygote.pid]  # it must leave too
print(" ".join(str(pid) for pid in [p.pid for p in pool.processes] + zygote), flush=True)
if sys.argv[2] == "close-first":  # the zygote closes the first one's pipe
    pool.zygote.stop([pool.processes[0].pid])
    print(pool.processes[0].wait(timeout=20), flush=True)
time.sleep(600)
"""


def _launcher(workers: int, then: str, start: str) -> subprocess.Popen[str]:
    env = {**os.environ, "OPENWIT_WORKER_START": start}
    return subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER, str(workers), then],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_workers_run_pipelines_and_exit_when_the_launcher_is_killed(start):
    launcher = _launcher(2, "wait", start)
    worker_pids = [int(p) for p in launcher.stdout.readline().split()]
    commands = {_command_line(pid) for pid in worker_pids}
    if start == "fork":  # a one-thread launcher's workers are forks of it: no imports again
        assert commands == {_command_line(launcher.pid)} and len(worker_pids) == 3  # + zygote
    else:
        assert all("openwit.workers" in command for command in commands)
    launcher.send_signal(signal.SIGKILL)
    launcher.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_running(p) for p in worker_pids):
        time.sleep(0.2)
    assert [p for p in worker_pids if _running(p)] == []


@FORKS
def test_a_forked_worker_leaves_when_its_own_pipe_closes_while_later_ones_run():
    # each worker the zygote forks later must not keep a copy of an earlier one's pipe open
    launcher = _launcher(3, "close-first", "fork")
    try:
        worker_pids = [int(p) for p in launcher.stdout.readline().split()]
        assert launcher.stdout.readline().strip() == "0"  # the first one exited, at once
        assert not _running(worker_pids[0]) and all(_running(p) for p in worker_pids[1:])
        assert len(worker_pids) == 4  # three workers and the zygote
    finally:
        launcher.kill()
        launcher.wait()


def test_workers_are_not_forked_from_a_process_with_threads_or_grpc(monkeypatch):
    import threading

    from openwit import worker_fork

    monkeypatch.delenv("OPENWIT_WORKER_START", raising=False)
    monkeypatch.setattr(threading, "active_count", lambda: 2)
    assert not worker_fork.can_fork()
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.setattr(worker_fork, "grpc_used", True)
    assert not worker_fork.can_fork()


def _command_line(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        return handle.read().decode()


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's exit is reaped by init)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except OSError:
        return False


def test_a_pool_spawned_early_is_the_one_the_build_takes_or_is_stopped(tmp_path):
    from openwit.workers import local_pool, spawned_early

    with spawned_early(2):
        with local_pool(2) as pool:
            taken = list(pool.processes)
            assert len(taken) == 2 and all(p.poll() is None for p in taken)
        assert all(p.poll() is not None for p in taken)  # stopped with the runner's block
        with local_pool(2) as later:  # the early pool was taken once: a new one now
            assert {p.pid for p in later.processes}.isdisjoint(p.pid for p in taken)

    import openwit.workers

    with spawned_early(2):
        unused = list(openwit.workers._early.processes)
    assert all(p.poll() is not None for p in unused)  # nobody took it: stopped, not left over
    assert openwit.workers._early is None


def test_a_rerun_of_a_complete_build_spawns_no_early_workers(tmp_path, monkeypatch):
    import json

    from openwit.config import load_build_config
    from openwit.workers import early_pool_size

    monkeypatch.setenv("OPENWIT_WORKERS", "2")
    config = load_build_config(None, {"out": str(tmp_path / "out"), "inputs": []})
    assert early_pool_size(config) == 2  # nothing built yet
    (tmp_path / "out").mkdir()
    manifest = {"complete": True, "config_hash": config.hash()}
    (tmp_path / "out" / "manifest.json").write_text(json.dumps(manifest))
    assert early_pool_size(config) == 0
    manifest["config_hash"] = "another config"
    (tmp_path / "out" / "manifest.json").write_text(json.dumps(manifest))
    assert early_pool_size(config) == 2


def test_a_bad_worker_count_spawns_no_early_pool_and_leaves_the_error_to_the_check(tmp_path):
    from openwit.config import load_build_config
    from openwit.workers import early_pool_size

    raw = {"out": str(tmp_path / "out"), "inputs": [], "beam_options": {"direct_num_workers": "x"}}
    assert early_pool_size(load_build_config(None, raw)) == 0


@FORKS
def test_a_build_on_forked_workers_writes_what_the_launcher_alone_writes(tmp_path):
    """``openwit build`` forks its pool from the launcher: the stages keep the same records,
    in the same order, as the same build run in the launcher alone (OPENWIT_WORKERS=0)."""
    import json
    import random

    import pyarrow as pa
    import pyarrow.parquet as pq

    from openwit.builddir import BuildDir
    from openwit.schemas import QUERY_SCHEMA

    words = ["dog", "cat", "red", "boat", "river", "old", "house", "tree", "sky", "car"]
    rng = random.Random(3)
    lines = [
        json.dumps(
            {
                "url": f"https://img.example/{i}.jpg",
                "caption": " ".join(rng.choice(words) for _ in range(rng.randint(1, 9))),
            }
        )
        for i in range(3000)
    ]
    (tmp_path / "pool.jsonl").write_text("\n".join(lines) + "\n")
    queries = [{"query": q, "source": "unigram", "count": 1, "score": 1.0} for q in words]
    pq.write_table(pa.Table.from_pylist(queries, schema=QUERY_SCHEMA), tmp_path / "q.parquet")
    config = {
        "queries": str(tmp_path / "q.parquet"),
        "inputs": [{"path": str(tmp_path / "pool.jsonl")}],
        "text": {"min_words": 1, "min_lang_score": 0.0},
        "balance": {"max_per_query": 500},
    }
    (tmp_path / "build.yaml").write_text(json.dumps(config))
    outputs = {}
    for workers in ("2", "0"):
        out = tmp_path / f"out-{workers}"
        env = {**os.environ, "OPENWIT_WORKERS": workers, "OPENWIT_WORKER_START": "fork"}
        command = [sys.executable, "-m", "openwit.cli", "build", "--config"]
        command += [str(tmp_path / "build.yaml"), "--out", str(out), "--until", "balance"]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
        assert "goaway" not in done.stderr.lower()  # gRPC's lines as stopped workers leave
        build = BuildDir(out)
        stages = ("ingest", "text", "match", "balance")
        files = {stage: build.stage_files(stage) for stage in stages}
        records = {stage: build.read_table(urls).to_pylist() for stage, urls in files.items()}
        funnel = json.loads((out / "funnel.json").read_text())
        outputs[workers] = (records, funnel, len(files["text"]))
    records, funnel, text_units = outputs["2"]
    assert text_units > 1  # more than one unit: the pool's workers ran them
    # the pool cuts a small input finer (a unit per core), so the files differ, not the records
    assert (records, funnel) == outputs["0"][:2]
    assert funnel["balance"]["out"] > 0


@FORKS
def test_forking_leaves_a_runner_s_frozen_objects_frozen():
    script = (
        "import gc\n"
        "from openwit import worker_fork\n"
        "def fork_one():\n"
        "    worker = worker_fork.fork_workers(1)[0]\n"
        "    worker.stdin.close()\n"
        "    assert worker.wait(timeout=20) == 0\n"
        "fork_one()\n"
        "print(gc.get_freeze_count())\n"  # nothing was frozen: nothing stays frozen
        "gc.freeze(); frozen = gc.get_freeze_count()\n"  # as the runner does for a build
        "fork_one()\n"
        "print(gc.get_freeze_count() > frozen // 2 > 0)\n"  # (a few may have been freed)
    )
    done = _python(script)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["0", "True"]


_REFRESHING_LAUNCHER = """
from openwit.beam import beam, new_pipeline
from openwit.workers import LocalWorkerPool
from tests.foundation import worker_state
import sys
pool = LocalWorkerPool(2); pool.spawn()
pool.prepare("tests.foundation.worker_state:prepare", ["automaton"], {})
for round_ in ("before", "after"):
    if round_ == "after":
        old = list(pool.processes)
        pool.refresh()
    if not pool.connected:
        pool.connect()
    with new_pipeline("DirectRunner", {}, pool) as pipeline:
        _ = (
            pipeline
            | round_ >> beam.Create(list(range(20)), reshuffle=False)
            | beam.Reshuffle()
            | beam.Map(worker_state.log_state, sys.argv[1] + "." + round_)
        )
print(pool.zygote.pid, " ".join(str(p.pid) for p in old), flush=True)
print(" ".join(str(p.pid) for p in pool.processes), flush=True)
print(all(p.wait(timeout=20) == 0 for p in old), flush=True)
pool.stop()
"""


@FORKS
def test_refreshed_workers_start_with_what_the_zygote_prepared(tmp_path):
    log = tmp_path / "states"
    done = _python(_REFRESHING_LAUNCHER, str(log))
    assert done.returncode == 0, done.stderr[-2000:]
    first, second, old_left = done.stdout.splitlines()
    zygote, *old = (int(p) for p in first.split())
    new = [int(p) for p in second.split()]

    def states(round_: str) -> set[tuple[int, str]]:
        lines = (tmp_path / f"states.{round_}").read_text().split("\n")
        return {(int(pid), state) for pid, state in (line.split() for line in lines if line)}

    # forked before anything was prepared: the state is built where it is needed
    assert {state for _, state in states("before")} == {"None"}
    # forked after: every worker has it, made once, in the zygote
    assert {state for _, state in states("after")} == {str(zygote)}
    assert {pid for pid, _ in states("before")} <= set(old)
    assert {pid for pid, _ in states("after")} <= set(new) and not set(new) & set(old)
    assert old_left == "True"  # the old workers left


@FORKS
def test_a_refresh_keeps_the_workers_while_the_zygote_is_still_preparing():
    script = (
        "from openwit import worker_zygote\n"
        "from openwit.workers import LocalWorkerPool\n"
        "worker_zygote.PREPARE_WAIT_S = 0.2\n"
        "pool = LocalWorkerPool(2); pool.spawn()\n"
        "before = [p.pid for p in pool.processes]\n"
        "pool.prepare('tests.foundation.worker_state:slow_prepare', [30], {})\n"
        "pool.refresh()\n"
        "print([p.pid for p in pool.processes] == before, pool.alive())\n"
        "pool.stop()\n"
    )
    # the prepare sleeps 30 s: stopping the pool must not wait for it (nor hang)
    done = _python(script, timeout=25)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "True"]


_LOSES_A_WORKER = """
import os, signal, sys, time
from openwit.beam import beam, new_pipeline
from openwit.errors import WorkerLost
from openwit.workers import LocalWorkerPool

def kill(item, victim):
    if item == 5:  # the worker itself, or the zygote it was forked from
        os.kill(os.getpid() if victim == "worker" else os.getppid(), signal.SIGKILL)
    time.sleep(0.05)
    return item

pool = LocalWorkerPool(2); pool.start()
victim = sys.argv[1]
if victim == "between":  # the zygote, and so the workers, end between two pipelines
    os.kill(pool.zygote.process.pid, signal.SIGKILL)
    while any(p.poll() is None for p in pool.processes):
        time.sleep(0.05)
started = time.monotonic()
try:
    with new_pipeline("DirectRunner", {}, pool) as pipeline:
        _ = (
            pipeline | beam.Create(list(range(40)), reshuffle=False) | beam.Reshuffle()
            | beam.Map(kill, victim)
        )
except WorkerLost as exc:
    print(f"lost after {time.monotonic() - started:.1f} s: {exc}", flush=True)
finally:
    pool.stop()
"""


@FORKS
@pytest.mark.parametrize(
    "start,victim",
    [("fork", "worker"), ("spawn", "worker"), ("fork", "zygote"), ("fork", "between")],
)
def test_a_worker_that_dies_fails_the_pipeline_with_one_line_instead_of_hanging(start, victim):
    """Beam's runner waits for a bundle without a timeout: a worker killed for memory hung
    the build for good. The pool's watch fails the pipeline with WorkerLost."""
    env = {**os.environ, "OPENWIT_WORKER_START": start}
    done = subprocess.run(
        [sys.executable, "-c", _LOSES_A_WORKER, victim],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("lost after "), (done.stdout, done.stderr[-3000:])
    expected = "a worker" if victim == "worker" else "the process the workers are forked from"
    assert expected in done.stdout and "--resume" in done.stdout
    # Beam's threads report each closed connection with a traceback; the loss is told once.
    assert "Traceback" not in done.stderr and "RpcError" not in done.stderr, done.stderr[-3000:]


_BUILD_LOSES_A_WORKER = """
import json, sys
from openwit.config import load_build_config
from openwit.errors import WorkerLost
from openwit.logs import configure_logging
from openwit.runner import BuildRunner
from tests.foundation.toy_stages import KillsItsWorker, ToyFilter, ToyIngest

configure_logging()
config = load_build_config(sys.argv[1], {"out": sys.argv[2]})
stage = ToyFilter() if sys.argv[3] == "none" else KillsItsWorker(
    None if sys.argv[3] == "always" else sys.argv[3]
)
try:
    outcome = BuildRunner(config, [ToyIngest(), stage]).run()
    print(json.dumps(outcome.funnel.to_json()))
except WorkerLost as exc:
    print(f"failed: {exc}")
"""


def _build_losing_workers(
    tmp_path: Path, out: str, kills: str, start: str
) -> subprocess.CompletedProcess:
    from tests.foundation.test_runner import write_config

    env = {**os.environ, "OPENWIT_WORKERS": "2", "OPENWIT_WORKER_START": start}
    return subprocess.run(
        [sys.executable, "-c", _BUILD_LOSES_A_WORKER, str(write_config(tmp_path)), out, kills],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=180,
    )  # fmt: skip


@FORKS
@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_a_stage_that_loses_a_worker_resumes_on_new_workers_with_nothing_lost(tmp_path, start):
    """A worker killed for memory once does not stop a long build: the stage goes on on
    new workers, keeping its finished units, and gives the same records as a build that
    lost none. A second loss in the same stage fails the build with the loss's line."""
    import json

    whole = _build_losing_workers(tmp_path, str(tmp_path / "whole"), "none", start)
    killed = str(tmp_path / "killed")
    resumed = _build_losing_workers(tmp_path, str(tmp_path / "out"), killed, start)
    assert (tmp_path / "killed").exists()  # the second unit did kill its worker
    assert resumed.stdout.strip() == whole.stdout.strip(), (resumed.stdout, resumed.stderr)
    assert "a worker of openwit's local pool (pid " in resumed.stderr
    assert "in stage toy_filter; it resumes on new workers" in resumed.stderr
    assert "Traceback" not in resumed.stderr and "RpcError" not in resumed.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["stages"]["toy_filter"]["stats"]["units_resumed"] >= 1

    failed = _build_losing_workers(tmp_path, str(tmp_path / "again"), "always", start)
    assert failed.returncode == 0, failed.stderr[-3000:]
    assert failed.stdout.startswith("failed: a worker") and "--resume" in failed.stdout
    assert failed.stderr.count("resumes on new workers") == 1
    assert "Traceback" not in failed.stderr and "RpcError" not in failed.stderr, failed.stderr
