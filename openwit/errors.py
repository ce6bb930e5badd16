"""Exceptions that carry a message meant for the person at the terminal.

A ``UserError`` is a mistake the user can fix (bad config, missing file): the CLI prints its
message on one line and exits 2, never a traceback. So are a full or read-only disk
(:func:`storage_error`) and a store the command cannot use: no credentials, no route, a
refusal (:func:`access_error`). Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import re


class UserError(Exception):
    """A problem with the user's input; the message is shown as is, exit code 2."""

    exit_code = 2


class ConfigError(UserError):
    """The config file or a CLI override is invalid."""


class WorkerLost(UserError):
    """A worker process of openwit's local pool ended while a build was using it (killed
    by the kernel for memory, say). Exit 1: nothing was wrong with the input; the stage's
    finished units are kept for ``--resume``."""

    exit_code = 1

    @classmethod
    def of(cls, what: str, pid: int, exit_code: int | None = None) -> WorkerLost:
        """The one line for process ``pid`` (``what`` it was) that ended, with the signal
        that killed it when its exit code says (a negative code, as ``Popen`` gives)."""
        how = "ended"
        if exit_code is not None and exit_code < 0:
            how = f"killed by signal {-exit_code}"
            if exit_code == -9:
                how += " (SIGKILL: the kernel's out-of-memory killer, or a user)"
        lost = cls(
            f"{what} (pid {pid}) {how} during the build; the finished work units are kept: "
            "rerun with --resume to go on"
        )
        lost.what_happened = f"{what} (pid {pid}) {how}"
        return lost

    #: The loss without the advice (the runner first resumes the stage by itself).
    what_happened: str = "a worker of openwit's local pool ended"


class FunnelLawError(Exception):
    """The per-stage record counts do not reconcile: a record was lost or invented.

    Not a ``UserError``: it means a stage has a bug, and the build must not be marked
    complete.
    """


#: errno values that say the storage refuses a write: read-only, not permitted, full.
READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_ERRNO_IN_TEXT = re.compile(r"\[Errno (\d+)\]")


class StorageError(UserError):
    """The build directory's storage refused a write or a read: read-only, not permitted,
    a bucket that refuses (exit 2, the user picks another place or fixes the rights) or
    full (exit 1: nothing was wrong with the input). The message names the file or URL and
    the reason, on one line."""


def storage_errno(exc: BaseException) -> tuple[int, str | None] | None:
    """The errno (and file name, if known) of a read-only or full storage behind ``exc``.

    Looks through the exceptions ``exc`` was raised from or while handling, and through
    their messages: Beam re-raises a worker's ``OSError`` as a ``RuntimeError`` whose text
    is all that is left of it on some runners.
    """
    wanted = READ_ONLY_ERRNOS | FULL_ERRNOS
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in wanted:
            return current.errno, current.filename
        found = _ERRNO_IN_TEXT.search(str(current))
        if found and int(found.group(1)) in wanted:
            return int(found.group(1)), None
        current = current.__cause__ or current.__context__
    return None


def storage_error(exc: BaseException, out: str) -> StorageError | None:
    """One line for a write that failed because the storage of build directory ``out`` is
    read-only or full, or None when ``exc`` is something else."""
    found = storage_errno(exc)
    if found is None:
        return None
    code, filename = found
    if code in FULL_ERRNOS:
        where = f"device writing {filename}" if filename else f"the device of {out}"
        error = StorageError(
            f"no space left on {where}; the stages committed in {out} before are intact: "
            "free some space and run the command again (--resume keeps finished work)"
        )
        error.exit_code = 1
        return error
    if code == errno.EROFS:
        return StorageError(
            f"cannot write {filename or out}: read-only file system; choose a writable --out"
        )
    return StorageError(f"permission denied: {filename or out}")


#: Exceptions of the stores' clients (botocore, google-auth), by class name so that neither
#: needs importing: no credentials, or credentials that cannot be used.
_NO_CREDENTIALS = frozenset(
    {
        "NoCredentialsError",
        "PartialCredentialsError",
        "CredentialRetrievalError",
        "DefaultCredentialsError",
        "RefreshError",
    }
)
#: The store cannot be reached at all (a wrong endpoint, no route, a proxy).
_UNREACHABLE = frozenset({"EndpointConnectionError", "ConnectTimeoutError", "ProxyConnectionError"})
_CREDENTIALS_HINT = (
    "give the store's client credentials (AWS: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
    "AWS_PROFILE or an instance role; Google Cloud: GOOGLE_APPLICATION_CREDENTIALS or "
    "`gcloud auth application-default login`)"
)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc``, what it was raised from or while handling, and the per-path exceptions
    Beam's ``BeamIOError`` keeps (``exception_details``)."""
    seen: dict[int, BaseException] = {}
    pending = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen[id(current)] = current
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
        details = getattr(current, "exception_details", None)
        if isinstance(details, dict):
            pending += [e for e in details.values() if isinstance(e, BaseException)]
    return list(seen.values())


def google_status(exc: BaseException) -> int | None:
    """The HTTP status of a Google client library's error: ``code`` of google.api_core's
    errors, the response's of google-resumable-media's (an upload's); None for any other
    exception (Beam's S3 errors have a ``code`` too, and their own messages)."""
    if not type(exc).__module__.startswith("google."):
        return None
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def google_reason(exc: BaseException) -> str:
    """What GCS said, from a Google client library's error: the ``error.message`` of the
    JSON body (an upload's error carries the whole body and request line in its text)."""
    response = getattr(exc, "response", None)
    try:
        said = response.json()["error"]["message"]  # type: ignore[union-attr]
    except Exception:
        said = None
    if isinstance(said, str) and said:
        return said
    return (str(getattr(exc, "message", "") or exc).splitlines() or [""])[0]


def access_error(exc: BaseException) -> StorageError | None:
    """One line for a bucket the command could not use: no credentials, no route to the
    store, or the store's refusal (botocore's ``ClientError``: ``AccessDenied``,
    ``NoSuchBucket`` ...); None when ``exc`` is none of these."""
    for current in _chain(exc):
        name = type(current).__name__
        first_line = (str(current).splitlines() or [""])[0]
        if name in _NO_CREDENTIALS:
            return StorageError(
                f"no usable credentials for the store: {first_line}; {_CREDENTIALS_HINT}"
            )
        if name in _UNREACHABLE or (
            name == "ConnectionError" and type(current).__module__.startswith("requests")
        ):  # botocore's, or requests' under Google's client
            return StorageError(f"cannot reach the store: {first_line}")
        response = getattr(current, "response", None)
        if name == "ClientError" and isinstance(response, dict) and "Error" in response:
            error = response["Error"]
            operation = getattr(current, "operation_name", "a request")
            return StorageError(
                f"the store refused {operation}: {error.get('Code', '?')}: "
                f"{error.get('Message', '')}".rstrip(": ")
            )
        code = google_status(current)
        if code is not None:  # google.api_core's errors (Forbidden, NotFound ...)
            return StorageError(
                f"the store refused a request: {code} {google_reason(current)}".rstrip()
            )
    return None


def interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is the user's Ctrl-C: Beam re-raises a ``KeyboardInterrupt`` that
    reaches a running step as ``RuntimeError("KeyboardInterrupt [while running ...]")``."""
    return any(isinstance(e, KeyboardInterrupt) for e in _chain(exc))
