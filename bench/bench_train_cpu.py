"""openwit train vs open_clip_train on the CPU: same tiny model, shards, batch, steps.

Both trainers run as subprocesses on the same webdataset shards (the demo world: 1,024
photo-like JPEGs, 8 shards), ``openwit-tiny``, batch 64, one data worker, fp32, twice each,
alternating (ABAB) so a noisy neighbour on the machine hurts both alike. open_clip_train is
started through ``openwit.train.open_clip_launcher`` (its ``main`` in a process where
openwit's model configs are registered).

Figures, steady state (the first log intervals, with start-up, are left out):
- ``train_cpu_samples_per_s``: openwit / open_clip_train (goal >= 1.0)
- ``train_cpu_data_time_share``: data_time / batch_time, openwit vs open_clip_train
  (goal < 10%)
- ``train_cpu_wall``: whole command, start-up included (ratio < 1: openwit is faster)
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import emit, guarded_env, install_guard

install_guard()

MODEL = "openwit-tiny"
BATCH = 64
STEPS = 80
LOG_EVERY = 5
SKIP_INTERVALS = 3  # start-up, first batches, shuffle-buffer fill
WORKERS = 1
LR, WARMUP = 1e-3, 10

OPEN_CLIP_LINE = re.compile(r"Data \(t\): ([\d.]+) Batch \(t\): ([\d.]+),")


def openwit_run(shards: Path, out: Path) -> tuple[float, float, float]:
    command = [
        sys.executable, "-m", "openwit.cli", "train",
        "--train-data", str(shards), "--model", MODEL, "--out", str(out),
        "--batch-size", str(BATCH), "--steps", str(STEPS), "--lr", str(LR),
        "--warmup", str(WARMUP), "--workers", str(WORKERS), "--log-every", str(LOG_EVERY),
        "--save-every", str(STEPS), "--precision", "fp32", "--device", "cpu",
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=guarded_env())
    wall = time.perf_counter() - started
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steady = records[SKIP_INTERVALS:]
    batch = statistics.fmean(r["batch_time"] for r in steady)
    data = statistics.fmean(r["data_time"] for r in steady)
    return BATCH / batch, data / batch, wall


def open_clip_train_run(shards: Path, logs: Path) -> tuple[float, float, float]:
    n_shards = len(list(shards.glob("*.tar")))
    pattern = f"{shards}/{{00000..{n_shards - 1:05d}}}.tar"
    command = [
        sys.executable, "-m", "openwit.train.open_clip_launcher",
        "--train-data", pattern, "--dataset-type", "webdataset",
        "--train-num-samples", str(STEPS * BATCH), "--epochs", "1",
        "--model", MODEL, "--batch-size", str(BATCH), "--workers", str(WORKERS),
        "--lr", str(LR), "--warmup", str(WARMUP), "--wd", "0.2", "--precision", "fp32",
        "--device", "cpu", "--log-every-n-steps", str(LOG_EVERY), "--report-to", "",
        "--logs", str(logs), "--name", "run", "--save-frequency", "0", "--seed", "0",
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=guarded_env())
    wall = time.perf_counter() - started
    log = (logs / "run" / "out.log").read_text()
    intervals = [(float(d), float(b)) for d, b in OPEN_CLIP_LINE.findall(log)]
    steady = intervals[SKIP_INTERVALS + 1 :]  # its first line is step 0 alone
    batch = statistics.fmean(b for _, b in steady)
    data = statistics.fmean(d for d, _ in steady)
    return BATCH / batch, data / batch, wall


def main() -> None:
    from openwit.demo.shards import write_demo_shards

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        root = Path(tmp)
        shards = write_demo_shards(root / "data", 1024, per_shard=128, seed=0)
        ours, theirs = [], []
        for round_ in range(2):
            ours.append(openwit_run(shards, root / f"openwit-{round_}"))
            theirs.append(open_clip_train_run(shards, root / f"open_clip-{round_}"))
        o_sps, o_share, o_wall = (statistics.fmean(x) for x in zip(*ours))
        t_sps, t_share, t_wall = (statistics.fmean(x) for x in zip(*theirs))
        setting = {"model": MODEL, "batch": BATCH, "steps": STEPS, "workers": WORKERS}
        emit(
            "train_cpu_samples_per_s",
            o_sps,
            "samples/s",
            "open_clip_train (python -m open_clip_train.main), same shards",
            t_sps,
            **setting,
        )
        emit(
            "train_cpu_data_time_share",
            o_share,
            "fraction",
            "open_clip_train's data_time / batch_time",
            t_share,
            **setting,
        )
        emit("train_cpu_wall", o_wall, "s", "open_clip_train, whole command", t_wall, **setting)


if __name__ == "__main__":
    main()
