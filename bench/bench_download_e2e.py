"""End to end, images/s: openwit's download -> image -> shard against the img2dataset CLI.

Both fetch the same loopback URL list (photo-like JPEGs of 300x200 to 1600x1200, served by
the standard library's threading HTTP server in its own process, speaking HTTP/1.1 with
keep-alive as web servers do; img2dataset's urllib closes every connection, openwit reuses
them, and a second openwit run with ``keep_alive: false`` shows what that is worth) with the
same resize settings
(keep_ratio_largest, 256 px, only shrink, JPEG quality 95) and write webdataset shards
with captions; both run as fresh processes, imports and start-up included:

- img2dataset CLI: 2 processes x 16 threads, 500 samples per shard (its default of 10,000
  would put this list in one shard and one process), no EXIF extraction, no retries;
- openwit: the real stages on the real runner (after a trivial stand-in for ingest..balance),
  Beam DirectRunner in_memory (one process, 32 threads; the image stage's hashes in one
  worker process per core) and multi_processing (2 x 16). openwit also decodes every
  stored image again for its pHash and dHash (the image stage), which img2dataset does
  not do.

Also the download stage alone (fetch, checks, resize, sha256, commit; no pHash, no shards)
against the same img2dataset run, and the resizers alone, one thread: openwit's Pillow
path against img2dataset's Resizer.

Both tools are also run on the first ``OPENWIT_BENCH_SMALL_IMAGES`` (default 1000) URLs,
two of img2dataset's 500-sample shards, so both its processes work. That splits each one's
time into a fixed part (start-up, imports, per-stage or per-process set-up) and a cost per
image, ``(t_full - t_small) / (N - n)``; the ratio of the per-image costs is what a build
much larger than this list would see.

``OPENWIT_BENCH_IMAGES`` (default 3000) sets the list size; generated photos are cached in
the temp directory.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import photos
from common import REPO, emit, guarded_env, img2dataset_cli, install_guard, serving_at

install_guard()

N_IMAGES = int(os.environ.get("OPENWIT_BENCH_IMAGES", "3000"))
N_SMALL = int(os.environ.get("OPENWIT_BENCH_SMALL_IMAGES", "1000"))
SIZES = [
    (300, 200),
    (200, 300),
    (400, 300),
    (640, 480),
    (480, 640),
    (800, 600),
    (900, 600),
    (1024, 768),
    (1200, 800),
    (1280, 960),
    (1200, 1600),
    (1600, 1200),
]
RESIZE = {"resize_max_side": 256, "resize_mode": "keep_ratio_largest", "encode_quality": 95}


def make_photos(folder: Path, count: int) -> list[Path]:
    return photos.make_photos(folder, count, SIZES)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _Server:
    """The demo's file server (a threading HTTP server with a listen backlog for 32
    concurrent clients, see ``openwit.demo.web.BacklogServer``), in its own process.

    The standard library's default backlog is 5: with more clients connecting at once the
    kernel drops SYNs and each dropped one costs a 1 s retransmission, to both sides alike.
    """

    @staticmethod
    def main(folder: str, port: int) -> None:
        import functools

        from openwit.demo.web import BacklogServer, QuietHandler

        handler = functools.partial(QuietHandler, directory=folder)
        BacklogServer(("127.0.0.1", port), handler).serve_forever()


def serve(folder: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, str(Path(__file__).resolve()), "--serve", str(folder), str(port)]
    server = subprocess.Popen(
        command,
        cwd=folder,
        env=guarded_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return serving_at(server, port)


def run_img2dataset(url_list: Path, out: Path) -> tuple[float, int]:
    return img2dataset_cli(
        url_list, out, RESIZE["resize_max_side"], RESIZE["resize_mode"], RESIZE["encode_quality"]
    )


def openwit_config(
    root: Path, pool: Path, mode: str, resizer: str = "pillow", keep_alive: bool = True
) -> Path:
    import yaml

    workers = 2 if mode == "multi_processing" else 1
    raw = {
        "out": str(root / "out"),
        "inputs": [{"path": str(pool), "format": "jsonl"}],
        "beam_options": {"direct_running_mode": mode, "direct_num_workers": workers},
        "download": {
            "allow_private_networks": True,
            "threads_per_worker": 32 // workers,
            "per_host_concurrency": 64,  # every URL is on one host here
            "per_host_requests_per_s": 0,
            "records_per_unit": 100,
            "retries": 0,
            "keep_alive": keep_alive,
        },
        "image": {**RESIZE, "resizer": resizer},
    }
    root.mkdir(parents=True, exist_ok=True)
    path = root / "build.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def run_openwit(config: Path) -> tuple[float, int, dict[str, float]]:
    command = [sys.executable, str(Path(__file__).resolve()), "--openwit", str(config)]
    started = time.perf_counter()
    subprocess.run(command, check=True, env=guarded_env(), cwd=REPO)
    seconds = time.perf_counter() - started
    funnel = json.loads((config.parent / "out" / "funnel.json").read_text())
    manifest = json.loads((config.parent / "out" / "manifest.json").read_text())
    stages = {name: entry["seconds"] for name, entry in manifest["stages"].items()}
    return seconds, funnel["shard"]["out"], stages


def openwit_build(config_path: str) -> None:
    """The openwit side, in its own process: stand-in candidates, then the real stages."""
    import atexit
    import gc

    atexit.register(gc.freeze)  # as the openwit CLI does (openwit/cli.py)
    from openwit.config import load_build_config

    sys.path.insert(0, str(REPO))  # the stand-in first stage of the download tests
    from openwit.pipeline.download.stage import DownloadStage
    from openwit.pipeline.image.stage import ImageStage
    from openwit.pipeline.shard.stage import ShardStage
    from openwit.runner import BuildRunner
    from tests.download.stages import PoolCandidates

    stages = [PoolCandidates(), DownloadStage(), ImageStage(), ShardStage()]
    BuildRunner(load_build_config(config_path), stages).run()


def resizer_figures(photos: list[Path]) -> None:
    from openwit.config import ImageConfig
    from openwit.pipeline.download.resize import Img2datasetResizer, PillowResizer

    sample = [p.read_bytes() for p in photos[:300]]
    settings = ImageConfig(resize_max_side=256, resize_mode="keep_ratio_largest", encode_quality=95)
    timings = {}
    for name, resize in (
        ("pillow", PillowResizer(settings)),
        ("img2dataset", Img2datasetResizer(settings)),
    ):
        resize(sample[0])  # warm up
        started = time.perf_counter()
        for data in sample:
            resize(data)
        timings[name] = len(sample) / (time.perf_counter() - started)
    emit(
        "resize_images_per_s",
        timings["pillow"],
        "images/s",
        "img2dataset Resizer (OpenCV), same settings, one thread",
        timings["img2dataset"],
        images=len(sample),
    )


def photo_rows(base_url: str, photos: list[Path]) -> list[dict[str, str]]:
    """A (url, caption) row for each photo, served from ``base_url``."""
    return [
        {"url": f"{base_url}/{p.name}", "caption": f"a photo of a circle, number {i}"}
        for i, p in enumerate(photos)
    ]


def url_files(folder: Path, rows: list[dict[str, str]]) -> tuple[Path, Path]:
    """The URL list as img2dataset's Parquet and as openwit's JSONL pool."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    url_list = folder / "urls.parquet"
    pq.write_table(pa.Table.from_pylist(rows), url_list)
    pool = folder / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return url_list, pool


def per_image_figure(
    root: Path,
    rows: list[dict[str, str]],
    img2dataset_full: tuple[float, int],
    openwit_full: tuple[float, int],
) -> None:
    """Both tools again on the first ``N_SMALL`` URLs: fixed seconds and images/s beyond them."""
    small = root / "small"
    url_list, pool = url_files(small, rows[:N_SMALL])
    base_small = run_img2dataset(url_list, small / "img2dataset")
    seconds, kept, _ = run_openwit(openwit_config(small / "in_memory", pool, "in_memory"))

    def split(full: tuple[float, int], part: tuple[float, int]) -> tuple[float, float]:
        per_image = (full[0] - part[0]) / max(full[1] - part[1], 1)
        return part[0] - part[1] * per_image, per_image  # (fixed s, s per image)

    base_fixed, base_per_image = split(img2dataset_full, base_small)
    fixed, per_image = split(openwit_full, (seconds, kept))
    emit(
        "download_e2e_images_per_s_beyond_startup",
        1 / per_image,
        "images/s",
        f"img2dataset CLI 2x16, the same split of its {N_IMAGES:,}- and {N_SMALL}-URL runs",
        1 / base_per_image,
        images=(N_SMALL, N_IMAGES),
        openwit_fixed_s=round(fixed, 2),
        openwit_ms_per_image=round(per_image * 1000, 3),
        img2dataset_fixed_s=round(base_fixed, 2),
        img2dataset_ms_per_image=round(base_per_image * 1000, 3),
        openwit_small_s=round(seconds, 2),
        img2dataset_small_s=round(base_small[0], 2),
    )


def main() -> None:
    photos = make_photos(Path(tempfile.gettempdir()) / f"openwit-bench-photos-{N_IMAGES}", N_IMAGES)
    resizer_figures(photos)
    server, base_url = serve(photos[0].parent)
    try:
        with tempfile.TemporaryDirectory(prefix="openwit-bench-") as tmp:
            root = Path(tmp)
            rows = photo_rows(base_url, photos)
            url_list, pool = url_files(root, rows)

            base_s, base_n = run_img2dataset(url_list, root / "img2dataset")
            baseline = base_n / base_s
            label = "img2dataset CLI 2x16, same URLs and resize settings"
            for mode in ("in_memory", "multi_processing"):
                seconds, kept, stages = run_openwit(openwit_config(root / mode, pool, mode))
                emit(
                    f"download_e2e_images_per_s_{mode}",
                    kept / seconds,
                    "images/s",
                    label,
                    baseline,
                    images=N_IMAGES,
                    openwit_kept=kept,
                    openwit_s=round(seconds, 2),
                    img2dataset_kept=base_n,
                    img2dataset_s=round(base_s, 2),
                    openwit_stage_s=stages,
                )
                if mode == "in_memory":  # the same without connection reuse
                    off = openwit_config(root / "no_keep_alive", pool, mode, keep_alive=False)
                    off_seconds, off_kept, off_stages = run_openwit(off)
                    emit(
                        "download_e2e_images_per_s_in_memory_without_keep_alive",
                        off_kept / off_seconds,
                        "images/s",
                        label,
                        baseline,
                        images=N_IMAGES,
                        openwit_kept=off_kept,
                        openwit_s=round(off_seconds, 2),
                        img2dataset_s=round(base_s, 2),
                        openwit_stage_s=off_stages,
                    )
                if mode == "in_memory":  # the download stage alone: fetch, check, resize, sha256
                    emit(
                        "download_stage_images_per_s",
                        kept / stages["download"],
                        "images/s",
                        label + " (its whole run)",
                        baseline,
                        images=N_IMAGES,
                    )
                    if 0 < N_SMALL < N_IMAGES:
                        per_image_figure(root, rows, (base_s, base_n), (seconds, kept))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--openwit"]:
        openwit_build(sys.argv[2])
    elif sys.argv[1:2] == ["--serve"]:
        _Server.main(sys.argv[2], int(sys.argv[3]))
    else:
        main()
