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
