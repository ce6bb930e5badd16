"""The lease's algorithm (``openwit.lease``) against interleavings a real store gives rarely.

The stores themselves are tested in test_object_store.py (S3 and the GCS emulator, per
store). Here the other build's moves must land between two of ours, exactly: the object is
:class:`ConditionalObject`, which keeps what S3 and GCS promise of one object (a new version
per write; create only if there is none; replace and delete only at the version named) and
runs a test's move just before a given operation.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from openwit import lease as leases
from openwit.errors import StorageError, UserError
from openwit.lease import LeaseLost, _conditional_lease, _take

BUILD = "gs://b/build"
URL = f"{BUILD}/.openwit.lock"


class ConditionalObject:
    def __init__(self) -> None:
        self.version = 0
        self.body: bytes | None = None
        self.before: dict[str, list[Callable[[], None]]] = {}
        self.calls: list[str] = []
        self.failing: set[str] = set()  # operations the store fails (as an outage would)

    def move_before(self, operation: str, move: Callable[[], None]) -> None:
        """Run ``move`` (another build's write) just before our next ``operation``."""
        self.before.setdefault(operation, []).append(move)

    def _enter(self, operation: str) -> None:
        self.calls.append(operation)
        moves = self.before.get(operation)
        if moves:
            moves.pop(0)()
        if operation in self.failing:
            raise StorageError(f"cannot {operation} {URL}: the store did not answer")

    def put(self, body: bytes | None) -> str:
        self.version += 1
        self.body = body
        return str(self.version)

    def create(self, body: bytes) -> str | None:
        self._enter("create")
        return None if self.body is not None else self.put(body)

    def read(self) -> tuple[str, bytes] | None:
        self._enter("read")
        return None if self.body is None else (str(self.version), self.body)

    def replace(self, version: str, body: bytes) -> str | None:
        self._enter("replace")
        if self.body is None or str(self.version) != version:
            return None
        return self.put(body)

    def delete(self, version: str) -> None:
        self._enter("delete")
        if self.body is not None and str(self.version) == version:
            self.body = None


def lease_body(owner: str, expires_in: float) -> bytes:
    return json.dumps({"owner": owner, "expires": time.time() + expires_in}).encode()


def owner_of(store: ConditionalObject) -> str | None:
    return json.loads(store.body)["owner"] if store.body else None


def test_an_expired_lease_taken_by_another_build_between_our_read_and_write_is_refused():
    store = ConditionalObject()
    store.put(lease_body("crashed:1:a", -5))
    store.move_before("replace", lambda: store.put(lease_body("quicker:2:b", 60)))

    with pytest.raises(UserError, match="lease held by quicker:2:b"):
        _take(BUILD, store, "us:3:c", 60)
    assert owner_of(store) == "quicker:2:b"  # theirs, untouched
    assert store.calls == ["create", "read", "replace", "create", "read"]


def test_a_lease_given_back_between_our_create_and_read_is_taken():
    store = ConditionalObject()
    store.put(lease_body("finishing:1:a", 60))
    store.move_before("read", lambda: setattr(store, "body", None))  # it gives it back

    version = _take(BUILD, store, "us:3:c", 60)

    assert owner_of(store) == "us:3:c" and version == str(store.version)


def test_a_create_whose_answer_was_lost_finds_its_own_lease():
    """The client's retry of a create that did go through: the object is ours."""
    store = ConditionalObject()
    store.move_before("create", lambda: store.put(lease_body("us:3:c", 60)))

    version = _take(BUILD, store, "us:3:c", 60)

    assert version == str(store.version) and owner_of(store) == "us:3:c"


def test_builds_that_keep_taking_it_first_make_us_give_up_with_one_line():
    store = ConditionalObject()
    store.put(lease_body("crashed:1:a", -5))
    for n in range(5):  # each time we try to take the expired lease, another build did
        store.move_before("replace", lambda n=n: store.put(lease_body(f"other:{n}:x", -5)))

    with pytest.raises(UserError, match="another openwit build is running in gs://b/build"):
        _take(BUILD, store, "us:3:c", 60)


def test_a_renewal_whose_answer_was_lost_keeps_the_lease(monkeypatch):
    monkeypatch.setattr(leases, "_owner", lambda: "us:3:c")
    store = ConditionalObject()
    with _conditional_lease(BUILD, URL, store, 1.5) as lease:  # renewed every 0.5 s
        # our renewal goes through, its answer is lost, and the retry is refused
        store.move_before("replace", lambda: store.put(lease_body("us:3:c", 60)))
        deadline = time.monotonic() + 10
        while store.calls.count("replace") < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert store.calls.count("replace") >= 2 and not store.before["replace"]
        assert store.calls[store.calls.index("replace") + 1] == "read"  # it looked
        lease.check()  # not lost
    assert store.body is None  # given back


def test_a_build_whose_lease_was_taken_stops_and_leaves_the_taker_s_lease(monkeypatch):
    monkeypatch.setattr(leases, "_owner", lambda: "us:3:c")
    store = ConditionalObject()
    with _conditional_lease(BUILD, URL, store, 0.3) as lease:
        store.put(lease_body("taker:9:z", 60))
        deadline = time.monotonic() + 5
        while not lease.lost and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(LeaseLost):
            lease.check()
    assert owner_of(store) == "taker:9:z"
    assert "delete" not in store.calls


def test_a_lease_the_store_cannot_renew_is_lost_before_it_could_expire(monkeypatch):
    """Another build took the lease and the store then fails every read and write of it:
    no renewal can say so, but past two thirds of the lease's life without one the build
    stops at its next commit (another build may hold it by then)."""
    monkeypatch.setattr(leases, "_owner", lambda: "us:3:c")
    store = ConditionalObject()
    with _conditional_lease(BUILD, URL, store, 0.6) as lease:
        store.put(lease_body("taker:9:z", 60))
        store.failing = {"read", "replace"}
        time.sleep(0.6)  # past 0.4 s without a renewal
        assert lease.lost is None  # no renewal could tell
        with pytest.raises(LeaseLost, match="could not be renewed in time"):
            lease.check()
        store.failing = set()
    assert owner_of(store) == "taker:9:z"
