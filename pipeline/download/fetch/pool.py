"""Idle keep-alive connections of the HTTP client, shared by its threads.

A connection goes back into the pool only after a complete 2xx image answer the server
did not mark as its last (the client decides, :meth:`~.client.HttpClient._attempt`). The
pool keeps it under its key, ``(scheme, host as in the Host header and TLS SNI, port)``,
with the address it is connected to; a fetch takes one only for the same key and only if
that address is among the addresses the policy approved for this fetch. TLS connections
are kept wrapped, so a connection never serves another host name.

Limits: ``max_per_key`` idle connections per key (the oldest of the key is closed when a
newer one comes back), ``max_total`` in all (the oldest is closed), and none older than
``idle_s`` (servers close idle connections after a few seconds: Apache after 5 s, nginx
after 75 s). Closing never blocks: sockets are closed outside the lock, without lingering
and without a TLS goodbye.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
from collections.abc import Collection

from openwit.pipeline.download.fetch.policy import IPAddress

#: ``(scheme, host, port)``: ``host`` as it goes into the Host header and TLS SNI.
PoolKey = tuple[str, str, int]

#: Below Apache's 5 s ``KeepAliveTimeout``, the shortest common server default.
IDLE_S = 4.0
MAX_IDLE = 256
MAX_IDLE_PER_KEY = 8


class _Idle:
    """One idle connection: its socket, the address it is connected to, since when idle."""

    __slots__ = ("address", "key", "since", "sock")

    def __init__(self, key: PoolKey, sock: socket.socket, address: IPAddress, since: float):
        self.key = key
        self.sock = sock
        self.address = address
        self.since = since


def close_quietly(sock: socket.socket) -> None:
    """Close ``sock`` at once: no TLS close_notify (that would write), no lingering."""
    with contextlib.suppress(OSError):
        sock.close()


def quiet(sock: socket.socket) -> bool:
    """True when an idle connection has nothing to read, as it should. Readable means the
    server closed it (end of file, reset) or sent bytes nobody asked for: not reusable."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return False
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return not poller.poll(0)
    except (OSError, ValueError):  # closed meanwhile (fileno -1)
        return False


class ConnectionPool:
    """Bounded idle connections by key; thread-safe. ``idle_s`` may be changed (tests)."""

    def __init__(
        self,
        max_per_key: int = MAX_IDLE_PER_KEY,
        max_total: int = MAX_IDLE,
        idle_s: float = IDLE_S,
    ) -> None:
        self.max_per_key = max_per_key
        self.max_total = max_total
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._by_key: dict[PoolKey, list[_Idle]] = {}  # per key, oldest first
        self._all: dict[_Idle, None] = {}  # every idle connection, oldest first

    def __len__(self) -> int:
        with self._lock:
            return len(self._all)

    def put(self, key: PoolKey, sock: socket.socket, address: IPAddress) -> None:
        """Keep ``sock`` (connected to ``address``) for a later fetch of ``key``."""
        if self.max_per_key < 1 or self.max_total < 1:
            close_quietly(sock)
            return
        closing: list[_Idle] = []
        with self._lock:
            now = time.monotonic()
            while self._all:  # reap the expired ones, oldest first
                oldest = next(iter(self._all))
                if now - oldest.since <= self.idle_s:
                    break
                closing.append(self._drop_oldest(oldest))
            entries = self._by_key.setdefault(key, [])
            if len(entries) >= self.max_per_key:
                closing.append(self._forget(entries.pop(0)))
            if len(self._all) >= self.max_total:
                closing.append(self._drop_oldest(next(iter(self._all))))
            entry = _Idle(key, sock, address, now)
            self._by_key.setdefault(key, entries).append(entry)
            self._all[entry] = None
        for old in closing:
            close_quietly(old.sock)

    def take(
        self, key: PoolKey, addresses: Collection[IPAddress]
    ) -> tuple[socket.socket, IPAddress] | None:
        """The newest idle connection of ``key`` connected to one of ``addresses``, removed
        from the pool; None if there is none. Expired and closed connections found on the
        way are closed; connections to other addresses stay (another fetch may use them)."""
        while True:
            closing: list[_Idle] = []
            found = None
            with self._lock:
                entries = self._by_key.get(key)
                if not entries:
                    return None
                now = time.monotonic()
                for index in range(len(entries) - 1, -1, -1):
                    entry = entries[index]
                    if now - entry.since > self.idle_s:  # this one and all older ones
                        closing = [self._forget(e) for e in entries[: index + 1]]
                        del entries[: index + 1]
                        break
                    if entry.address in addresses:
                        found = self._forget(entries.pop(index))
                        break
                if not entries:
                    del self._by_key[key]
            for old in closing:
                close_quietly(old.sock)
            if found is None:
                return None
            if quiet(found.sock):
                return found.sock, found.address
            close_quietly(found.sock)  # closed by the server meanwhile: try the next one

    def close(self) -> None:
        """Close every idle connection; the pool stays usable."""
        with self._lock:
            closing = list(self._all)
            self._all.clear()
            self._by_key.clear()
        for entry in closing:
            close_quietly(entry.sock)

    # -- under the lock ----------------------------------------------------------------------
    def _forget(self, entry: _Idle) -> _Idle:
        del self._all[entry]
        return entry

    def _drop_oldest(self, oldest: _Idle) -> _Idle:
        """Remove the pool's oldest entry, which is also the oldest of its key."""
        entries = self._by_key[oldest.key]
        entries.pop(0)
        if not entries:
            del self._by_key[oldest.key]
        return self._forget(oldest)
