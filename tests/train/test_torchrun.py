"""``openwit train`` under torchrun: two processes on CPU (gloo), one run directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.loopback import free_port


@pytest.mark.slow
def test_two_processes_under_torchrun_train_one_run(demo_shards, tmp_path):
    run = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc-per-node=2",
        "--master-addr=127.0.0.1",
        f"--master-port={free_port()}",
        "-m",
        "openwit.cli",
        "train",
        "--train-data",
        str(demo_shards),
        "--model",
        "openwit-tiny",
        "--out",
        str(run),
        "--batch-size",
        "8",
        "--steps",
        "12",
        "--save-every",
        "6",
        "--log-every",
        "3",
        "--workers",
        "1",
        "--device",
        "cpu",
    ]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((run / "config.json").read_text())
    assert config["resolved"]["world_size"] == 2
    assert config["resolved"]["global_batch"] == 16
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [3, 6, 9, 12]  # rank 0 writes alone
    state = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert state["step"] == 12
    delivered = state["data"]["delivered"]
    assert len(delivered) == 2 and all(sum(rank) == 12 * 8 for rank in delivered)
    assert result.stdout.count("openwit train") == 1  # one summary table, from rank 0
