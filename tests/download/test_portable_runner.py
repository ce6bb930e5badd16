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
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from openwit import fs
from openwit.builddir import BuildDir
from openwit.demo.inputs import write_demo_inputs
from openwit.demo.web import ImageServer, plant_eval_copies
from openwit.demo.world import iter_vocabulary, write_eval_set, write_images
from openwit.schemas import QUERY_SCHEMA
from tests.conftest import REPO
from tests.download.test_object_store_build import (
    build_config,
    openwit,
    shard_bytes,
    upload_eval_set,
    upload_inputs,
    write_yaml,
)
from tests.s3server import s3_server

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"{what} exited ({process.returncode})") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.2)


def can_unshare() -> str | None:
    """Why a mount namespace cannot be made here, or None."""
    if shutil.which("unshare") is None:
        return "no unshare command (util-linux)"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True
    )
    if probe.returncode != 0:
        return f"unshare --mount is not permitted here: {probe.stderr.decode().strip()}"
    return None


def hidden_directory(launcher_tmp: Path) -> Path:
    """What the workers' tmpfs hides: all of /tmp, unless this checkout or its Python lives
    there (a CI clone in /tmp): then the launcher's temporary directory only."""
    python = Path(sys.prefix).resolve()
    if any(Path("/tmp") in (p, *p.parents) for p in (REPO.resolve(), python)):
        return launcher_tmp
    return Path("/tmp")


@pytest.fixture
def s3():
    with s3_server() as server:
        yield server


@pytest.fixture
def worker_pool(tmp_path_factory, tmp_path, s3):
    """Beam's external worker pool in its own mount namespace; yields its port. Workers get
    credentials from their environment, as on a cluster; the endpoint comes with the
    pipeline (``--s3_endpoint_url``)."""
    reason = can_unshare()
    if reason:
        pytest.skip(reason)
    launcher_tmp = Path(tmp_path_factory.getbasetemp())
    marker = tmp_path / "launcher-only"
    marker.write_text("the workers must not see this")
    hidden = hidden_directory(launcher_tmp)
    port = _free_port()
    bin_dir = str(Path(sys.executable).parent)  # the pool starts a bare `python`
    script = (
        f"mount -t tmpfs tmpfs {hidden} && "
        f"if [ -e {marker} ]; then echo 'the launcher is visible' >&2; exit 3; fi && "
        "cd / && "
        f"exec {sys.executable} -m apache_beam.runners.worker.worker_pool_main "
        f"--service_port={port}"
    )
    credentials = {k: v for k, v in s3.environment().items() if k != "AWS_ENDPOINT_URL"}
    env = {**os.environ, **credentials, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("AWS_ENDPOINT_URL", None)
    log = tmp_path / "worker-pool.log"  # a file: a pipe nobody reads would fill and block
    with log.open("wb") as sink:
        process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        try:
            _wait_for_port(port, process, "the worker pool")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}: {log.read_text()[-2000:]}") from None
        yield port
    finally:
        os.killpg(process.pid, 9)
        process.wait()


@pytest.fixture
def job_service(tmp_path):
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "apache_beam.runners.portability.local_job_service_main",
            f"--port={port}",
            f"--staging_dir={tmp_path / 'staging'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for_port(port, process, "the job service")
        yield port
    finally:
        os.killpg(process.pid, 9)
        process.wait()


def test_portable_runner_with_external_workers_gives_the_direct_runners_shards(
    s3, worker_pool, job_service, tmp_path, monkeypatch
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
        rows = [
            {"query": q, "source": "unigram", "count": 1, "score": 1.0} for q in iter_vocabulary()
        ]
        pq.write_table(pa.Table.from_pylist(rows, schema=QUERY_SCHEMA), root / "queries.parquet")
        bucket = s3.bucket("openwit-portable")
        remote_inputs, queries = upload_inputs(root, inputs, bucket)
        eval_set = upload_eval_set(root, bucket)
        env = {**os.environ}

        results = {}
        runs = {
            "portable": [
                "--runner", "PortableRunner",
                "--beam-option", f"job_endpoint=localhost:{job_service}",
                "--beam-option", "environment_type=EXTERNAL",
                "--beam-option", f"environment_config=localhost:{worker_pool}",
                "--beam-option", f"s3_endpoint_url={s3.endpoint}",
            ],
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
                build_config(root, remote_inputs, queries, out, eval_set),
            )
            result = openwit("build", "--config", str(config), *flags, env=env)
            assert result.returncode == 0, f"{name}: {result.stderr[-3000:]}"
            assert "Traceback" not in result.stdout + result.stderr, name
            build = BuildDir(out)
            results[name] = (build.funnel(), shard_bytes(out))

    portable = results["portable"]
    assert portable[1], "no shards were written"
    assert portable[0]["dedup"]["rejected"] == {"eval_overlap": 2}  # the planted copies
    assert portable == results["in_memory"] == results["multi_processing"]
