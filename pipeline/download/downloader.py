"""The download core: one candidate record in, the record with its stored image (or a
rejection) out. Plain Python; the ``download`` stage (:mod:`.download`) runs it in a thread
pool inside a Beam DoFn.

Resizing happens here, as in img2dataset: the contract has the download stage set
``width``/``height`` of the *stored* bytes, and keeping the original bytes between stages
would multiply the build's intermediate storage by ~10 for nothing. The perceptual hashes
of the stored bytes are taken here too, while the bytes are in hand: every later stage
works on metadata, and the shard stage alone reads the bytes again. The image checks
(minimum side, aspect ratio, on the original size as DataComp does) are the ``image``
stage's job.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from openwit import interrupts
from openwit.config import DownloadConfig, ImageConfig
from openwit.funnel import Rejection
from openwit.hashes.images import bytes_hashes
from openwit.hashes.resample import single_threaded_blas
from openwit.pipeline.download.fetch.client import Connector, Fetched, FetchFailed, HttpClient
from openwit.pipeline.download.fetch.hosts import HostLimiter
from openwit.pipeline.download.fetch.policy import Resolver, UrlPolicy
from openwit.pipeline.download.resize import ImageRejected, make_resizer

STAGE = "download"


@dataclass(frozen=True)
class Outcome:
    """The result for one record, and what fetching it cost."""

    result: dict[str, Any] | Rejection
    bytes: int = 0
    attempts: int = 0
    seconds: float = 0.0


class Downloader:
    """Fetch, check and resize images; one per worker process, shared by its threads."""

    def __init__(
        self,
        download: DownloadConfig,
        image: ImageConfig,
        cpu_threads: int,
        resolver: Resolver | None = None,
        connector: Connector | None = None,
    ) -> None:
        policy = UrlPolicy(download.allow_private_networks, resolver)
        limiter = HostLimiter(download.per_host_concurrency, download.per_host_requests_per_s)
        self.client = HttpClient(
            download,
            policy,
            connector,
            limiter,
            max_idle_per_host=download.per_host_concurrency,  # at most that many in flight
        )
        self.resizer = make_resizer(image)
        single_threaded_blas()  # the hashes' small matrix products: a core per pixel thread
        self.pool = ThreadPoolExecutor(
            download.threads_per_worker, thread_name_prefix="openwit-download"
        )
        # Many threads wait on the network; decoding and resizing need a core each: a
        # fetched body goes to one of ``cpu_threads`` pixel threads (this process's share of
        # the machine, openwit.resources), and its network thread fetches the next.
        # (Network threads that did the pixel work themselves, in one of cpu_count slots of
        # a semaphore, waited there with their bodies instead of fetching: the download
        # stage took 5.7-6.5 s against 5.1 s this way.)
        self.pixel_pool = ThreadPoolExecutor(cpu_threads, "openwit-pixels")
        self.waiting_bodies = ByteBudget(WAITING_BODIES_BYTES)
        interrupts.on_interrupt(self.stop_now)

    def stop_now(self) -> None:
        """Drop the queued fetches and pixel work and wake the fetches in flight (Ctrl-C):
        the process can then leave without draining the queues."""
        self.client.stop()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.pixel_pool.shutdown(wait=False, cancel_futures=True)

    def _fetch(self, record: dict[str, Any]) -> Fetched | Outcome:
        """The fetched body, or the record's outcome if there is none."""
        uid = record.get("uid", "")
        try:
            fetched = self.client.fetch(record["url"])
        except Exception as exc:  # a bug must not stop the build; the record is counted
            return Outcome(Rejection.stage_error(uid, STAGE, exc))
        if isinstance(fetched, FetchFailed):
            rejection = Rejection(uid, STAGE, fetched.reason, fetched.detail)
            return Outcome(rejection, 0, fetched.attempts, fetched.seconds)
        return fetched

    def _store(self, record: dict[str, Any], fetched: Fetched) -> Outcome:
        """Decode, check and resize a fetched body, and hash the stored bytes: the
        record's outcome."""
        uid = record.get("uid", "")
        cost = (len(fetched.body), fetched.attempts, fetched.seconds)
        try:
            stored = self.resizer(fetched.body)
        except ImageRejected as exc:
            return Outcome(Rejection(uid, STAGE, exc.reason, exc.detail), *cost)
        except Exception as exc:  # a bug must not stop the build; the record is counted
            return Outcome(Rejection.stage_error(uid, STAGE, exc), *cost)
        try:
            phash, dhash = bytes_hashes(stored.data)
        except Exception as exc:  # our own encoder's bytes: should never happen
            detail = f"stored bytes do not decode: {type(exc).__name__}: {exc}"[:300]
            return Outcome(Rejection(uid, STAGE, "decode_error", detail), *cost)
        return Outcome({**record, **stored.columns(), "phash": phash, "dhash": dhash}, *cost)

    def _fetch_then_hand_over(self, record: dict[str, Any], outcome: Future[Outcome]) -> None:
        """On a network thread: fetch, then give the body to a pixel thread and go on.
        ``outcome`` is always set: a failure of the hand-over itself is a ``stage_error``,
        never a record whose future nobody completes."""
        try:
            fetched = self._fetch(record)
            if isinstance(fetched, Outcome):
                outcome.set_result(fetched)
                return
            self.waiting_bodies.add(len(fetched.body))  # waits while too many bytes wait
            try:
                self.pixel_pool.submit(self._store_into, record, fetched, outcome)
            except BaseException:
                self.waiting_bodies.remove(len(fetched.body))
                raise
        except Exception as exc:
            if not outcome.done():
                uid = record.get("uid", "")
                outcome.set_result(Outcome(Rejection.stage_error(uid, STAGE, exc)))

    def _store_into(
        self, record: dict[str, Any], fetched: Fetched, outcome: Future[Outcome]
    ) -> None:
        try:
            outcome.set_result(self._store(record, fetched))
        finally:
            self.waiting_bodies.remove(len(fetched.body))

    def close_idle_connections(self) -> None:
        """Close the kept-alive connections now idle (the downloader stays usable)."""
        self.client.close_idle_connections()

    def submit(self, record: dict[str, Any]) -> Future[Outcome]:
        outcome: Future[Outcome] = Future()
        outcome.set_running_or_notify_cancel()
        self.pool.submit(self._fetch_then_hand_over, record, outcome)
        return outcome


#: Fetched bodies waiting for a pixel thread, at most (beyond one body, however large).
WAITING_BODIES_BYTES = 64 * 1024 * 1024


class ByteBudget:
    """Bytes held by fetched bodies waiting for a pixel thread: ``add`` waits while more
    than ``limit`` are held (unless nothing is), ``remove`` gives them back.

    The lock is only waited on when the pixel threads fall behind; in the usual case it is
    taken and left, and nobody is notified. When they do fall behind, every network thread
    waits here, and each body a pixel thread finishes frees room for about one more: so
    ``remove`` wakes one waiter, and a waiter that got in wakes the next while room is
    left. (Waking all of them on every ``remove``, sixteen threads a worker that mostly
    went back to waiting, took the GIL from the pixel threads on every image.)
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._waiters = 0
        self._changed = threading.Condition()

    def add(self, size: int) -> None:
        with self._changed:
            while self.held and self.held + size > self.limit:
                self._waiters += 1
                try:
                    self._changed.wait()
                finally:
                    self._waiters -= 1
            self.held += size
            if self._waiters and self.held < self.limit:
                self._changed.notify()  # room may be left for the next waiter

    def remove(self, size: int) -> None:
        with self._changed:
            self.held -= size
            if self._waiters:
                self._changed.notify()


_SHARED: dict[Any, Downloader] = {}
_SHARED_LOCK = threading.Lock()


def shared_downloader(
    download: DownloadConfig,
    image: ImageConfig,
    cpu_threads: int,
    resolver: Resolver | None = None,
    connector: Connector | None = None,
) -> Downloader:
    """The worker process's downloader for these settings (one thread pool per process,
    shared by every DoFn instance the runner runs in it)."""
    key = (download.model_dump_json(), image.model_dump_json(), cpu_threads, resolver, connector)
    with _SHARED_LOCK:
        downloader = _SHARED.get(key)
        if downloader is None:
            downloader = _SHARED[key] = Downloader(
                download, image, cpu_threads, resolver, connector
            )
        return downloader
