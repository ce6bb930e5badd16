"""The whole build with its inputs, query list and build directory in a bucket.

A real S3-compatible server (moto's server mode) and the demo's image server both listen on
127.0.0.1. The demo's crawl file, pool and query list are uploaded to the bucket; the build
reads them there and writes every file there. Its shards and funnel must be those of the
same build on a local disk, a rerun must rewrite nothing, a build killed mid-download and
resumed must give byte-identical shards, and a bucket that refuses writes must be one clear
line from ``openwit build``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from openwit import fs
from openwit.builddir import BuildDir
from openwit.demo.inputs import write_demo_inputs
from openwit.demo.web import ImageServer, plant_eval_copies
from openwit.demo.world import iter_vocabulary, write_eval_set, write_images
from tests.candidates.test_build import write_queries
from tests.conftest import REPO
from tests.s3server import read_only_credentials, s3_server

IMAGES = 40


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    images = write_images(root / "web", IMAGES, seed=3)
    eval_set = write_eval_set(root / "eval" / "shapes", per_class=2)
    images += plant_eval_copies(eval_set, root / "web", 3)
    with ImageServer(root / "web") as server:
        inputs = write_demo_inputs(root / "inputs", images, root / "web", server.base_url)
        write_queries(root / "queries.parquet", list(iter_vocabulary()))
        yield root, inputs


@pytest.fixture
def environment(s3, monkeypatch):
    for key, value in s3.environment().items():
        monkeypatch.setenv(key, value)
    fs.configure({})
    return {**os.environ}


def build_config(
    root: Path, inputs: list[dict], queries: str, out: str, eval_set: str | None = None, **extra
) -> dict:
    return {
        "out": out,
        "queries": queries,
        "inputs": inputs,
        "dedup": {"eval_sets": {"shapes": eval_set}, "decontaminate": True} if eval_set else {},
        "text": {"min_lang_score": 0.2},
        "download": {
            "allow_private_networks": True,
            "timeout_s": 5,
            "per_host_concurrency": 8,
            "per_host_requests_per_s": 0,
            "threads_per_worker": 8,
            "records_per_unit": 4,
            **extra.pop("download", {}),
        },
        "shards": {"samples_per_shard": 10},
        **extra,
    }


def upload_eval_set(root: Path, bucket: str) -> str:
    """The eval set folder copied into the bucket; its URL."""
    for path in sorted((root / "eval" / "shapes").rglob("*")):
        if path.is_file():
            fs.write_bytes(
                f"{bucket}/eval/shapes/{path.relative_to(root / 'eval' / 'shapes')}",
                path.read_bytes(),
            )
    return f"{bucket}/eval/shapes"


def upload_inputs(root: Path, inputs: list[dict], bucket: str) -> tuple[list[dict], str]:
    """The inputs and the query list copied into the bucket; their ``inputs:`` and URL."""
    remote = []
    for item in inputs:
        local = Path(item["path"])
        url = f"{bucket}/inputs/{local.relative_to(root / 'inputs')}"
        fs.write_bytes(url, local.read_bytes())
        remote.append({**item, "path": url})
    queries = f"{bucket}/queries.parquet"
    fs.write_bytes(queries, (root / "queries.parquet").read_bytes())
    return remote, queries


def configs_in_bucket_and_on_disk(
    served: tuple[Path, list[dict]], bucket: str, tmp_path: Path
) -> tuple[Path, Path, str]:
    """The served inputs, query list and eval set uploaded into ``bucket``; the config of a
    build of them there (``BUCKET/build``) and of the same build on disk
    (``tmp_path/disk``), and the bucket's eval set URL."""
    root, inputs = served
    remote_inputs, queries = upload_inputs(root, inputs, bucket)
    remote_eval = upload_eval_set(root, bucket)
    in_bucket = write_yaml(
        tmp_path / "bucket.yaml",
        build_config(root, remote_inputs, queries, f"{bucket}/build", remote_eval),
    )
    local_eval = str(root / "eval" / "shapes")
    on_disk = write_yaml(
        tmp_path / "disk.yaml",
        build_config(
            root, inputs, str(root / "queries.parquet"), str(tmp_path / "disk"), local_eval
        ),
    )
    return in_bucket, on_disk, remote_eval


def built_in_bucket_and_on_disk(
    in_bucket: Path,
    on_disk: Path,
    bucket: str,
    tmp_path: Path,
    env: dict[str, str],
    bucket_env: dict[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess, BuildDir]:
    """Both builds of :func:`configs_in_bucket_and_on_disk` (the bucket's with
    ``bucket_env``, if given): the bucket's output and build, checked to equal the disk's
    (funnel, shard bytes, the planted eval copies rejected)."""
    first = openwit("build", "--config", str(in_bucket), env=bucket_env or env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Traceback" not in first.stdout + first.stderr
    local = openwit("build", "--config", str(on_disk), env=env)
    assert local.returncode == 0, local.stderr
    remote_build = BuildDir(f"{bucket}/build")
    assert remote_build.is_complete()
    assert remote_build.funnel()["dedup"]["rejected"]["eval_overlap"] == 3  # the planted copies
    assert remote_build.funnel() == BuildDir(tmp_path / "disk").funnel()
    assert shard_bytes(f"{bucket}/build") == shard_bytes(str(tmp_path / "disk"))
    return first, remote_build


def openwit_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "openwit.cli", *args]


def openwit(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = openwit_command(*args)
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def start_openwit(*args: str, env: dict[str, str]) -> subprocess.Popen:
    """``openwit ARGS`` started, its output captured; ``communicate()`` waits for it."""
    return subprocess.Popen(
        openwit_command(*args),
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def write_yaml(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def shard_bytes(build: str) -> dict[str, object]:
    """Each tar's bytes, and each index's rows without ``source`` (the input's path, which
    names the bucket in one build and the disk in the other)."""
    contents: dict[str, object] = {}
    for url in sorted(fs.list_files(fs.join(build, "shards"))):
        if url.endswith(".parquet"):
            with fs.open_input(url) as stream:
                contents[fs.basename(url)] = pq.read_table(stream).drop_columns(["source"])
        else:
            contents[fs.basename(url)] = fs.read_bytes(url)
    return contents


def keys(s3, bucket: str) -> dict[str, tuple[int, str]]:
    name = bucket.removeprefix("s3://")
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=name, Prefix="build/")
    return {o["Key"]: (o["Size"], o["ETag"]) for page in pages for o in page.get("Contents", [])}


@pytest.mark.slow
def test_a_build_in_a_bucket_equals_the_build_on_disk_and_reruns_nothing(
    s3, served, environment, tmp_path
):
    root = served[0]
    bucket = s3.bucket("openwit-whole-build")
    in_bucket, on_disk, remote_eval = configs_in_bucket_and_on_disk(served, bucket, tmp_path)
    local_eval = str(root / "eval" / "shapes")
    first, remote_build = built_in_bucket_and_on_disk(
        in_bucket, on_disk, bucket, tmp_path, environment
    )
    assert remote_build.shard_sizes() and not (tmp_path / "build").exists()
    before = keys(s3, bucket)

    again = openwit("build", "--config", str(in_bucket), env=environment)

    assert again.returncode == 0, again.stderr
    assert again.stderr.count("up to date") == 8
    assert keys(s3, bucket) == before  # not one object rewritten
    assert f"report: {bucket}/build/report/index.html" in first.stdout  # the URL, not s3:/...

    # The report and audit commands take the build and its shards by URL as well.
    report = openwit("report", "--build", f"{bucket}/build", env=environment)
    assert report.returncode == 0, report.stderr
    assert f"build report: {bucket}/build/report/index.html" in report.stdout
    # The bucket's audit reads the eval set from the bucket too.
    audits = {}
    for name, shards, eval_set in (
        ("bucket", f"{bucket}/build/shards", remote_eval),
        ("disk", tmp_path / "disk/shards", local_eval),
    ):
        out = tmp_path / f"audit-{name}"
        ran = openwit("audit", "--shards", str(shards), "--eval", f"shapes={eval_set}",
                      "--out", str(out), env=environment)  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        assert "Traceback" not in ran.stdout + ran.stderr
        audits[name] = json.loads((out / "audit.json").read_text())
    assert audits["bucket"]["n_shard_samples"] == remote_build.funnel()["shard"]["out"] > 0
    assert audits["bucket"]["sets"][0].pop("root") == remote_eval
    assert audits["disk"]["sets"][0].pop("root") == local_eval
    for field in ("n_shard_files", "n_shard_samples", "build_decontaminated", "sets"):
        assert audits["bucket"][field] == audits["disk"][field], field


@pytest.mark.slow
def test_a_build_killed_mid_download_resumes_to_the_same_shards(
    any_bucket, stored_keys, stored_bytes, served, tmp_path
):
    """Per store (S3 and GCS): kill -9 once two download units are committed, then
    ``--resume``: the finished units are kept and the shards are those of a fresh build."""
    root, inputs = served
    bucket, environment = any_bucket, {**os.environ}
    remote_inputs, queries = upload_inputs(root, inputs, bucket)
    slow = {"per_host_requests_per_s": 10, "threads_per_worker": 2}
    config = write_yaml(
        tmp_path / "bucket.yaml",
        build_config(root, remote_inputs, queries, f"{bucket}/build", download=slow),
    )
    killed_tmp = tmp_path / "killed-tmp"  # what a killed process cannot clean up stays here
    killed_tmp.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "openwit.cli", "build", "--config", str(config)],
        cwd=REPO,
        env={**environment, "TMPDIR": str(killed_tmp)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while True:
        keys_now = stored_keys(f"{bucket}/build/stages/download/")
        if len([k for k in keys_now if "/done-" in k]) >= 2:
            break
        assert process.poll() is None, "the build ended before it could be killed"
        assert time.monotonic() < deadline, "no download progress"
        time.sleep(0.1)
    process.kill()
    process.wait()
    manifest = json.loads(stored_bytes(f"{bucket}/build/manifest.json"))
    assert manifest["stages"]["download"]["status"] == "running"

    resumed = openwit("build", "--config", str(config), "--resume", env=environment)
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stdout + resumed.stderr
    entry = BuildDir(f"{bucket}/build").stage_entry("download")
    assert entry["stats"]["units_resumed"] >= 2

    fresh = write_yaml(
        tmp_path / "fresh.yaml",
        build_config(root, remote_inputs, queries, str(tmp_path / "fresh")),
    )
    assert openwit("build", "--config", str(fresh), env=environment).returncode == 0
    assert shard_bytes(f"{bucket}/build") == shard_bytes(str(tmp_path / "fresh"))
    assert BuildDir(f"{bucket}/build").funnel() == BuildDir(tmp_path / "fresh").funnel()


def test_openwit_build_into_a_bucket_that_refuses_writes_is_one_line(served, tmp_path):
    root, inputs = served
    with s3_server(unauthenticated_actions=4) as server:
        credentials = read_only_credentials(server, "refusing")
        env = {**os.environ, **server.environment(), **credentials}
        config = write_yaml(
            tmp_path / "s3.yaml",
            build_config(root, inputs, str(root / "queries.parquet"), "s3://refusing/build"),
        )
        result = openwit("build", "--config", str(config), env=env)
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "cannot write to s3://refusing/build" in lines[0] and "AccessDenied" in lines[0]
