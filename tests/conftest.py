"""Shared test set-up: the loopback-only network guard and small helpers."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
NETGUARD_DIR = REPO / "tests" / "netguard"
sys.path.insert(0, str(NETGUARD_DIR))

import openwit_netguard  # noqa: E402

os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(NETGUARD_DIR), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
)
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# Builds in tests run in the test process (in_memory) unless a test asks for openwit's local
# worker pool: starting one per build would add seconds to each of the suite's many small
# builds. tests/foundation/test_workers.py and the runner-independence tests use the pool.
os.environ.setdefault("OPENWIT_WORKERS", "0")
openwit_netguard.install()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with slow tests first, each module's tests in their own order: the suite's
    processes (``make test``, pytest-xdist by module) start on the long modules and end on
    short ones, instead of one process running a long module alone at the end."""

    def module(item: pytest.Item) -> str:
        return item.nodeid.split("::", 1)[0]

    slow = {module(item) for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: module(item) not in slow)


@pytest.fixture(autouse=True)
def no_traffic_outside_loopback(tmp_path_factory: pytest.TempPathFactory):
    """Fail the test if it (or a subprocess it started) tried to leave loopback."""
    log = tmp_path_factory.mktemp("netguard") / "attempts.log"
    os.environ["OPENWIT_NETGUARD_LOG"] = str(log)
    yield
    os.environ.pop("OPENWIT_NETGUARD_LOG", None)
    if log.exists() and log.read_text().strip():
        pytest.fail(f"network traffic outside loopback was attempted:\n{log.read_text()}")


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server on 127.0.0.1, one for the test module (``tests/s3server.py``)."""
    from tests.s3server import s3_server

    with s3_server() as server:
        yield server


def _bucket_name(request: pytest.FixtureRequest) -> str:
    """A bucket name of the test's own (its parameters differ in the node id's digest)."""
    import hashlib
    import re

    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    return f"openwit-{name}-{hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:8]}"


@pytest.fixture
def bucket(s3, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """A new bucket named after the test (``s3://openwit-...``), with the server's endpoint
    and credentials in the environment of the test and of every process it starts."""
    from openwit import fs

    for key, value in s3.environment().items():
        monkeypatch.setenv(key, value)
    fs.configure({})
    return s3.bucket(_bucket_name(request))


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory):
    """A GCS emulator on 127.0.0.1, one for the test module (``tests/gcsserver.py``)."""
    pytest.importorskip("google.cloud.storage", reason="the gcp client is not installed")
    pytest.importorskip("gcp_storage_emulator", reason="gcp-storage-emulator is not installed")
    from tests.gcsserver import gcs_server

    with gcs_server(tmp_path_factory.mktemp("gcloud-config")) as server:
        yield server


@pytest.fixture
def gcs_environment(gcs, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The emulator's settings in the environment of the test and of every process it
    starts (and no key file of this machine's): what ``openwit`` subprocesses get."""
    from openwit import fs

    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    for key, value in gcs.environment().items():
        monkeypatch.setenv(key, value)
    fs.configure({})
    return {**os.environ}


@pytest.fixture
def gcs_bucket(gcs, gcs_environment, request: pytest.FixtureRequest) -> str:
    """As :func:`bucket`, in the GCS emulator (``gs://openwit-...``)."""
    return gcs.bucket(_bucket_name(request))


@pytest.fixture(params=["s3", "gs"])
def any_bucket(request: pytest.FixtureRequest) -> str:
    """A new bucket of each store the tests have a server for: a test of code that only
    goes through ``openwit.fs`` runs once per store."""
    return request.getfixturevalue("bucket" if request.param == "s3" else "gcs_bucket")


@pytest.fixture
def stored_keys(request: pytest.FixtureRequest):
    """The keys under a URL of a test bucket as its server lists them (not through
    ``openwit.fs``, the code under test): ``stored_keys("s3://b/runs/")``."""

    def keys(url: str) -> set[str]:
        bucket, _, prefix = url.split("://", 1)[1].partition("/")
        if url.startswith("s3://"):
            return set(request.getfixturevalue("s3").keys(bucket, prefix))
        return set(request.getfixturevalue("gcs").objects(f"gs://{bucket}", prefix))

    return keys


@pytest.fixture
def stored_versions(request: pytest.FixtureRequest):
    """Each object under a URL of a test bucket with what changes when it is rewritten
    (S3: size, ETag and time; GCS: size and generation), as its server lists them."""

    def versions(url: str) -> dict[str, tuple]:
        server, bucket, prefix = _server_and_key(request, url)
        if url.startswith("s3://"):
            return server.versions(bucket, prefix)
        return server.objects(f"gs://{bucket}", prefix)

    return versions


def _server_and_key(request: pytest.FixtureRequest, url: str) -> tuple[Any, str, str]:
    bucket, _, key = url.split("://", 1)[1].partition("/")
    return request.getfixturevalue("s3" if url.startswith("s3://") else "gcs"), bucket, key


@pytest.fixture
def stored_bytes(request: pytest.FixtureRequest):
    """An object of a test bucket as its server returns it (not through ``openwit.fs``):
    ``stored_bytes("gs://b/build/manifest.json")``."""

    def read(url: str) -> bytes:
        server, bucket, key = _server_and_key(request, url)
        return server.read(bucket, key)

    return read


@pytest.fixture
def store_bytes(request: pytest.FixtureRequest):
    """Write an object of a test bucket through its server (as another program would):
    ``store_bytes("s3://b/build/.openwit.lock", data)``."""

    def write(url: str, data: bytes) -> None:
        server, bucket, key = _server_and_key(request, url)
        server.write(bucket, key, data)

    return write
