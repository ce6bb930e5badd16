"""The build lock: one writer per build directory, on a local disk or in a bucket.

Two schedulers (or a scheduler and a person) must not run builds into one directory at
once. Locally that is an ``fcntl`` lock on ``OUT/.openwit.lock``, which the kernel releases
when the process dies. An object store has no locks, so there the lock is a *lease*: a
small object created only if it does not exist (S3's conditional ``PUT`` with
``If-None-Match: *``), holding its owner and an expiry time, renewed by a background thread
while the build runs (``If-Match`` on its own ETag, so a renewal never overwrites another
owner's lease) and deleted at the end. A lease whose owner died expires (or, on the same
machine, is seen to have no process behind it) and may be taken over, again with
``If-Match`` on the ETag that was read, so two builds cannot both take it.

GCS has the same in generations: the lease is created with ``ifGenerationMatch=0`` (only
if there is no live object), and renewed, taken over and deleted with ``ifGenerationMatch``
on the generation its writer last saw.

Stores without conditional writes (other Beam filesystems) get a best-effort lease: the
object is checked, then written. Two builds started within the same second can both pass;
docs/scale.md says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from openwit import fs
from openwit.errors import StorageError, UserError
from openwit.urls import bucket_and_key

LOCK_NAME = ".openwit.lock"
#: How long a lease lives without renewal; renewed every third of it.
LEASE_SECONDS = 60.0


class LeaseLost(RuntimeError):
    """Another build took the lease (ours expired unrenewed): stop before committing."""


class Lease:
    """A held build lock; :meth:`check` raises :class:`LeaseLost` if it was lost."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.lost: str | None = None

    def check(self) -> None:
        if self.lost:
            raise LeaseLost(self.lost)


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _expired(held: dict[str, Any]) -> bool:
    """Whether a lease may be taken: past its expiry, or held by a process of this machine
    that no longer runs (a build killed a moment ago need not be waited for)."""
    if held.get("expires", 0) <= time.time():
        return True
    host, _, rest = str(held.get("owner", "")).partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


@contextlib.contextmanager
def build_lease(build_url: str, seconds: float = LEASE_SECONDS) -> Iterator[Lease]:
    """Hold the build directory's lock for the duration of the block."""
    url = fs.join(build_url, LOCK_NAME)
    if fs.is_local(url):
        with _local_lock(build_url, url) as lease:
            yield lease
    elif fs.scheme(url) == "s3":
        with _s3_lease(build_url, url, seconds) as lease:
            yield lease
    elif fs.scheme(url) == "gs":
        with _gcs_lease(build_url, url, seconds) as lease:
            yield lease
    else:
        with _best_effort_lease(build_url, url, seconds) as lease:
            yield lease


@contextlib.contextmanager
def _local_lock(build_url: str, url: str) -> Iterator[Lease]:
    import fcntl

    fs.makedirs(build_url)
    with open(fs.local_path(url), "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another openwit build is running in {build_url}") from None
        try:
            yield Lease(url)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _body(owner: str, seconds: float) -> bytes:
    return json.dumps({"owner": owner, "expires": time.time() + seconds}).encode()


def _busy(build_url: str, held: dict[str, Any]) -> UserError:
    until = time.strftime("%H:%M:%S", time.localtime(held.get("expires", 0)))
    return UserError(
        f"another openwit build is running in {build_url} "
        f"(lease held by {held.get('owner', '?')} until {until})"
    )


@contextlib.contextmanager
def _s3_lease(build_url: str, url: str, seconds: float) -> Iterator[Lease]:
    from botocore.exceptions import ClientError

    client = fs.s3_client()
    bucket, key = bucket_and_key(url)
    owner = _owner()

    def refused(exc: ClientError) -> bool:
        return exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412")

    try:
        etag = client.put_object(
            Bucket=bucket, Key=key, Body=_body(owner, seconds), IfNoneMatch="*"
        )["ETag"]
    except ClientError as exc:
        if not refused(exc):
            error = exc.response.get("Error", {})
            raise StorageError(
                f"cannot write to {build_url}: {error.get('Code')}: {error.get('Message')}"
            ) from None
        current = client.get_object(Bucket=bucket, Key=key)
        held = json.loads(current["Body"].read() or b"{}")
        if not _expired(held):
            raise _busy(build_url, held) from None
        try:  # expired: take it over, unless someone else just did
            etag = client.put_object(
                Bucket=bucket, Key=key, Body=_body(owner, seconds), IfMatch=current["ETag"]
            )["ETag"]
        except ClientError as again:
            if refused(again):
                raise _busy(build_url, held) from None
            raise

    lease = Lease(url)

    def renew() -> bool:
        nonlocal etag
        try:
            etag = fs.s3_client().put_object(
                Bucket=bucket, Key=key, Body=_body(owner, seconds), IfMatch=etag
            )["ETag"]
        except ClientError as exc:
            if refused(exc):
                lease.lost = f"the build lease {url} was taken by another build"
                return False
        return True

    def release() -> None:
        if not lease.lost:
            client.delete_object(Bucket=bucket, Key=key)

    with _renewed(renew, release, seconds):
        yield lease


@contextlib.contextmanager
def _gcs_lease(build_url: str, url: str, seconds: float) -> Iterator[Lease]:
    """:func:`_s3_lease` with GCS's generation preconditions (0: no live object)."""
    from google.api_core.exceptions import PreconditionFailed

    from openwit.stores import gcs_bucket

    key = bucket_and_key(url)[1]
    owner = _owner()

    def write(expected: int) -> int | None:
        """Write our lease if the live generation is ``expected``; its new generation, or
        None when the store refused (another build's lease is there)."""
        blob = gcs_bucket(url).blob(key)
        with fs.store_errors(url, "write"):
            try:
                blob.upload_from_string(
                    _body(owner, seconds), "application/json", if_generation_match=expected
                )
            except PreconditionFailed:
                return None
        return int(blob.generation)

    generation = write(0)
    if generation is None:
        held: dict[str, Any] = {}
        with fs.store_errors(url, "read"):
            current = gcs_bucket(url).get_blob(key)
            live = int(current.generation) if current is not None else 0
            if current is not None:  # else given back a moment ago: free to take
                held = json.loads(current.download_as_bytes() or b"{}")
        if held and not _expired(held):
            raise _busy(build_url, held)
        # free or expired: take it, unless someone else just did
        generation = write(live)
        if generation is None:
            raise _busy(build_url, held)

    lease = Lease(url)

    def renew() -> bool:
        nonlocal generation
        renewed = write(generation)
        if renewed is None:
            lease.lost = f"the build lease {url} was taken by another build"
            return False
        generation = renewed
        return True

    def release() -> None:
        if not lease.lost:
            gcs_bucket(url).blob(key).delete(if_generation_match=generation)

    with _renewed(renew, release, seconds):
        yield lease


@contextlib.contextmanager
def _renewed(
    renew: Callable[[], bool], release: Callable[[], None], seconds: float
) -> Iterator[None]:
    """Call ``renew`` every third of ``seconds`` (until it returns False) while the block runs,
    then ``release``. A renewal or a release that fails (a network blip) is not an error:
    the next beat tries again, and an unreleased lease expires."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(seconds / 3):
            try:
                if not renew():
                    return
            except Exception:
                continue

    renewer = threading.Thread(target=beat, name="openwit-lease", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
        with contextlib.suppress(Exception):
            release()


@contextlib.contextmanager
def _best_effort_lease(build_url: str, url: str, seconds: float) -> Iterator[Lease]:
    try:
        held = fs.read_json(url)
    except (FileNotFoundError, OSError, ValueError):
        held = None
    if held and not _expired(held):
        raise _busy(build_url, held)
    owner = _owner()
    fs.write_bytes(url, _body(owner, seconds))

    def renew() -> bool:
        fs.write_bytes(url, _body(owner, seconds))
        return True

    with _renewed(renew, lambda: fs.delete([url]), seconds):
        yield Lease(url)
