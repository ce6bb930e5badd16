"""openwit's local worker pool: every pipeline of a build on worker processes started once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from openwit.beam import beam, new_pipeline
from openwit.workers import LocalWorkerPool, pool_size_for


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


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_workers_exit_when_the_launcher_is_killed():
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from openwit.workers import LocalWorkerPool; import sys, time\n"
            "pool = LocalWorkerPool(2); pool.start()\n"
            "print(' '.join(str(p.pid) for p in pool.processes), flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    worker_pids = [int(p) for p in launcher.stdout.readline().split()]
    launcher.send_signal(signal.SIGKILL)
    launcher.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_running(p) for p in worker_pids):
        time.sleep(0.2)
    assert [p for p in worker_pids if _running(p)] == []


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
