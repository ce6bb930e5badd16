"""S3 clients for a build's files in ``s3://`` buckets; :mod:`openwit.fs` reads and writes
through them (and hands the build lock its conditional writes' client), once Beam's
filesystems have their options.

One boto3 client a process, shared by its threads, and a Beam ``S3IO`` wrapper a thread
around it: boto3's low-level clients are thread-safe, Beam's wrapper (which keeps its open
download stream) is not, and Beam's ``FileSystems`` would build a new boto3 client for every
open, list or delete. A client is made for the build's options and the environment's
endpoint, region and keys, and again in a forked worker (it must not share its parent's
pooled connections).
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

_THREAD = threading.local()
_LOCK = threading.Lock()
#: Connections the shared client keeps open (urllib3 discards, and warns of, any beyond).
S3_CONNECTIONS = 64
_shared: tuple[tuple[str, ...], Any] | None = None
_options = ""


def _identity() -> tuple[str, ...]:
    """What an S3 client depends on: the build's options and the environment's endpoint,
    region and keys (a test, or a launcher serving two builds, may change either), and the
    process: a worker forked from a process that had a client makes its own, instead of
    sharing that one's pooled connections with its siblings."""
    names = sorted(k for k in os.environ if k.startswith("AWS_"))
    return (str(os.getpid()), _options, *(f"{k}={os.environ[k]}" for k in names))


def s3io() -> Any:
    """Beam's S3IO for this thread, over the process's one boto3 client.

    Beam's ``FileSystems`` builds a new boto3 client for every open, list or delete
    (0.1-0.3 s of CPU each, measured against a local S3 server). Until 2026-12-06 openwit
    kept a client per thread, which still made one for every short-lived thread (a
    progress poller, a bundle's threads): a 43-image build into a bucket spent 60% of its
    CPU samples in ``Client.__init__``. boto3's low-level clients are thread-safe (its
    documentation recommends one shared by threads); Beam's wrapper of one is not (it keeps
    the open download stream), so each thread has a wrapper of its own around the shared
    client: cheap to make.
    """
    identity = _identity()
    mine = getattr(_THREAD, "s3io", None)
    if mine is None or getattr(_THREAD, "identity", None) != identity:
        from apache_beam.io.aws.s3io import S3IO

        mine = _THREAD.s3io = S3IO(client=_thread_client(_shared_boto3(identity)))
        _THREAD.identity = identity
    return mine


def _shared_boto3(identity: tuple[str, ...]) -> Any:
    """The process's boto3 S3 client for these options and credentials, made as Beam's
    ``Client`` makes it, with a connection pool for the threads that share it."""
    global _shared
    shared = _shared
    if shared is not None and shared[0] == identity:
        return shared[1]
    with _LOCK:
        if _shared is None or _shared[0] != identity:
            import boto3
            import botocore.config
            from apache_beam.io.aws.clients import client_options
            from apache_beam.io.filesystems import FileSystems
            from apache_beam.options.pipeline_options import S3Options

            options = FileSystems._pipeline_options  # openwit.fs configured them before
            kwargs = client_options.get_client_kwargs(options, S3Options)
            pool = botocore.config.Config(max_pool_connections=S3_CONNECTIONS)
            kwargs["config"] = kwargs["config"].merge(pool) if kwargs.get("config") else pool
            version = client_options.view_options(options, S3Options).s3_api_version
            client = boto3.session.Session().client("s3", api_version=version, **kwargs)
            _shared = (identity, client)
        return _shared[1]


def _thread_client(boto3_s3: Any) -> Any:
    """Beam's S3 client wrapper around an existing boto3 client (its constructor always
    makes a new one)."""
    from apache_beam.io.aws.clients.s3 import boto3_client

    wrapper = boto3_client.Client.__new__(boto3_client.Client)
    wrapper.client = boto3_s3
    # The download state Beam's constructor sets (apache-beam 2.77-2.78; the object-store
    # tests read through it).
    wrapper._download_request = None
    wrapper._download_stream = None
    wrapper._download_pos = 0
    return wrapper


def client() -> Any:
    """This thread's boto3 S3 client (for conditional writes, which Beam does not offer)."""
    return s3io().client.client


def set_options(beam_options: dict[str, Any] | None) -> None:
    """The build's options, as :func:`openwit.fs.configure` gave them to Beam: a client made
    for other options is replaced on next use."""
    global _options
    _options = json.dumps(beam_options or {}, sort_keys=True, default=str)
