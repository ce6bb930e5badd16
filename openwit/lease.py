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
on the generation its writer last saw (:mod:`openwit.lease_objects` has both stores). A
write whose answer was lost and that is retried finds its own lease there: the owner in the
object (host, pid and a random part) says so, and the build goes on with it.

Stores without conditional writes (other Beam filesystems) get a best-effort lease: the
object is checked, then written. Two builds started within the same second can both pass;
docs/scale.md says so.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from openwit import fs
from openwit.errors import UserError
from openwit.lease_objects import LeaseObject, lease_object

LOCK_NAME = ".openwit.lock"
#: How long a lease lives without renewal; renewed every third of it.
LEASE_SECONDS = 60.0


class LeaseLost(RuntimeError):
    """Another build took the lease (ours expired unrenewed): stop before committing."""


class Lease:
    """A held build lock; :meth:`check` raises :class:`LeaseLost` if it was lost, or if it
    was not renewed in time (``valid_until``, this process's monotonic clock: past it
    another build may have taken it, whether or not a renewal said so)."""

    def __init__(self, url: str, valid_until: float = math.inf) -> None:
        self.url = url
        self.lost: str | None = None
        self.valid_until = valid_until

    def check(self) -> None:
        if self.lost:
            raise LeaseLost(self.lost)
        if time.monotonic() > self.valid_until:
            raise LeaseLost(
                f"the build lease {self.url} could not be renewed in time (the store did "
                "not answer): another build may hold it now"
            )


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _expired(held: dict[str, Any]) -> bool:
    """Whether a lease may be taken: past its expiry, or held by a process of this machine
    that no longer runs (a build killed a moment ago need not be waited for)."""
    expires = held.get("expires", 0)
    if not isinstance(expires, int | float) or expires <= time.time():
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
    elif (store := lease_object(url, build_url, seconds)) is not None:
        with _conditional_lease(build_url, url, store, seconds) as lease:
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
    if not held.get("owner"):
        return UserError(
            f"another openwit build is running in {build_url} (it took the lease just now)"
        )
    until = time.strftime("%H:%M:%S", time.localtime(held.get("expires", 0)))
    return UserError(
        f"another openwit build is running in {build_url} "
        f"(lease held by {held['owner']} until {until})"
    )


@contextlib.contextmanager
def _conditional_lease(
    build_url: str, url: str, store: LeaseObject, seconds: float
) -> Iterator[Lease]:
    """The lease through a store's conditional writes (:mod:`openwit.lease_objects`)."""
    owner = _owner()
    written = time.monotonic()
    version = _take(build_url, store, owner, seconds)
    # Trusted a beat less than its life: clocks of other machines read its expiry.
    lease = Lease(url, valid_until=written + seconds * 2 / 3)

    def renew() -> bool:
        nonlocal version
        written = time.monotonic()
        body = _body(owner, seconds)
        renewed = store.replace(version, body)
        if renewed is None:
            current = store.read()
            if current is None or _held(current[1]).get("owner") != owner:
                lease.lost = f"the build lease {url} was taken by another build"
                return False
            renewed = current[0]  # our write went through; its answer was lost (a retry)
        version = renewed
        lease.valid_until = written + seconds * 2 / 3
        return True

    def release() -> None:
        if not lease.lost:
            store.delete(version)

    with _renewed(renew, release, seconds):
        yield lease


def _take(build_url: str, store: LeaseObject, owner: str, seconds: float) -> str:
    """Create the lease, or take over an expired one: its version.
    Each step is conditional on what the one before saw; a step that finds the object
    changed under it starts again (a few times: each time another build moved first)."""
    held: dict[str, Any] = {}
    for _ in range(5):
        created = store.create(_body(owner, seconds))
        if created is not None:
            return created
        current = store.read()
        if current is None:
            continue  # given back a moment ago: try to create it again
        live, raw = current
        held = _held(raw)
        if held.get("owner") == owner:
            return live  # our create went through; its answer was lost (a retry)
        if not _expired(held):
            raise _busy(build_url, held)
        taken = store.replace(live, _body(owner, seconds))
        if taken is not None:
            return taken
    raise _busy(build_url, held)


def _held(raw: bytes) -> dict[str, Any]:
    """A lease object's contents; anything unreadable counts as an expired lease."""
    try:
        held = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return held if isinstance(held, dict) else {}


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
        held = _held(fs.read_bytes(url))
    except (FileNotFoundError, OSError):
        held = {}
    if held and not _expired(held):
        raise _busy(build_url, held)
    owner = _owner()
    fs.write_bytes(url, _body(owner, seconds))

    def renew() -> bool:
        fs.write_bytes(url, _body(owner, seconds))
        return True

    with _renewed(renew, lambda: fs.delete([url]), seconds):
        yield Lease(url)
