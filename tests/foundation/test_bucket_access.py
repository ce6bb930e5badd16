"""A store the command cannot use: a scheme whose client is not installed, no credentials,
a store that refuses. Each is one line naming what to do, exit 2, never a traceback.

No test sends a request anywhere but 127.0.0.1: the missing clients are found before any
request, and the credentials test talks to the tests' S3 server.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from openwit import fs, url_clients
from openwit.cli import main
from openwit.console import error
from openwit.errors import StorageError, access_error
from tests.foundation.test_hostile_cli import build_dir_with_pool, one_error_line
from tests.s3server import s3_server


@pytest.fixture
def fresh_client_checks():
    url_clients.missing_client.cache_clear()
    yield
    url_clients.missing_client.cache_clear()


def build_out(tmp_path, capsys, out: str) -> str:
    """``openwit build`` of a small pool into ``out``: its one error line (exit 2)."""
    config = build_dir_with_pool(tmp_path)
    assert main(["build", "--config", str(config), "--set", f"out={out}"]) == 2
    return one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("scheme", "install"),
    [
        ("s3", "pip install 'openwit[aws]'"),
        ("gs", "pip install 'openwit[gcp]'"),
        ("azfs", "pip install 'apache-beam[azure]'"),
        ("hdfs", "pip install 'apache-beam[hadoop]'"),
    ],
)
def test_a_bucket_whose_client_is_not_installed_is_one_line_naming_the_extra(
    tmp_path, capsys, monkeypatch, fresh_client_checks, scheme, install
):
    # Whatever this machine has installed: the client's module is made one that is absent.
    monkeypatch.setitem(url_clients.BEAM_CLIENTS, scheme, ("openwit_absent_client", install))
    line = build_out(tmp_path, capsys, f"{scheme}://bucket/build")
    assert line.startswith(f"openwit: error: {scheme}:// URLs need the openwit_absent_client")
    assert line.endswith(install)  # brackets and all: the message is not read as markup


@pytest.mark.parametrize(("scheme", "module"), [("gs", "google.cloud.storage"), ("azfs", "azure")])
def test_beams_own_failure_without_the_client_never_reaches_the_user(
    tmp_path, capsys, fresh_client_checks, scheme, module
):
    """Without these clients Beam raised a RuntimeError (GCS) or a NameError (Azure) from
    inside the lease's first read."""
    if url_clients.missing_client(scheme) is None:
        pytest.skip(f"{module} is installed here: Beam would try to reach the store")
    line = build_out(tmp_path, capsys, f"{scheme}://bucket/build")
    assert f"{scheme}:// URLs need the" in line and "not installed" in line


def test_a_scheme_no_filesystem_knows_is_one_line(tmp_path, capsys, fresh_client_checks):
    line = build_out(tmp_path, capsys, "nosuchstore://bucket/build")
    assert "no filesystem reads nosuchstore:// URLs" in line


def test_a_scheme_fsspec_knows_without_its_package_names_the_package(
    tmp_path, capsys, fresh_client_checks
):
    if url_clients.missing_client("gcs") is None:
        pytest.skip("gcsfs is installed here")
    line = build_out(tmp_path, capsys, "gcs://bucket/build")
    assert "gcs:// URLs need a client that is not installed" in line and "gcsfs" in line


def failed_command_line(tmp_path, args: list[str], **aws: str) -> str:
    """``openwit ARGS`` in a process whose only AWS settings are ``aws`` (no
    instance-metadata request for a role either): exit 2, its one line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true", **aws)
    result = subprocess.run(
        [sys.executable, "-m", "openwit.cli", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    return one_error_line(result.stderr)


def failed_build_line(tmp_path, setting: str, **aws: str) -> str:
    """``openwit build --set SETTING`` of a small pool: exit 2, its one line."""
    config = build_dir_with_pool(tmp_path)
    return failed_command_line(
        tmp_path, ["build", "--config", str(config), "--set", setting], **aws
    )


def no_credentials(tmp_path, endpoint: str) -> dict[str, str]:
    """An S3 endpoint (the tests' server: the only store a test may reach), no keys."""
    none = str(tmp_path / "none")
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_SHARED_CREDENTIALS_FILE": none,
        "AWS_CONFIG_FILE": none,
    }


def test_a_bucket_without_credentials_is_one_line_saying_how_to_give_them(tmp_path):
    with s3_server() as server:
        server.client().create_bucket(Bucket="nocredentials")
        line = failed_build_line(
            tmp_path, "out=s3://nocredentials/build", **no_credentials(tmp_path, server.endpoint)
        )
        assert "no usable credentials for the store: Unable to locate credentials" in line
        assert "AWS_ACCESS_KEY_ID" in line
        listing = server.client().list_objects_v2(Bucket="nocredentials")
        assert listing.get("KeyCount", 0) == 0  # nothing written


@pytest.mark.parametrize(
    "setting",
    [
        "inputs=[{path: s3://nocredentials/pool.jsonl}]",
        "inputs=[{path: 's3://nocredentials/pools/*.jsonl'}]",
        "queries=s3://nocredentials/queries.parquet",
        "dedup.eval_sets={shapes: s3://nocredentials/eval}",
    ],
)
def test_what_a_local_build_reads_from_a_bucket_without_credentials_fails_at_once(
    tmp_path, setting
):
    """Beam's S3 client retries a missing credential with backoff for minutes: a build
    whose inputs, query list or eval set is in a bucket hung there before failing."""
    with s3_server() as server:
        line = failed_build_line(tmp_path, setting, **no_credentials(tmp_path, server.endpoint))
    assert "no usable credentials for the store" in line


@pytest.mark.parametrize(
    "args",
    [
        ["audit", "--shards", "shards", "--eval", "e=eval", "--out", "s3://nocredentials/audit"],
        [
            "eval",
            "--checkpoint",
            "s3://nocredentials/ck.pt",
            "--model",
            "openwit-tiny",
            "--eval",
            "e=eval",
            "--out",
            "eval.json",
        ],
        [
            "train",
            "--train-data",
            "shards",
            "--model",
            "openwit-tiny",
            "--out",
            "s3://nocredentials/runs/r1",
            "--steps",
            "1",
        ],
        ["queries", "show", "s3://nocredentials/queries.parquet"],
        ["build", "--config", "s3://nocredentials/build.yaml"],
    ],
    ids=["audit-out", "eval-checkpoint", "train-out", "queries-show", "build-config"],
)
def test_every_command_with_a_bucket_it_cannot_use_is_one_line(s3, tmp_path, args):
    """The commands that took bucket outputs and inputs last: the same one line as a build,
    before any work (the audit's eval set and the run's shards are not even looked at)."""
    line = failed_command_line(tmp_path, args, **no_credentials(tmp_path, s3.endpoint))
    assert "no usable credentials for the store" in line


def test_access_errors_are_found_inside_what_beam_wraps_them_in():
    from apache_beam.io.filesystem import BeamIOError
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    wrapped = BeamIOError("Open operation failed", {"s3://b/k": NoCredentialsError()})
    assert "no usable credentials" in str(access_error(wrapped))
    refused = ClientError(
        {"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "GetObject"
    )
    try:
        try:
            raise refused
        except ClientError as exc:
            raise RuntimeError("a stage failed") from exc
    except RuntimeError as outer:
        problem = access_error(outer)
    assert isinstance(problem, StorageError)
    assert str(problem) == "the store refused GetObject: AccessDenied: Access Denied"
    unreachable = EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
    assert str(access_error(unreachable)).startswith("cannot reach the store: ")
    assert access_error(ValueError("a bug")) is None


def test_google_clients_refusals_and_lost_connections_are_one_line():
    google = pytest.importorskip("google.api_core.exceptions")
    from apache_beam.io.filesystem import BeamIOError
    from requests.exceptions import ConnectionError as RequestsConnectionError

    forbidden = google.Forbidden("GET gs://b/k: caller lacks storage.objects.get access")
    wrapped = BeamIOError("Match operation failed", {"gs://b/*": forbidden})
    assert str(access_error(wrapped)) == (
        "the store refused a request: 403 GET gs://b/k: caller lacks storage.objects.get access"
    )
    refused = RequestsConnectionError("Failed to establish a new connection: Connection refused")
    assert str(access_error(refused)).startswith("cannot reach the store: ")
    assert access_error(ConnectionResetError("a worker's own socket")) is None


def test_a_gcs_buckets_first_request_fails_now_only_for_what_a_retry_cannot_mend():
    """The probe of a GCS bucket (no retries) raises for a refusal or a connection that
    cannot be made; for what Google's client would retry (busy, failing, a connection cut)
    it leaves the bucket to the requests that follow."""
    google = pytest.importorskip("google.api_core.exceptions")
    from requests.exceptions import ConnectionError as RequestsConnectionError
    from requests.exceptions import ConnectTimeout, ReadTimeout

    from openwit.stores import _transient

    assert _transient(google.ServiceUnavailable("busy"))
    assert _transient(google.TooManyRequests("slow down"))
    assert _transient(google.InternalServerError("oops"))
    assert _transient(ReadTimeout("read timed out"))
    assert _transient(RequestsConnectionError("('Connection aborted.', RemoteDisconnected())"))
    assert not _transient(google.Forbidden("no"))
    assert not _transient(google.Unauthorized("no"))
    assert not _transient(ConnectTimeout("connect timed out"))
    assert not _transient(
        RequestsConnectionError("Failed to establish a new connection: [Errno 111] refused")
    )


def test_error_lines_show_square_brackets_as_written(capsys):
    error("inputs[0].path: no such file: s3://b/run[bold]/x.jsonl; pip install 'openwit[gcp]'")
    shown = capsys.readouterr().err
    assert "run[bold]/x.jsonl; pip install 'openwit[gcp]'" in shown


def test_local_and_fsspec_memory_urls_need_no_extra(fresh_client_checks):
    assert url_clients.missing_client("memory") is None
    fs.write_text("memory://openwit-test/x.txt", "x")
    assert fs.read_text("memory://openwit-test/x.txt") == "x"


def test_inputs_in_a_bucket_at_an_endpoint_nobody_answers_fail_at_once(tmp_path):
    line = failed_build_line(
        tmp_path,
        "inputs=[{path: s3://pool/p.jsonl}]",
        AWS_ENDPOINT_URL="http://127.0.0.1:9",  # loopback's discard port: nothing listens
        AWS_ACCESS_KEY_ID="openwit-test",
        AWS_SECRET_ACCESS_KEY="openwit-test",
    )
    assert line.endswith(
        'cannot reach the store: Could not connect to the endpoint URL: "http://127.0.0.1:9/pool/p.jsonl"'
    )
