"""The client library each URL scheme needs, and one line when this installation lacks it.

A build directory, an input, a query list or an eval set may be in a bucket: ``s3://``,
``gs://``, ``azfs://``, ``hdfs://`` (Beam's filesystems) or any scheme fsspec knows. Their
clients are optional extras. Without one, Beam and fsspec fail deep inside a build with a
traceback: a ``RuntimeError`` ("GCP dependencies are not installed"), an ``ImportError``,
or a ``NameError`` from Beam's Azure filesystem. :func:`require` says instead, before the
first request, which scheme needs what and how to install it.
"""

from __future__ import annotations

import importlib.util
from functools import cache

from openwit.errors import StorageError

#: Beam's filesystems: scheme -> (the module its client needs, how to install it).
BEAM_CLIENTS = {
    "s3": ("boto3", "pip install 'openwit[aws]'"),
    "gs": ("google.cloud.storage", "pip install 'openwit[gcp]'"),
    "azfs": ("azure.storage.blob", "pip install 'apache-beam[azure]'"),
    "hdfs": ("hdfs", "pip install 'apache-beam[hadoop]'"),
}


def require(scheme: str) -> None:
    """:class:`StorageError` (one line, exit 2) unless URLs of ``scheme`` can be read and
    written here."""
    problem = missing_client(scheme.lower())
    if problem:
        raise StorageError(problem)


@cache
def missing_client(scheme: str) -> str | None:
    """What URLs of ``scheme`` lack here, as a sentence, or None when nothing is missing."""
    if scheme in BEAM_CLIENTS:
        module, install = BEAM_CLIENTS[scheme]
        if _importable(module):
            return None
        return f"{scheme}:// URLs need the {module} client, which is not installed: {install}"
    import fsspec

    try:
        fsspec.get_filesystem_class(scheme)
    except ImportError as exc:  # fsspec knows the scheme; its implementation is not here
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"{scheme}:// URLs need a client that is not installed: {reason}"
    except ValueError:
        known = ", ".join(f"{name}://" for name in BEAM_CLIENTS)
        return (
            f"no filesystem reads {scheme}:// URLs: use a local path, {known} "
            "or a scheme fsspec knows"
        )
    return None


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing or broken
        return False
