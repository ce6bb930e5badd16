"""openwit train vs open_clip_train on one GPU: ViT-B-32, bf16, the same real shards.

Runs only where a CUDA GPU is present (elsewhere it says so on stderr and reports nothing).
In one call it writes webdataset shards of 256 px JPEGs (the demo world's photo-like
renderer, 16 processes), then trains ViT-B-32 on them with

- open_clip_train (``python -m open_clip_train.main`` through openwit's launcher),
  ``--precision amp_bf16``, and again with ``--torchcompile``;
- openwit train, ``--precision bf16`` with its GPU defaults (JPEG decode + augmentation on
  the GPU, torch.compile), and again with ``--decode workers`` (PIL in the data workers);

all at the same batch, steps, workers and learning-rate schedule, and reports steady-state
samples/s (first log intervals left out), the data-time share, and openwit's MFU
(44.2 GFLOP per sample per step for ViT-B-32, the card's bf16 peak). One command, see
docs/train.md ("Benchmarks"). Settings: ``BENCH_GPU_BATCH`` (1024), ``BENCH_GPU_STEPS``
(120), ``BENCH_GPU_SAMPLES`` (60000), ``BENCH_GPU_WORKERS`` (CPU count - 1).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

from common import emit, guarded_env, install_guard

install_guard()

MODEL = os.environ.get("BENCH_GPU_MODEL", "ViT-B-32")
DRY_RUN = os.environ.get("BENCH_GPU_DRY_RUN") == "1"  # the whole flow on a CPU (smoke test)
BATCH = int(os.environ.get("BENCH_GPU_BATCH", 1024))
STEPS = int(os.environ.get("BENCH_GPU_STEPS", 120))
SAMPLES = int(os.environ.get("BENCH_GPU_SAMPLES", 60_000))
WORKERS = int(os.environ.get("BENCH_GPU_WORKERS", max(1, (os.cpu_count() or 2) - 1)))
PER_SHARD = 1000
LOG_EVERY = 10
SKIP_INTERVALS = 3  # start-up, torch.compile, shuffle-buffer fill
LR, WARMUP = 5e-4, 20
SIZES = ((256, 256), (256, 192), (192, 256), (256, 170), (256, 144))
OPEN_CLIP_LINE = re.compile(r"Data \(t\): ([\d.]+) Batch \(t\): ([\d.]+),")


def _write_shard(args: tuple[Path, int]) -> int:
    """One shard of PER_SHARD JPEGs (256 px on the long side) with captions."""
    import webdataset as wds

    from openwit.demo.world import BACKGROUNDS, CAPTION_TEMPLATES, COLOURS, SHAPES, render

    folder, index = args
    rng = random.Random(index)
    with wds.TarWriter(str(folder / f"{index:05d}.tar")) as writer:
        for offset in range(PER_SHARD):
            colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
            background = rng.choice(list(BACKGROUNDS))
            caption = rng.choice(CAPTION_TEMPLATES).format(
                colour=colour, shape=shape, background=background
            )
            key = f"{index * PER_SHARD + offset:09d}"
            image = render(colour, shape, background, rng, rng.choice(SIZES))
            writer.write({"__key__": key, "jpg": image, "txt": caption, "json": "{}"})
    return PER_SHARD


def write_shards(folder: Path) -> int:
    folder.mkdir(parents=True)
    n_shards = max(WORKERS + 1, SAMPLES // PER_SHARD)
    with Pool(os.cpu_count()) as pool:
        sizes = pool.map(_write_shard, [(folder, i) for i in range(n_shards)])
    (folder / "sizes.json").write_text(json.dumps({f"{i:05d}.tar": n for i, n in enumerate(sizes)}))
    return n_shards


def _run(command: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=guarded_env())
    if result.returncode != 0:
        raise RuntimeError(f"{command[:4]} failed:\n{result.stderr[-4000:]}")
    return time.perf_counter() - started


def openwit_run(shards: Path, out: Path, *extra: str) -> dict[str, float]:
    command = [
        sys.executable, "-m", "openwit.cli", "train",
        "--train-data", str(shards), "--model", MODEL, "--out", str(out),
        "--batch-size", str(BATCH), "--steps", str(STEPS), "--lr", str(LR),
        "--warmup", str(WARMUP), "--workers", str(WORKERS), "--log-every", str(LOG_EVERY),
        "--save-every", str(STEPS), "--precision", "bf16", *extra,
    ]  # fmt: skip
    wall = _run(command)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steady = records[SKIP_INTERVALS:]
    batch = statistics.fmean(r["batch_time"] for r in steady)
    data = statistics.fmean(r["data_time"] for r in steady)
    mfu = statistics.fmean(r["mfu"] for r in steady) if "mfu" in steady[0] else None
    return {"samples_per_s": BATCH / batch, "data_share": data / batch, "mfu": mfu, "wall": wall}


def open_clip_train_run(shards: Path, n_shards: int, logs: Path, *extra: str) -> dict[str, float]:
    command = [
        sys.executable, "-m", "openwit.train.open_clip_launcher",
        "--train-data", f"{shards}/{{00000..{n_shards - 1:05d}}}.tar",
        "--dataset-type", "webdataset", "--train-num-samples", str(STEPS * BATCH),
        "--epochs", "1", "--model", MODEL, "--batch-size", str(BATCH),
        "--workers", str(WORKERS), "--lr", str(LR), "--warmup", str(WARMUP), "--wd", "0.2",
        "--precision", "amp_bf16", "--log-every-n-steps", str(LOG_EVERY), "--report-to", "",
        "--logs", str(logs), "--name", "run", "--save-frequency", "0", "--seed", "0", *extra,
    ]  # fmt: skip
    wall = _run(command)
    log = (logs / "run" / "out.log").read_text()
    intervals = [(float(d), float(b)) for d, b in OPEN_CLIP_LINE.findall(log)]
    steady = intervals[SKIP_INTERVALS + 1 :]  # its first line is step 0 alone
    batch = statistics.fmean(b for _, b in steady)
    data = statistics.fmean(d for d, _ in steady)
    return {"samples_per_s": BATCH / batch, "data_share": data / batch, "wall": wall}


def main() -> int:
    if shutil.which("nvidia-smi") is None and not DRY_RUN:
        print("bench_train_gpu: no GPU here, nothing measured", file=sys.stderr)
        return 0
    import torch

    if not torch.cuda.is_available() and not DRY_RUN:
        print("bench_train_gpu: CUDA not available, nothing measured", file=sys.stderr)
        return 0
    from openwit.train.metrics import peak_flops, train_flops_per_sample
    from openwit.train.models import register_model_configs

    register_model_configs()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device_name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu (dry run)"
    peak = peak_flops(device, "bf16")
    flops = train_flops_per_sample(MODEL)
    setting = {
        "device": device_name,
        "model": MODEL,
        "batch": BATCH,
        "steps": STEPS,
        "workers": WORKERS,
        "torch": torch.__version__,
    }
    with tempfile.TemporaryDirectory(prefix="bench-train-gpu-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        n_shards = write_shards(root / "shards")
        print(f"wrote {n_shards} shards in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        theirs = open_clip_train_run(root / "shards", n_shards, root / "oc")
        theirs_compiled = open_clip_train_run(
            root / "shards", n_shards, root / "oc-compiled", "--torchcompile"
        )
        ours = openwit_run(root / "shards", root / "ow")
        ours_workers = openwit_run(root / "shards", root / "ow-workers", "--decode", "workers")

    def their_mfu(run: dict[str, float]) -> float:
        return run["samples_per_s"] * flops / peak if peak else 0.0

    baseline = "open_clip_train amp_bf16, same shards"
    emit("train_gpu_samples_per_s", ours["samples_per_s"], "samples/s", baseline,
         theirs["samples_per_s"], **setting)  # fmt: skip
    emit("train_gpu_samples_per_s_vs_compiled", ours["samples_per_s"], "samples/s",
         "open_clip_train amp_bf16 --torchcompile, same shards",
         theirs_compiled["samples_per_s"], **setting)  # fmt: skip
    emit("train_gpu_decode_workers_samples_per_s", ours_workers["samples_per_s"], "samples/s",
         baseline, theirs["samples_per_s"], **setting)  # fmt: skip
    emit("train_gpu_mfu", ours["mfu"] or 0.0, "fraction", "open_clip_train amp_bf16 MFU",
         their_mfu(theirs), flops_per_sample=flops, peak_flops=peak, **setting)  # fmt: skip
    emit("train_gpu_data_time_share", ours["data_share"], "fraction",
         "open_clip_train's data_time / batch_time", theirs["data_share"], **setting)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
