"""What every benchmark shares: the JSON line it prints and a timer.

Each figure is one JSON line: ``{"name", "value", "unit", "baseline", "baseline_value",
"ratio"}`` with ``ratio = value / baseline_value``, both measured in the same run. For
throughputs (``.../s``) a ratio above 1 means openwit is faster; for times (``s``) a ratio
below 1 does.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
NETGUARD = REPO / "tests" / "netguard"


def emit(
    name: str,
    value: float,
    unit: str,
    baseline: str,
    baseline_value: float,
    **extra: Any,
) -> dict[str, Any]:
    """Print one figure as a JSON line and return it."""
    record = {
        "name": name,
        "value": round(value, 6),
        "unit": unit,
        "baseline": baseline,
        "baseline_value": round(baseline_value, 6),
        "ratio": round(value / baseline_value, 4) if baseline_value else None,
        **extra,
    }
    print(json.dumps(record), flush=True)
    return record


def median_time(fn: Callable[[], Any], repeats: int = 5) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs, in seconds."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def guarded_env() -> dict[str, str]:
    """Environment for subprocesses: the loopback-only network guard of the tests."""
    path = os.pathsep.join(filter(None, [str(NETGUARD), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "NO_ALBUMENTATIONS_UPDATE": "1"}


def child_env() -> dict[str, str]:
    """:func:`guarded_env` for a benchmark that runs its own file again as a child: bench/
    and the repository on its PYTHONPATH too."""
    env = guarded_env()
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "bench"), str(REPO), env["PYTHONPATH"]])
    return env


def last_json(stdout: str) -> Any:
    """The JSON a child printed last (its figures; anything before is its own output)."""
    return json.loads(stdout.strip().splitlines()[-1])


def child_json(script: str | Path, args: list[str], env: dict[str, str]) -> Any:
    """Run ``python script *args`` and return the JSON it printed last. A failed exit or a
    traceback on its stderr fails the benchmark: no benchmark's output may hold one."""
    import subprocess

    done = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, env=env
    )
    if done.returncode != 0 or "Traceback" in done.stderr:
        raise RuntimeError(f"{Path(script).name} {args[0]} failed:\n{done.stderr[-3000:]}")
    return last_json(done.stdout)


def install_guard() -> None:
    """Benchmarks never send traffic outside loopback, even through a library's default."""
    sys.path.insert(0, str(NETGUARD))
    import openwit_netguard

    openwit_netguard.install()


def img2dataset_cli(
    url_list: Path, out: Path, size: int, mode: str, quality: int
) -> tuple[float, int]:
    """The img2dataset CLI (2 processes x 16 threads, webdataset, no EXIF, no retries) over
    a Parquet list of (url, caption): its wall seconds and its successes."""
    import subprocess

    binary = Path(sys.executable).parent / "img2dataset"
    command = [
        str(binary),
        f"--url_list={url_list}",
        "--input_format=parquet",
        "--url_col=url",
        "--caption_col=caption",
        "--output_format=webdataset",
        f"--output_folder={out}",
        "--processes_count=2",
        "--thread_count=16",
        f"--image_size={size}",
        f"--resize_mode={mode}",
        "--resize_only_if_bigger=True",
        f"--encode_quality={quality}",
        "--encode_format=jpg",
        "--number_sample_per_shard=500",
        "--timeout=10",
        "--retries=0",
        "--extract_exif=False",
        "--enable_wandb=False",
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, env=guarded_env(), capture_output=True)
    seconds = time.perf_counter() - started
    successes = sum(json.loads(p.read_text())["successes"] for p in out.glob("*_stats.json"))
    return seconds, successes


def stored_sample(rng: Any, index: int, image: bytes) -> dict[str, Any]:
    """One downloaded, checked record as the shard stage reads it (random uid, hashes and
    query ids from ``rng``: a ``random.Random``)."""
    return {
        "uid": f"{rng.getrandbits(128):032x}",
        "url": f"https://images.example.com/photos/{index}.jpg",
        "text": f"a photo of something interesting, number {index}",
        "source": "pool.parquet",
        "source_offset": index,
        "lang": "en",
        "lang_score": 0.99,
        "query_ids": [rng.randrange(500_000) for _ in range(3)],
        "width": 256,
        "height": 192,
        "original_width": 1024,
        "original_height": 768,
        "sha256": f"{rng.getrandbits(256):064x}",
        "image": image,
        "phash": rng.getrandbits(64),
        "dhash": rng.getrandbits(64),
    }


def serving_at(server: Any, port: int) -> tuple[Any, str]:
    """``(server, base URL)`` once a server process accepts connections on ``port`` of
    127.0.0.1 (30 s at most)."""
    import socket

    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, f"http://127.0.0.1:{port}"
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
