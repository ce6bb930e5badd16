"""The whole build against the img2dataset CLI, on two servers: images/s, cores used, and the
cost per image beyond start-up.

Both tools get the same loopback URL list (``OPENWIT_BENCH_E2E_IMAGES``, default 10,000
distinct photo-like JPEGs of 0.5-1 megapixel, generated once and cached) and the same
resize: img2dataset's ``keep_ratio`` to 256 px, only shrinking, JPEG quality 95. Both run
as fresh processes, imports and start-up included:

- img2dataset CLI: 2 processes x 16 threads, 500 samples per shard, no EXIF, no retries;
- openwit: ``openwit build`` of a Parquet pool of (url, caption) through all eight stages
  (ingest, text, match, balance, download, image, dedup, shard), on the default runner
  (openwit's worker pool, one worker per core), 16 network threads per worker, 1,000
  samples per shard. openwit also decodes every stored image again for its pHash and dHash
  and deduplicates, which img2dataset does not do.

Two servers, each in its own process: the project's own (the demo's file server: HTTP/1.1
with keep-alive, a listen backlog for many clients) and the standard library's plain
``ThreadingHTTPServer`` speaking HTTP/1.0 (one connection per request, as many small image
hosts), with ``request_queue_size`` 1024. A sampler reads the CPU seconds of openwit's
process tree (launcher and workers) from ``/proc``: cores used = CPU seconds / wall seconds.

Both tools also run on the first 1,000 and 3,000 URLs: the cost per image beyond start-up is
``(t_3000 - t_1000) / 2000`` for each, and their ratio is what a build much larger than
these lists would see; the same over the 1,000- and the full list is given too (steadier:
the 1,000/3,000 split moved by a third between runs). ``OPENWIT_BENCH_E2E_SERVERS`` picks
the servers (default ``own,plain``).
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import photos
from common import REPO, emit, guarded_env, img2dataset_cli, install_guard, serving_at

install_guard()

N_FULL = int(os.environ.get("OPENWIT_BENCH_E2E_IMAGES", "10000"))
N_SPLIT = (1000, 3000)
#: 0.5 to 1.0 megapixel, landscape and portrait.
SIZES = [(900, 600), (1000, 750), (1024, 768), (1152, 864), (1200, 800), (750, 1000), (800, 1000)]
COLOURS = ["red", "green", "blue", "yellow", "orange", "purple", "white", "black"]
THINGS = ["circle", "square", "cat", "dog", "boat", "house", "tree", "flower", "car", "bird"]
PLACES = ["on a table", "in a garden", "near the sea", "in the city", "on a hill", "at night"]
RESIZE = {"size": 256, "mode": "keep_ratio", "quality": 95}


# -- data --------------------------------------------------------------------------------------
def make_photos(folder: Path, count: int) -> list[Path]:
    return photos.make_photos(folder, count, SIZES)


def captions(count: int) -> list[str]:
    rng = random.Random(1)
    return [
        f"a photo of a {rng.choice(COLOURS)} {rng.choice(THINGS)} {rng.choice(PLACES)} "
        f"taken in {1990 + i % 30}"
        for i in range(count)
    ]


def write_inputs(folder: Path, base_url: str, photos: list[Path]) -> tuple[Path, Path]:
    """The URL list (both tools read it) and the query list (openwit's match stage)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from openwit.schemas import QUERY_SCHEMA

    folder.mkdir(parents=True, exist_ok=True)
    rows = {"url": [f"{base_url}/{p.name}" for p in photos], "caption": captions(len(photos))}
    pool = folder / "urls.parquet"
    pq.write_table(pa.table(rows), pool)
    words = sorted({w for text in rows["caption"] for w in text.split()})
    queries = folder / "queries.parquet"
    table = [{"query": w, "source": "unigram", "count": 1, "score": 1.0} for w in words]
    pq.write_table(pa.Table.from_pylist(table, schema=QUERY_SCHEMA), queries)
    return pool, queries


# -- servers -------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_main(kind: str, folder: str, port: int) -> None:
    import functools
    import http.server

    from openwit.demo.web import BacklogServer, QuietHandler

    if kind == "own":
        handler = functools.partial(QuietHandler, directory=folder)
        BacklogServer(("127.0.0.1", port), handler).serve_forever()
        return

    class Plain(http.server.SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        request_queue_size = 1024

    Server(("127.0.0.1", port), functools.partial(Plain, directory=folder)).serve_forever()


def serve(kind: str, folder: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--serve",
        kind,
        str(folder),
        str(port),
    ]
    server = subprocess.Popen(
        command, cwd=REPO, env=guarded_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return serving_at(server, port)


# -- the two tools -------------------------------------------------------------------------------
def children_cpu() -> float:
    """CPU seconds of this process's reaped children and their reaped descendants."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_img2dataset(url_list: Path, out: Path) -> tuple[float, int]:
    return img2dataset_cli(url_list, out, RESIZE["size"], RESIZE["mode"], RESIZE["quality"])


def run_openwit(root: Path, pool: Path, queries: Path) -> dict:
    import yaml

    config = {
        "out": str(root / "build"),
        "queries": str(queries),
        "inputs": [{"path": str(pool), "format": "parquet"}],
        "text": {"min_lang_score": 0.2},
        "balance": {"max_per_query": 1_000_000},
        "download": {
            "allow_private_networks": True,
            "threads_per_worker": 16,
            "per_host_concurrency": 64,  # every URL is on one host here
            "per_host_requests_per_s": 0,
            "retries": 0,
        },
        "image": {
            "resize_max_side": RESIZE["size"],
            "resize_mode": RESIZE["mode"],
            "encode_quality": RESIZE["quality"],
        },
        "shards": {"samples_per_shard": 1000},
    }
    root.mkdir(parents=True, exist_ok=True)
    path = root / "build.yaml"
    path.write_text(yaml.safe_dump(config))
    env = guarded_env()
    env.pop("OPENWIT_WORKERS", None)
    command = [sys.executable, "-m", "openwit.cli", "build", "--config", str(path)]
    cpu_before = children_cpu()  # the workers are the launcher's children, reaped by it
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True)
    seconds = time.perf_counter() - started
    cpu = children_cpu() - cpu_before
    if result.returncode != 0 or b"Traceback" in result.stdout + result.stderr:
        raise RuntimeError(f"openwit build failed: {result.stderr.decode()[-2000:]}")
    manifest = json.loads((root / "build" / "manifest.json").read_text())
    funnel = json.loads((root / "build" / "funnel.json").read_text())
    return {
        "seconds": seconds,
        "kept": funnel["shard"]["out"],
        "cpu": cpu,
        "stages": {name: entry["seconds"] for name, entry in manifest["stages"].items()},
    }


# -- figures ------------------------------------------------------------------------------------
def emit_beyond_startup(name: str, runs: dict, small: int, large: int) -> None:
    """Images/s beyond start-up of both tools: the cost of the images between their runs on
    the first ``small`` and the first ``large`` URLs (``runs``: size -> both tools' runs)."""
    (b_small, _), o_small = runs[small]
    (b_large, _), o_large = runs[large]
    ours_per_image = (o_large["seconds"] - o_small["seconds"]) / (large - small)
    base_per_image = (b_large - b_small) / (large - small)
    emit(
        name,
        1 / ours_per_image,
        "images/s",
        f"img2dataset CLI 2x16, the same {small:,}/{large:,}-URL split",
        1 / base_per_image,
        openwit_ms_per_image=round(ours_per_image * 1000, 3),
        openwit_fixed_s=round(o_small["seconds"] - small * ours_per_image, 2),
        img2dataset_ms_per_image=round(base_per_image * 1000, 3),
        img2dataset_fixed_s=round(b_small - small * base_per_image, 2),
    )


def bench_server(kind: str, photos: list[Path], root: Path) -> None:
    server, base_url = serve(kind, photos[0].parent)
    try:
        label = {"own": "the project's server (HTTP/1.1, keep-alive)",
                 "plain": "http.server HTTP/1.0"}[kind]  # fmt: skip
        runs = {}
        for n in sorted({*N_SPLIT, N_FULL}):
            folder = root / f"{kind}-{n}"
            pool, queries = write_inputs(folder, base_url, photos[:n])
            base = run_img2dataset(pool, folder / "img2dataset")
            ours = run_openwit(folder / "openwit", pool, queries)
            runs[n] = (base, ours)
        (base_s, base_n), ours = runs[N_FULL]
        emit(
            f"build_e2e_{kind}_server_images_per_s",
            ours["kept"] / ours["seconds"],
            "images/s",
            f"img2dataset CLI 2x16 on {label}, same URLs and resize",
            base_n / base_s,
            images=N_FULL,
            openwit_s=round(ours["seconds"], 2),
            openwit_kept=ours["kept"],
            img2dataset_s=round(base_s, 2),
            img2dataset_kept=base_n,
            openwit_cores_used=round(ours["cpu"] / ours["seconds"], 2),
            openwit_cpu_ms_per_url=round(ours["cpu"] / N_FULL * 1000, 3),
            openwit_urls_per_s=round(N_FULL / ours["seconds"], 1),
            openwit_stage_s=ours["stages"],
        )
        small, large = N_SPLIT
        name = f"build_e2e_{kind}_server_images_per_s_beyond_startup"
        emit_beyond_startup(name, runs, small, large)
        # The same over the smallest and the full list: the two short runs above differ by
        # a few seconds, so their split moved by a third between runs; 9,000 more images
        # than the small run steady it.
        emit_beyond_startup(f"{name}_full_list", runs, small, N_FULL)
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    photos = make_photos(
        Path(tempfile.gettempdir()) / f"openwit-bench-megapixel-v2-{N_FULL}", N_FULL
    )
    with tempfile.TemporaryDirectory(prefix="openwit-bench-e2e-") as tmp:
        for kind in os.environ.get("OPENWIT_BENCH_E2E_SERVERS", "own,plain").split(","):
            bench_server(kind, photos, Path(tmp))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        server_main(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
