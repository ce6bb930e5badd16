"""Per-host politeness: at most N requests in flight to one host, and a request rate.

Both limits hold per worker process (a Beam worker); with W workers a host sees up to W
times as much. The rate limit spaces request starts evenly (``1 / rate`` apart), so a
burst of URLs for one host is spread out instead of arriving together.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: Forget idle hosts beyond this many (a crawl touches millions of hosts).
MAX_TRACKED_HOSTS = 50_000


class HostLimiter:
    """Blocks callers until ``host`` has a free slot and its rate allows another request."""

    def __init__(self, max_concurrent: int, requests_per_s: float = 0.0) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be >= 1")
        self.max_concurrent = max_concurrent
        self.interval = 1.0 / requests_per_s if requests_per_s > 0 else 0.0
        self._lock = threading.Condition()
        self._active: dict[str, int] = {}
        self._next_start: dict[str, float] = {}

    @contextmanager
    def slot(self, host: str) -> Iterator[None]:
        """Hold one of ``host``'s slots for the duration of the block."""
        self._acquire(host)
        try:
            yield
        finally:
            self._release(host)

    def _acquire(self, host: str) -> None:
        with self._lock:
            while self._active.get(host, 0) >= self.max_concurrent:
                self._lock.wait()
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
            self._lock.notify_all()

    def _forget_idle_hosts(self) -> None:
        now = time.monotonic()
        for host, start in list(self._next_start.items()):
            if start <= now and host not in self._active:
                del self._next_start[host]

    def in_flight(self, host: str) -> int:
        with self._lock:
            return self._active.get(host, 0)
