"""The build's CPU per sample: the yardstick the library reimplementations are judged by.

``bench_libs_fetch``, ``bench_libs_tar`` and ``bench_libs_hashes`` each measure what a
reimplementation saves per sample against the library it replaces; docs/decisions.md
keeps one only where that saving is a material share of this figure (5% or more).

The build is ``bench_download_e2e``'s openwit side (stand-in candidates, then the real
download, image and shard stages on the default runner, in a fresh process) on the same
loopback photos; its CPU is the process's and its workers' (``RUSAGE_CHILDREN`` around
the run; the file server is another process, not counted). The figure is the CPU per
sample beyond start-up: each repeat builds the first ``N_SMALL`` URLs and all ``N_IMAGES``,
and ``(cpu_full - cpu_small) / (kept_full - kept_small)`` is what one more sample costs
(imports and worker start-up, ~1 ms per sample at 3,000, vanish at scale). The stages
before download (text, match, balance) are left out, so the true figure is higher and the
shares computed against this one are upper bounds. Baseline: the download's resize alone
(decode, resize to 256 px, encode), one thread, per image, in the same run.
"""

from __future__ import annotations

import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from bench_download_e2e import (
    make_photos,
    openwit_config,
    photo_rows,
    run_openwit,
    serve,
    url_files,
)
from common import emit, install_guard

install_guard()

N_IMAGES = int(os.environ.get("OPENWIT_BENCH_IMAGES", "3000"))
N_SMALL = int(os.environ.get("OPENWIT_BENCH_SMALL_IMAGES", "1000"))
REPEATS = 3


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def resize_seconds(photos: list[Path]) -> float:
    from openwit.config import ImageConfig
    from openwit.pipeline.download.resize import PillowResizer

    resize = PillowResizer(ImageConfig())
    sample = [p.read_bytes() for p in photos[:300]]
    resize(sample[0])
    started = time.process_time()
    for data in sample:
        resize(data)
    return (time.process_time() - started) / len(sample)


def main() -> None:
    photos = make_photos(Path(tempfile.gettempdir()) / f"openwit-bench-photos-{N_IMAGES}", N_IMAGES)
    server, base_url = serve(photos[0].parent)
    try:
        with tempfile.TemporaryDirectory(prefix="openwit-bench-cpu-") as tmp:
            root = Path(tmp)
            rows = photo_rows(base_url, photos)
            _, pool = url_files(root, rows)
            _, small_pool = url_files(root / "small", rows[:N_SMALL])
            marginal, whole, stage_seconds = [], [], []
            for attempt in range(REPEATS):
                cpu, kept = {}, {}
                for name, urls in (("small", small_pool), ("full", pool)):
                    before = children_cpu()
                    config = openwit_config(root / f"{name}{attempt}", urls, "in_memory")
                    _, kept[name], stages = run_openwit(config)
                    cpu[name] = children_cpu() - before
                marginal.append((cpu["full"] - cpu["small"]) / (kept["full"] - kept["small"]))
                whole.append(cpu["full"] / kept["full"])
                stage_seconds.append(stages)
    finally:
        server.kill()
        server.wait()
    resize = resize_seconds(photos)
    emit(
        "build_cpu_ms_per_sample",
        statistics.median(marginal) * 1000,
        "ms",
        "the download's resize alone (decode, resize, encode), one thread, per image",
        resize * 1000,
        images=N_IMAGES,
        small_images=N_SMALL,
        kept=kept["full"],
        runs_ms=[round(v * 1000, 3) for v in marginal],
        with_startup_ms=[round(v * 1000, 3) for v in whole],
        stage_seconds=stage_seconds,
    )


if __name__ == "__main__":
    main()
