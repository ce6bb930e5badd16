"""The whole build on Beam's portable runner, with workers that share no disk with the launcher.

This is the Fn API path Flink, Spark and Dataflow run Python through (their job servers are
jars these machines cannot download): ``openwit build --runner PortableRunner`` submits each
stage to Beam's local job service, whose workers come from Beam's external worker pool,
started in a mount namespace of its own where a fresh tmpfs hides the launcher's files (its
temporary directory, or all of /tmp). Inputs, query list and build directory are in a bucket
on a real S3-compatible server; images come from a server on 127.0.0.1. The shards and the
funnel must be byte for byte those of the in-process DirectRunner and of Beam's
multi_processing mode.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from openwit import fs
from openwit.builddir import BuildDir
from openwit.demo.inputs import write_demo_inputs
from openwit.demo.web import ImageServer, plant_eval_copies
from openwit.demo.world import iter_vocabulary, write_eval_set, write_images
from tests.candidates.test_build import write_queries
from tests.download.test_object_store_build import (
    build_config,
    shard_bytes,
    start_openwit,
    upload_eval_set,
    upload_inputs,
    write_yaml,
)
from tests.portable import can_unshare, isolated_worker_pool, job_service, portable_flags
from tests.s3server import s3_server

pytestmark = pytest.mark.slow


@pytest.fixture
def s3():
    with s3_server() as server:
        yield server


@pytest.fixture
def worker_pool(tmp_path_factory, tmp_path, s3):
    reason = can_unshare()
    if reason:
        pytest.skip(reason)
    credentials = {k: v for k, v in s3.environment().items() if k != "AWS_ENDPOINT_URL"}
    with isolated_worker_pool(Path(tmp_path_factory.getbasetemp()), tmp_path, credentials) as port:
        yield port


@pytest.fixture
def job_endpoint(tmp_path):
    with job_service(tmp_path / "staging") as port:
        yield port


#: Three builds (one on the portable runner's workers) share two cores with the image
#: server: a 5-second download budget timed images out under that load (one CI run,
#: 2026-12-08), so the builds' outputs differed by their timeouts, not by their runner.
PATIENT = {"timeout_s": 60}


def test_portable_runner_with_external_workers_gives_the_direct_runners_shards(
    s3, worker_pool, job_endpoint, tmp_path, monkeypatch
):
    root = tmp_path / "src"
    images = write_images(root / "web", 24, seed=5)
    images += plant_eval_copies(
        write_eval_set(root / "eval" / "shapes", per_class=2), root / "web", 2
    )
    with ImageServer(root / "web") as images_server:
        for key, value in s3.environment().items():
            monkeypatch.setenv(key, value)
        fs.configure({})
        inputs = write_demo_inputs(root / "inputs", images, root / "web", images_server.base_url)
        write_queries(root / "queries.parquet", list(iter_vocabulary()))
        bucket = s3.bucket("openwit-portable")
        remote_inputs, queries = upload_inputs(root, inputs, bucket)
        eval_set = upload_eval_set(root, bucket)
        env = {**os.environ}

        results, builds = {}, {}
        runs = {
            "portable": portable_flags(job_endpoint, worker_pool, s3.endpoint),
            "in_memory": ["--beam-option", "direct_running_mode=in_memory"],
            "multi_processing": [
                "--beam-option", "direct_running_mode=multi_processing",
                "--beam-option", "direct_num_workers=2",
            ],
        }  # fmt: skip
        for name, flags in runs.items():
            out = f"{bucket}/{name}"
            config = write_yaml(
                tmp_path / f"{name}.yaml",
                build_config(root, remote_inputs, queries, out, eval_set, download=PATIENT),
            )
            builds[name] = (out, start_openwit("build", "--config", str(config), *flags, env=env))
        # The three builds run at once, each under its own prefix: the portable runner's
        # per-stage start leaves the cores idle for seconds the direct runners can use.
        try:
            for name, (out, process) in builds.items():
                stdout, stderr = process.communicate(timeout=600)
                assert process.returncode == 0, f"{name}: {stderr[-3000:]}"
                assert "Traceback" not in stdout + stderr, name
                results[name] = (BuildDir(out).funnel(), shard_bytes(out))
        finally:
            for _, process in builds.values():
                if process.poll() is None:  # a failed build's siblings do not outlive it
                    process.kill()
                    process.wait()

    portable = results["portable"]
    assert portable[1], "no shards were written"
    assert portable[0]["dedup"]["rejected"] == {"eval_overlap": 2}  # the planted copies
    assert portable == results["in_memory"] == results["multi_processing"]


def test_portable_runner_writes_a_gcs_bucket_as_the_direct_runner_does(
    gcs, gcs_environment, job_endpoint, tmp_path_factory, tmp_path
):
    """The same, with the bucket in ``gs://`` (the GCS emulator): Dataflow's shape, workers
    that reach the store on their own, with what their environment gives them."""
    reason = can_unshare()
    if reason:
        pytest.skip(reason)
    root = tmp_path / "src"
    images = write_images(root / "web", 12, seed=7)
    images += plant_eval_copies(
        write_eval_set(root / "eval" / "shapes", per_class=2), root / "web", 2
    )
    basetemp = Path(tmp_path_factory.getbasetemp())
    with (
        ImageServer(root / "web") as images_server,
        isolated_worker_pool(basetemp, tmp_path, gcs.environment()) as pool_port,
    ):
        inputs = write_demo_inputs(root / "inputs", images, root / "web", images_server.base_url)
        write_queries(root / "queries.parquet", list(iter_vocabulary()))
        bucket = gcs.bucket("openwit-portable")
        remote_inputs, queries = upload_inputs(root, inputs, bucket)
        eval_set = upload_eval_set(root, bucket)
        results = {}
        runs = {
            "portable": portable_flags(job_endpoint, pool_port),
            "in_memory": ["--beam-option", "direct_running_mode=in_memory"],
        }
        for name, flags in runs.items():
            out = f"{bucket}/{name}"
            config = write_yaml(
                tmp_path / f"{name}.yaml",
                build_config(root, remote_inputs, queries, out, eval_set, download=PATIENT),
            )
            process = start_openwit("build", "--config", str(config), *flags, env=gcs_environment)
            stdout, stderr = process.communicate(timeout=600)
            assert process.returncode == 0, f"{name}: {stderr[-3000:]}"
            assert "Traceback" not in stdout + stderr, name
            results[name] = (BuildDir(out).funnel(), shard_bytes(out))

    portable = results["portable"]
    assert portable[1], "no shards were written"
    assert portable[0]["dedup"]["rejected"] == {"eval_overlap": 2}  # the planted copies
    assert portable == results["in_memory"]
