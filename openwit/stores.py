"""The stores' clients behind :mod:`openwit.fs`: Beam's FileSystems configured with the
build's options, this thread's S3 clients (:mod:`openwit.s3clients`), fsspec for schemes
Beam lacks, and the one check a bucket gets before a process first uses it (:func:`probe`).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from openwit import s3clients, url_clients
from openwit.urls import bucket_and_key, is_local, scheme


def configure(beam_options: dict[str, Any] | None) -> None:
    """Give Beam's filesystems the build's options (``s3_endpoint_url``, credentials, GCP
    project ...). Beam sets them itself where it builds a pipeline; the build's DoFns call
    this in ``setup`` so every worker, on every runner, reaches the same buckets."""
    from openwit.logs import quiet_beam_logging

    quiet_beam_logging()
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    FileSystems.set_options(PipelineOptions.from_dictionary(dict(beam_options or {})))
    s3clients.set_options(beam_options)
    global _gcs_options_version
    _gcs_options_version += 1  # every thread's GCS client is made again, for these options


def beam_fs(url: str) -> Any:
    """Beam's FileSystems when it serves ``url``'s scheme, else None."""
    from openwit.logs import quiet_beam_logging

    quiet_beam_logging()
    from apache_beam.io.filesystems import FileSystems

    if scheme(url) in url_clients.BEAM_CLIENTS:
        url_clients.require(scheme(url))
    try:
        FileSystems.get_filesystem(url)
    except ValueError:  # no Beam filesystem for this scheme
        return None
    _configured()
    if scheme(url) == "gs":
        _gcs_bucket_tried(url)
    return FileSystems


def _configured() -> None:
    """Configure Beam's filesystems with the environment's options if nobody did (a
    worker, a script): before a client is made, as configuring changes what it is made for."""
    from apache_beam.io.filesystems import FileSystems

    if FileSystems._pipeline_options is None:
        configure({})


def s3io(url: str) -> Any:
    """This thread's Beam S3IO (:mod:`openwit.s3clients`), the filesystems configured, for
    ``url``'s bucket once this process has tried it (:func:`bucket_tried`)."""
    url_clients.require("s3")
    _configured()
    bucket_tried(url)
    return s3clients.s3io()


#: The S3 buckets this process has reached (with the pid: a forked child has its own client).
_tried_buckets: set[tuple[int, str]] = set()


def bucket_tried(url: str) -> None:
    """Before this process's first request to a bucket through Beam's S3 client, one
    ``HEAD`` through boto3 (:func:`probe`): Beam retries a missing credential or an
    unreachable endpoint with backoff for minutes, so a command hung there before it
    failed; now it fails at once, with the CLI's one line."""
    key = (os.getpid(), f"s3://{bucket_and_key(url)[0]}")
    if key not in _tried_buckets:
        probe(url)
        _tried_buckets.add(key)


def _gcs_bucket_tried(url: str) -> None:
    """As :func:`bucket_tried`, for GCS: Google's client retries a refused connection for
    two minutes (measured: 115 s before a build into an unreachable endpoint failed). One
    request without retries says at once whether the bucket can be reached; its absence
    and a refusal come from the store as they would later (404, 403)."""
    bucket = bucket_and_key(url)[0]
    key = (os.getpid(), f"gs://{bucket}")
    if key in _tried_buckets:
        return
    try:
        gcs_client().bucket(bucket).blob("openwit-probe").exists(retry=None, timeout=30)
    except Exception as exc:
        if _transient(exc):
            return  # the requests that follow retry it, as they would anyway
        from openwit.errors import StorageError, google_reason

        reason = f"{type(exc).__name__}: {google_reason(exc)}"
        raise StorageError(f"cannot use {url}: {reason}") from None
    _tried_buckets.add(key)


def _transient(exc: BaseException) -> bool:
    """Whether a request may succeed when made again: the store busy or failing (408, 429,
    5xx), a connection cut or a read timed out; not a refusal (401, 403), nor a connection
    that could not be made (refused, no route, no such host, or a connect timeout)."""
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code in (408, 429) or code >= 500
    name = type(exc).__name__
    if name == "ConnectTimeout" or "Failed to establish a new connection" in str(exc):
        return False
    return name in ("ConnectionError", "ReadTimeout", "Timeout", "ChunkedEncodingError")


def s3_client() -> Any:
    """This thread's boto3 S3 client (for conditional writes, which Beam does not offer)."""
    url_clients.require("s3")
    _configured()
    return s3clients.client()


_gcs_clients = threading.local()
_gcs_options_version = 0


def gcs_client() -> Any:
    """This thread's Google Cloud Storage client, made as Beam makes its own (credentials,
    project and emulator from the filesystems' options and the environment); for the
    requests Beam's GCS filesystem makes in two (a small upload)."""
    url_clients.require("gs")
    _configured()
    made_for = (os.getpid(), _gcs_options_version)
    client = getattr(_gcs_clients, "client", None)
    if client is None or _gcs_clients.made_for != made_for:
        from apache_beam.io.filesystems import FileSystems
        from apache_beam.io.gcp import gcsio

        client = gcsio.create_storage_client(FileSystems._pipeline_options)
        _gcs_clients.client, _gcs_clients.made_for = client, made_for
    return client


def gcs_bucket(url: str) -> Any:
    """This thread's client's handle on ``url``'s GCS bucket, once this process has tried
    the bucket (:func:`_gcs_bucket_tried`): for what Beam's GCS filesystem does not offer
    (a small upload in one request, writes with generation preconditions)."""
    bucket = gcs_client().bucket(bucket_and_key(url)[0])
    _gcs_bucket_tried(url)
    return bucket


def fsspec_fs(url: str) -> Any:
    import fsspec

    url_clients.require(scheme(url))

    return fsspec.core.url_to_fs(url)[0]


#: What S3 answers for an object that is not there (a HEAD says 404 without a body).
MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


def probe(url: str | Path) -> None:
    """Raise now what using ``url`` would raise later: a missing client, no credentials, an
    unreachable endpoint, a refusal. A missing object is fine. For S3 one ``HEAD`` through
    boto3, which fails at once where Beam's S3 client retries for minutes."""
    url = str(url)
    if is_local(url):
        return
    if scheme(url) == "s3":
        from botocore.exceptions import ClientError

        bucket, key = bucket_and_key(url)
        try:
            s3_client().head_object(Bucket=bucket, Key=key or "/")
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) not in MISSING_CODES:
                raise
        return
    found = beam_fs(url)
    if found is not None:
        found.exists(url)
    else:
        fsspec_fs(url).exists(url)
