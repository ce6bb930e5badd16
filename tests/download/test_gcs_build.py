"""The whole build with its inputs, query list, eval set and build directory in ``gs://``.

A GCS emulator (gcp-storage-emulator, ``tests/gcsserver.py``) and the demo's image server
both listen on 127.0.0.1. The build reaches the bucket as it would reach GCS: Beam's GCS
filesystem and Google's client library, credentials from the (loopback) metadata server.
Its shards and funnel must be those of the same build on a local disk, and a rerun must
rewrite nothing. Until 2026-12-07 a build into ``gs://`` stopped at once with a traceback:
GCS opens an object lazily, so the missing lease object raised Google's ``NotFound`` at the
first read instead of ``FileNotFoundError``.
"""

from __future__ import annotations

import io
import subprocess
import tarfile

import pyarrow.parquet as pq
import pytest

from openwit import fs
from tests.conftest import REPO
from tests.download.test_object_store_build import (
    build_config,
    built_in_bucket_and_on_disk,
    configs_in_bucket_and_on_disk,
    openwit,
    openwit_command,
    served,  # noqa: F401 (a fixture)
    write_yaml,
)
from tests.loopback import free_port


def test_a_missing_bucket_or_an_unreachable_store_is_one_line(
    gcs,
    served,  # noqa: F811 (the fixture imported above)
    gcs_environment,
    tmp_path,
):
    root, inputs = served
    out = "gs://openwit-no-such-bucket/build"
    config = write_yaml(
        tmp_path / "gone.yaml", build_config(root, inputs, str(root / "queries.parquet"), out)
    )
    missing = openwit("build", "--config", str(config), env=gcs_environment)
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        f"openwit: error: cannot write {out}/.openwit.lock: "
        "not found (HTTP 404: does the bucket exist?)"
    )
    audit = openwit(
        "audit", "--shards", "gs://openwit-no-such-bucket/shards",
        "--eval", f"shapes={root / 'eval' / 'shapes'}", "--out", str(tmp_path / "audit"),
        env=gcs_environment,
    )  # fmt: skip
    assert audit.returncode == 2
    assert audit.stderr.strip() == (
        "openwit: error: cannot list gs://openwit-no-such-bucket/shards/*.parquet: "
        "not found (HTTP 404: does the bucket exist?)"
    )
    # Nothing listens there: Google's client alone retries for two minutes (the bound
    # here); the bucket's first request is made without retries.
    closed = {**gcs_environment, "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{free_port()}"}
    unreachable = subprocess.run(
        openwit_command("build", "--config", str(config)),
        cwd=REPO, env=closed, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert unreachable.returncode == 2
    assert len(unreachable.stderr.strip().splitlines()) == 1, unreachable.stderr
    assert "Connection refused" in unreachable.stderr


def test_a_bucket_that_refuses_writes_is_one_line_and_nothing_is_complete(
    gcs,
    served,  # noqa: F811 (the fixture imported above)
    gcs_environment,
    tmp_path,
):
    """As IAM refuses an account without ``storage.objects.create`` (the test server's
    read-only account): exit 2, one line naming the URL and GCS's reason, no manifest."""
    root, inputs = served
    bucket = gcs.bucket("openwit-refusing")
    out = f"{bucket}/build"
    config = write_yaml(
        tmp_path / "refused.yaml", build_config(root, inputs, str(root / "queries.parquet"), out)
    )
    refused = openwit("build", "--config", str(config), env=gcs.read_only_environment())
    assert refused.returncode == 2
    assert "Traceback" not in refused.stdout + refused.stderr
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, refused.stderr
    assert lines[0] == (
        f"openwit: error: cannot write {out}/.openwit.lock: Forbidden (HTTP 403: "
        "test@openwit-test.invalid does not have storage.objects.create access to the object.)"
    )
    assert gcs.objects(bucket) == {}  # nothing written, nothing marked complete


def test_a_missing_object_is_a_missing_file(gcs, gcs_environment):
    bucket = gcs.bucket("openwit-missing")
    fs.write_bytes(f"{bucket}/here.json", b"{}")

    assert fs.read_json(f"{bucket}/here.json") == {}
    assert not fs.exists(f"{bucket}/gone.json")
    with pytest.raises(FileNotFoundError, match=r"gs://openwit-missing/gone\.json"):
        fs.read_bytes(f"{bucket}/gone.json")
    # GCS opens an object lazily: each reader's first call must say "missing" as for a file
    # (pyarrow's first is tell, a text wrapper's read1, tarfile's tell, iteration next).
    gone = f"{bucket}/gone.parquet"
    readers = {
        "pyarrow": lambda stream: pq.ParquetFile(stream),
        "text": lambda stream: io.TextIOWrapper(stream, encoding="utf-8").readline(),
        "tar": lambda stream: tarfile.open(fileobj=stream, mode="r:*"),  # noqa: SIM115
        "lines": lambda stream: next(iter(stream)),
        "seek": lambda stream: stream.seek(0, 2),
    }
    for name, read in readers.items():
        with pytest.raises(FileNotFoundError), fs.open_input(gone) as stream:
            read(stream)
            pytest.fail(f"{name}: read a missing object")
    assert fs.read_bytes(f"{bucket}/here.json") == b"{}"  # a present one reads as before
    with fs.open_input(f"{bucket}/here.json") as stream:
        assert list(stream) == [b"{}"] and stream.tell() == 2


@pytest.mark.slow
def test_a_build_in_gcs_equals_the_build_on_disk_and_reruns_nothing(
    gcs,
    served,  # noqa: F811 (the fixture imported above)
    gcs_environment,
    tmp_path,
):
    bucket = gcs.bucket("openwit-whole-build")
    in_bucket, on_disk, remote_eval = configs_in_bucket_and_on_disk(served, bucket, tmp_path)
    queries = f"{bucket}/queries.parquet"
    # The bucket's build on openwit's worker pool: its workers reach the bucket themselves.
    pool = {k: v for k, v in gcs_environment.items() if k != "OPENWIT_WORKERS"}
    first, remote_build = built_in_bucket_and_on_disk(
        in_bucket, on_disk, bucket, tmp_path, gcs_environment, bucket_env=pool
    )
    assert f"report: {bucket}/build/report/index.html" in first.stdout
    facts = fs.read_json(f"{bucket}/build/report/report.json")
    assert facts["queries"]["list"] == queries
    on_disk_facts = fs.read_json(tmp_path / "disk" / "report" / "report.json")
    # the list's size, read from the bucket's list as from a local one
    assert facts["queries"]["list_size"] == on_disk_facts["queries"]["list_size"] > 0
    before = gcs.objects(bucket, "build/")
    assert any(name.startswith("build/shards/") for name in before)

    again = openwit("build", "--config", str(in_bucket), env=gcs_environment)

    assert again.returncode == 0, again.stderr
    assert again.stderr.count("up to date") == 8
    assert gcs.objects(bucket, "build/") == before  # not one object rewritten

    # The audit reads the shards and the eval set from the bucket, and writes its report
    # into it: the same figures as from the disk build's shards.
    audit = openwit(
        "audit", "--shards", f"{bucket}/build/shards", "--eval", f"shapes={remote_eval}",
        "--out", f"{bucket}/audit", env=gcs_environment,
    )  # fmt: skip
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "Traceback" not in audit.stdout + audit.stderr
    report = fs.read_json(f"{bucket}/audit/audit.json")
    assert report["n_shard_samples"] == remote_build.funnel()["shard"]["out"] > 0
    assert report["sets"][0]["root"] == remote_eval
    assert fs.exists(f"{bucket}/audit/index.html")
