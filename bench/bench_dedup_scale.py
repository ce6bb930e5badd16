"""The dedup stage's cost curve: synthetic stored-image metadata at 100k and 1M (and 10M)
records.

The dedup part of the scale benchmarks (``bench_scale`` covers the candidate stages and may
call :func:`dedup_scale`). Synthetic stored-image metadata (``dedup_data``) at each size of
``OPENWIT_BENCH_SCALE`` (comma-separated; default ``100000,1000000``; ``make bench`` adds
10M with ``OPENWIT_BENCH_SCALE_FULL=1``) through the dedup stage on openwit's local worker
pool, each size against the plain core on the same input (``dedup_scale.measure``). Per
size: records/s per core (cores used: the pool's workers), peak RSS of the launcher and of
the largest worker; over the sizes: records/s per core beyond start-up (the records
between the smallest and the largest size) and the slope of time against size on a log-log
fit (1.0: linear)."""

from __future__ import annotations

import math
import os

from common import emit, install_guard

install_guard()

SIZES = [int(s) for s in os.environ.get("OPENWIT_BENCH_SCALE", "100000,1000000").split(",")]
if os.environ.get("OPENWIT_BENCH_SCALE_FULL") == "1" and 10_000_000 not in SIZES:
    # ~2.5 minutes more; the plain core holds all 10M records' hashes (~5 GB)
    SIZES.append(10_000_000)


def slope(sizes: list[int], seconds: list[float]) -> float:
    """Least-squares slope of log(seconds) against log(size)."""
    xs, ys = [math.log(s) for s in sizes], [math.log(t) for t in seconds]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def dedup_scale(sizes: list[int]) -> None:
    """Print the figures of the dedup stage at ``sizes`` records (JSON lines)."""
    from dedup_scale import measure

    stage_seconds, plain_seconds = [], []
    for n in sizes:
        result = measure(n)
        stage, plain = result["stage"], result["plain"]
        cores = stage["cores"]
        stage_seconds.append(stage["seconds"])
        plain_seconds.append(plain["seconds"])
        extra = {"records": n, "cores": cores, "machine": "provisional: shared 2-core machine"}
        emit(
            f"scale_dedup_records_per_core_{n}",
            n / stage["seconds"] / cores,
            "records/s",
            "plain core, one process",
            n / plain["seconds"],
            **extra,
            shuffle_bytes_per_record=stage["links"]["shuffle_bytes_per_record"],
        )
        emit(
            f"scale_dedup_peak_rss_launcher_{n}",
            stage["peak_rss_launcher_mb"],
            "MB",
            "plain core, one process",
            plain["peak_rss_mb"],
            **extra,
            peak_rss_worker_mb=stage["peak_rss_worker_mb"],
        )
    if len(sizes) > 1:
        emit_beyond_startup(sizes, stage_seconds, plain_seconds, cores)
        emit(
            "scale_dedup_time_slope",
            slope(sizes, stage_seconds),
            "log-log slope",
            "plain core, one process",
            slope(sizes, plain_seconds),
            sizes=sizes,
            stage_seconds=stage_seconds,
            plain_seconds=plain_seconds,
        )


def emit_beyond_startup(
    sizes: list[int], stage_seconds: list[float], plain_seconds: list[float], cores: int
) -> None:
    """Records/s per core beyond start-up: the cost of the records between the smallest and
    the largest size, which leaves out what a run pays whatever its size (the launcher's
    planning and each of the pass's ~25 fused steps' round trip on the stage's side; reading
    footers on both). A build much larger than these sizes sees this rate."""
    extra_records = sizes[-1] - sizes[0]
    stage_s = stage_seconds[-1] - stage_seconds[0]
    plain_s = plain_seconds[-1] - plain_seconds[0]
    emit(
        "scale_dedup_records_per_core_beyond_startup",
        extra_records / stage_s / cores,
        "records/s",
        "plain core, one process, the same sizes",
        extra_records / plain_s,
        sizes=[sizes[0], sizes[-1]],
        cores=cores,
        stage_fixed_s=round(stage_seconds[0] - sizes[0] * stage_s / extra_records, 3),
        plain_fixed_s=round(plain_seconds[0] - sizes[0] * plain_s / extra_records, 3),
    )


if __name__ == "__main__":
    dedup_scale(SIZES)
