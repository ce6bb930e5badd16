"""A build killed mid-download and resumed gives the same shards as one never interrupted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time

import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO
from tests.download.stages import build_config, write_pool

IMAGES = 60


def run_build(config_path, *extra) -> subprocess.Popen:
    """The build in a process of its own, its temporary files beside the config (what a
    killed process cannot clean up stays there, not in /tmp)."""
    command = [sys.executable, "-m", "tests.download.build_script", str(config_path), *extra]
    temporary = config_path.parent / "tmp"
    temporary.mkdir(exist_ok=True)
    return subprocess.Popen(command, cwd=REPO, env={**os.environ, "TMPDIR": str(temporary)})


def shard_contents(out) -> dict:
    contents = {}
    for tar_path in sorted((out / "shards").glob("*.tar")):
        index = pq.read_table(tar_path.with_suffix(".parquet"), columns=["key", "uid", "sha256"])
        with tarfile.open(tar_path) as tar:
            members = tar.getnames()
        contents[tar_path.name] = (index.to_pylist(), members, tar_path.read_bytes())
    return contents


@pytest.mark.slow
def test_killed_build_resumes_to_the_same_shards(tmp_path, faults):
    server, urls = faults
    pool_urls = [f"{urls['ok']}?resume={i}" for i in range(IMAGES)] + [urls["not_found"]]
    # Slow the build down (a polite rate) so the kill lands mid-download.
    slow = {"per_host_requests_per_s": 25, "threads_per_worker": 4, "records_per_unit": 5}

    killed = tmp_path / "killed"
    build_config(killed, write_pool(tmp_path / "pool.jsonl", pool_urls), download=slow)
    config_path = killed / "build.yaml"
    process = run_build(config_path)
    downloads = killed / "out" / "stages" / "download"
    deadline = time.monotonic() + 120
    while len(list(downloads.glob("*/done-*.json"))) < 3:
        assert process.poll() is None, "the build ended before it could be killed"
        assert time.monotonic() < deadline, "no download progress"
        time.sleep(0.05)
    process.kill()
    process.wait()

    manifest = json.loads((killed / "out" / "manifest.json").read_text())
    assert manifest["stages"]["download"]["status"] == "running"
    (work,) = downloads.iterdir()  # the attempt the kill interrupted
    marked = [work / f"part-{m.name[5:13]}.parquet" for m in work.glob("done-*.json")]
    done_parts = [p for p in marked if p.exists()]
    done_urls = {r["url"] for p in done_parts for r in pq.read_table(p).to_pylist()}
    assert done_urls and len(done_parts) < 13
    requests_before = len(server.requests)

    assert run_build(config_path, "resume").wait(timeout=300) == 0
    manifest = json.loads((killed / "out" / "manifest.json").read_text())
    assert manifest["complete"]
    assert manifest["stages"]["download"]["stats"]["units_resumed"] >= len(done_parts)
    again = {path for path, _ in server.requests[requests_before:]}
    assert not {u.removeprefix(server.base_url) for u in done_urls} & again

    fresh = tmp_path / "fresh"
    build_config(fresh, tmp_path / "pool.jsonl")  # same results; no rate limit needed
    assert run_build(fresh / "build.yaml").wait(timeout=300) == 0
    resumed, uninterrupted = shard_contents(killed / "out"), shard_contents(fresh / "out")
    assert list(resumed) == [f"{i:05d}.tar" for i in range(6)]
    assert resumed == uninterrupted
    funnel = json.loads((killed / "out" / "funnel.json").read_text())
    assert funnel == json.loads((fresh / "out" / "funnel.json").read_text())
    assert funnel["download"] == {"in": 61, "out": 60, "rejected": {"http_404": 1}}
