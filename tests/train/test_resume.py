"""Kill a training run after a checkpoint; ``--resume auto`` continues it as if never stopped."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from openwit.train.optim import learning_rate

STEPS, BATCH, LR, WARMUP = 150, 8, 1e-3, 10


def _command(shards: Path, run: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "openwit.cli",
        "train",
        "--train-data",
        str(shards),
        "--model",
        "openwit-tiny",
        "--out",
        str(run),
        "--batch-size",
        str(BATCH),
        "--steps",
        str(STEPS),
        "--lr",
        str(LR),
        "--warmup",
        str(WARMUP),
        "--save-every",
        "10",
        "--log-every",
        "5",
        "--workers",
        "1",
        *extra,
    ]


def _kill_after_first_checkpoint(command: list[str], latest: Path) -> int:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not latest.exists():
        if process.poll() is not None:
            raise AssertionError(f"training ended before a checkpoint: {process.stderr.read()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("no checkpoint within 300 s")
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    return torch.load(latest, weights_only=True)["step"]


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_checkpoint_on_the_same_schedule(demo_shards, tmp_path):
    run = tmp_path / "run"
    latest = run / "checkpoints" / "latest.pt"
    saved_step = _kill_after_first_checkpoint(_command(demo_shards, run), latest)
    assert 10 <= saved_step < STEPS and saved_step % 10 == 0

    resumed = subprocess.run(
        _command(demo_shards, run, "--resume", "auto"), capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"at step {saved_step}" in resumed.stderr

    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records]
    assert steps == list(range(5, STEPS + 1, 5))  # each step once: the killed run's extra lines go
    for record in records:
        expected = learning_rate(record["step"] - 1, LR, WARMUP, STEPS)
        assert record["lr"] == pytest.approx(expected, rel=1e-9)

    final = torch.load(latest, weights_only=True)
    assert final["step"] == STEPS
    adam_steps = {float(s["step"]) for s in final["optimizer"]["state"].values()}
    assert adam_steps == {float(STEPS)}  # the optimizer state went on, not restarted
    delivered = final["data"]["delivered"]
    assert sum(map(sum, delivered)) == STEPS * BATCH  # the data position went on too
