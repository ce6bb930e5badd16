"""Time limits per image that no server can stretch: a budget and a socket watchdog.

A socket timeout bounds one read; a server that trickles bytes resets it every time, so a
"10 s timeout" can hold a thread for hours. :class:`Budget` is the time left for one image
(all attempts, hops and backoffs together); :class:`Watchdog` shuts a socket down when its
deadline passes, which wakes any read blocked on it.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from dataclasses import dataclass, field


class Budget:
    """The time left for one image (all attempts, hops and backoffs together)."""

    def __init__(self, seconds: float) -> None:
        self.started = time.monotonic()
        self.deadline = self.started + seconds

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0

    def elapsed(self) -> float:
        return time.monotonic() - self.started


@dataclass(order=True)
class Alarm:
    deadline: float
    order: int
    sock: socket.socket | None = field(compare=False, default=None)
    fired: bool = field(compare=False, default=False)


class Watchdog:
    """Shuts sockets down at their deadline, waking any read blocked on them.

    A socket timeout bounds one read; a server that trickles bytes resets it every time.
    One daemon thread per process keeps a heap of deadlines. Disarming and firing take
    the same lock, so a disarmed alarm never touches a socket that was closed meanwhile.
    """

    _shared: Watchdog | None = None
    _shared_lock = threading.Lock()

    def __init__(self) -> None:
        # (deadline, order, alarm): tuples compare in C, and ``order`` is unique
        self._heap: list[tuple[float, int, Alarm]] = []
        self._lock = threading.Lock()  # taken directly by arm and disarm (cheaper)
        self._wake = threading.Condition(self._lock)
        self._counter = itertools.count()
        self._thread = threading.Thread(target=self._run, name="openwit-watchdog", daemon=True)
        self._thread.start()

    @classmethod
    def shared(cls) -> Watchdog:
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def arm(self, sock: socket.socket, deadline: float) -> Alarm:
        alarm = Alarm(deadline, next(self._counter), sock)
        with self._lock:
            heapq.heappush(self._heap, (deadline, alarm.order, alarm))
            if self._heap[0][2] is alarm:  # only an earlier deadline changes the thread's sleep
                self._wake.notify()
        return alarm

    def fire_all(self) -> None:
        """Shut every armed socket down now (the process is being interrupted): each read
        blocked on one returns at once, as at its deadline."""
        with self._lock:
            alarms = [entry[2] for entry in self._heap]
            self._heap.clear()
            for alarm in alarms:
                sock, alarm.sock = alarm.sock, None
                if sock is not None:
                    alarm.fired = True
                    with contextlib.suppress(OSError):
                        socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def disarm(self, alarm: Alarm) -> None:
        with self._lock:
            alarm.sock = None  # left in the heap; skipped when it comes up

    def _run(self) -> None:
        with self._wake:
            while True:
                while self._heap and self._heap[0][2].sock is None:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._wake.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._wake.wait(wait)
                    continue
                alarm = heapq.heappop(self._heap)[2]
                sock, alarm.sock, alarm.fired = alarm.sock, None, True
                # The plain-socket method: an SSL socket's own would drop its TLS state.
                with contextlib.suppress(OSError):  # already closed by the peer
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
