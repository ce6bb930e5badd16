"""The whole build on Beam's portable runner with workers that share no disk, against the
default runner: wall time, and whether the shards are byte for byte the same.

The path Flink, Spark and Dataflow run Python through: ``openwit build --runner
PortableRunner`` against Beam's local job service, with ``EXTERNAL`` workers from Beam's
worker pool started in a mount namespace of their own (``tests/portable.py``), inputs,
query list, eval set and build directory in a bucket on a real S3-compatible server (moto,
127.0.0.1), images from the demo's image server on 127.0.0.1. The baseline is the same
build, same bucket, on the default runner (openwit's local worker pool). The images are the
demo's generated shapes (``OPENWIT_BENCH_PORTABLE_IMAGES``, default 200) plus planted
copies of an eval set, which the build must remove in both runs.

The portable runner pays a job submission, an artifact staging and a worker start per
pipeline (about eleven pipelines a build): this measures that overhead on a small build,
not a cluster's throughput. Skipped (no figure, a line on stderr) where ``unshare --mount``
is not permitted.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, emit, guarded_env, install_guard

install_guard()
sys.path.insert(0, str(REPO))

N = int(os.environ.get("OPENWIT_BENCH_PORTABLE_IMAGES", "200"))


def main() -> None:

    from openwit import fs
    from openwit.builddir import BuildDir
    from openwit.demo.inputs import write_demo_inputs
    from openwit.demo.web import ImageServer, plant_eval_copies
    from openwit.demo.world import iter_vocabulary, write_eval_set, write_images
    from tests.candidates.test_build import write_queries
    from tests.download.test_object_store_build import (
        build_config,
        openwit,
        shard_bytes,
        upload_eval_set,
        upload_inputs,
        write_yaml,
    )
    from tests.portable import can_unshare, isolated_worker_pool, job_service, portable_flags
    from tests.s3server import s3_server

    reason = can_unshare()
    if reason:
        print(f"bench_portable_runner: skipped: {reason}", file=sys.stderr)
        return
    with tempfile.TemporaryDirectory(prefix="openwit-bench-portable-") as tmp:
        tmp_path = Path(tmp)
        root = tmp_path / "src"
        images = write_images(root / "web", N, seed=5)
        images += plant_eval_copies(
            write_eval_set(root / "eval" / "shapes", per_class=2), root / "web", 2
        )
        with s3_server() as s3, ImageServer(root / "web") as images_server:
            os.environ.update(s3.environment())
            fs.configure({})
            inputs = write_demo_inputs(
                root / "inputs", images, root / "web", images_server.base_url
            )
            write_queries(root / "queries.parquet", list(iter_vocabulary()))
            bucket = s3.bucket("openwit-bench-portable")
            remote_inputs, queries = upload_inputs(root, inputs, bucket)
            eval_set = upload_eval_set(root, bucket)
            credentials = {k: v for k, v in s3.environment().items() if k != "AWS_ENDPOINT_URL"}
            env = guarded_env()
            env.pop("OPENWIT_WORKERS", None)
            launcher_tmp = tmp_path / "launcher"
            launcher_tmp.mkdir()
            with (
                isolated_worker_pool(launcher_tmp, tmp_path, credentials) as pool_port,
                job_service(tmp_path / "staging") as job_port,
            ):
                runs = {"portable": portable_flags(job_port, pool_port, s3.endpoint), "default": []}
                results = {}
                for name, flags in runs.items():
                    out = f"{bucket}/{name}"
                    raw = build_config(
                        root, remote_inputs, queries, out, eval_set,
                        download={"records_per_unit": 50},
                    )  # fmt: skip
                    config = write_yaml(tmp_path / f"{name}.yaml", raw)
                    started = time.perf_counter()
                    result = openwit("build", "--config", str(config), *flags, env=env)
                    seconds = time.perf_counter() - started
                    if result.returncode != 0 or "Traceback" in result.stderr:
                        raise RuntimeError(f"{name} build failed: {result.stderr[-2000:]}")
                    funnel = BuildDir(out).funnel()
                    results[name] = (seconds, funnel, shard_bytes(out))
    portable, default = results["portable"], results["default"]
    emit(
        "portable_runner_build_wall",
        portable[0],
        "s",
        "default runner (openwit's worker pool), same build and bucket",
        default[0],
        images=len(images),
        kept=portable[1]["shard"]["out"],
        shards_identical=portable[1:] == default[1:],
        eval_copies_removed=portable[1]["dedup"]["rejected"].get("eval_overlap", 0),
    )


if __name__ == "__main__":
    main()
