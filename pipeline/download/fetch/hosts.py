"""Per-host politeness: at most N requests in flight to one host, and a request rate.

Both limits hold per worker process (a Beam worker); with W workers a host sees up to W
times as much. The rate limit spaces request starts evenly (``1 / rate`` apart), so a
burst of URLs for one host is spread out instead of arriving together.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

#: Forget idle hosts beyond this many (a crawl touches millions of hosts).
MAX_TRACKED_HOSTS = 50_000


class HostLimiter:
    """Blocks callers until ``host`` has a free slot and its rate allows another request."""

    def __init__(self, max_concurrent: int, requests_per_s: float = 0.0) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be >= 1")
        self.max_concurrent = max_concurrent
        self.interval = 1.0 / requests_per_s if requests_per_s > 0 else 0.0
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)
        self._waiting = 0  # callers waiting for a slot (on any host)
        self._active: dict[str, int] = {}
        self._next_start: dict[str, float] = {}

    def slot(self, host: str) -> _Slot:
        """Hold one of ``host``'s slots for the duration of the ``with`` block."""
        return _Slot(self, host)

    def _acquire(self, host: str) -> None:
        with self._lock:
            while self._active.get(host, 0) >= self.max_concurrent:
                self._waiting += 1
                try:
                    self._freed.wait()
                finally:
                    self._waiting -= 1
            self._active[host] = self._active.get(host, 0) + 1
            wait = 0.0
            if self.interval:
                now = time.monotonic()
                start = max(now, self._next_start.get(host, now))
                self._next_start[host] = start + self.interval
                wait = start - now
        if wait > 0:
            time.sleep(wait)

    def _release(self, host: str) -> None:
        with self._lock:
            left = self._active[host] - 1
            if left:
                self._active[host] = left
            else:
                del self._active[host]
            if len(self._next_start) > MAX_TRACKED_HOSTS:
                self._forget_idle_hosts()
            if self._waiting:
                self._freed.notify_all()

    def _forget_idle_hosts(self) -> None:
        now = time.monotonic()
        for host, start in list(self._next_start.items()):
            if start <= now and host not in self._active:
                del self._next_start[host]

    def in_flight(self, host: str) -> int:
        with self._lock:
            return self._active.get(host, 0)


class _Slot:
    """One slot of a host while the ``with`` block runs (a class: cheaper than a generator)."""

    __slots__ = ("_host", "_limiter")

    def __init__(self, limiter: HostLimiter, host: str) -> None:
        self._limiter = limiter
        self._host = host

    def __enter__(self) -> None:
        self._limiter._acquire(self._host)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._limiter._release(self._host)
