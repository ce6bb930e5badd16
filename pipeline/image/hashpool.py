"""Where the image stage's hashes are computed: worker processes, or threads.

Hashing a stored image is mostly numpy and Python on small arrays, so it holds the GIL:
threads give ~1.2x on two cores, processes ~1.9x. A runner with one SDK process per core
(Dataflow, Flink, DirectRunner ``multi_processing``) already has that; the in-process
DirectRunner does not, so there the stage hands its images to worker processes, one per
core (:class:`ProcessHasher`). The build runner starts them while the stage before runs
(``ImageStage.warm_up``), so their start-up (~0.4 s of imports) is not on the image
stage's clock.

The workers are plain ``python -m openwit.pipeline.image.hashworker`` processes fed through
pipes, not ``multiprocessing`` children: those import the parent's ``__main__`` module
again (a user's unguarded build script would run once more in every worker) and, forked,
can inherit a lock held by one of the build's many threads. Only image bytes go out and
only hashes come back. A worker that dies costs time, never records: its batch fails, the
stage hashes that batch itself, and with no worker left it goes on in threads.

While the download stage runs, its CPU is ~75% busy (it waits on the network too) and the
workers would sit idle: the download stage offers each committed unit's stored images to
:func:`prefetch_hashes`, the workers hash them in the gaps, and the results wait in a
memo keyed by the stored bytes' sha256 (a pure function of the bytes, so the values are
the ones the image stage would compute). The image stage takes what the memo has and
hashes the rest. Without running workers (another runner, a resumed build, a process of
its own for each stage) nothing is prefetched and nothing changes.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from openwit.hashes.images import bytes_hashes_or_errors

log = logging.getLogger(__name__)

#: Hashes of a batch: ``(phash, dhash)`` or the error text, per image.
Hashes = list[tuple[int, int] | str]


class HasherBroken(RuntimeError):
    """No worker process is left to hash with."""


#: ``(sha256s, hashes)`` of the stored images of a download part file.
FileHashes = tuple[list[str], Hashes]


class Hasher(Protocol):
    def submit(self, images: list[bytes]) -> Future[Hashes]: ...
    def submit_file(self, path: str) -> Future[FileHashes]: ...
    def shutdown(self, wait: bool = True) -> None: ...


class ThreadHasher:
    """Hashes in threads of this process, one per core."""

    def __init__(self, workers: int | None = None) -> None:
        self.pool = ThreadPoolExecutor(workers or os.cpu_count() or 1, "openwit-image")

    def submit(self, images: list[bytes]) -> Future[Hashes]:
        return self.pool.submit(bytes_hashes_or_errors, images)

    def submit_file(self, path: str) -> Future[FileHashes]:
        from openwit.pipeline.image.hashworker import file_hashes

        return self.pool.submit(file_hashes, path)

    def shutdown(self, wait: bool = True) -> None:
        self.pool.shutdown(wait=wait)


class ProcessHasher:
    """Hashes in worker processes (one per core), each fed by a thread of this process."""

    def __init__(self, workers: int | None = None) -> None:
        count = workers or os.cpu_count() or 1
        self._queue: queue.SimpleQueue[tuple[list[bytes] | str, Future[Any]] | None]
        self._queue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers = [self._start_worker() for _ in range(count)]
        self.alive = count
        self._threads = [
            threading.Thread(target=self._serve, args=(w,), name="openwit-hasher", daemon=True)
            for w in self._workers
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _start_worker() -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "openwit.pipeline.image.hashworker"]
        return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def submit(self, images: list[bytes]) -> Future[Hashes]:
        return self._submit(images)

    def submit_file(self, path: str) -> Future[FileHashes]:
        return self._submit(path)

    def _submit(self, request: list[bytes] | str) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if not self.alive:
                raise HasherBroken("every hashing worker has exited")
            self._queue.put((request, future))
        return future

    def _serve(self, worker: subprocess.Popen[bytes]) -> None:
        assert worker.stdin is not None and worker.stdout is not None
        while (item := self._queue.get()) is not None:
            request, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                pickle.dump(request, worker.stdin, protocol=pickle.HIGHEST_PROTOCOL)
                worker.stdin.flush()
                hashes = pickle.load(worker.stdout)
            except Exception as exc:  # EOF, a broken pipe: the worker died (killed, OOM)
                future.set_exception(HasherBroken(f"hashing worker exited: {exc!r}"))
                self._worker_died(worker)
                return
            future.set_result(hashes)

    def _worker_died(self, worker: subprocess.Popen[bytes]) -> None:
        worker.kill()
        with self._lock:
            self.alive -= 1
            if self.alive:
                return
            while True:  # nobody is left to take what is queued
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    return
                if item is not None and item[1].set_running_or_notify_cancel():
                    item[1].set_exception(HasherBroken("every hashing worker has exited"))

    def shutdown(self, wait: bool = True) -> None:
        """Stop the workers: each reads the end of its input and exits. ``wait=False``
        does not wait for them to finish exiting (the stage's clock need not)."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()
        for worker in self._workers:
            if worker.stdin is not None:
                worker.stdin.close()
            if worker.stdout is not None:
                worker.stdout.close()
        if wait:
            for worker in self._workers:
                try:
                    worker.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait()


class HashMemo:
    """Hashes computed ahead of the image stage, by the sha256 of the stored bytes.

    Bounded twice: at most ``max_entries`` results wait (each is taken once, by the image
    stage), and at most ``max_batches`` part files are in flight; what does not fit is not
    prefetched (the image stage hashes it).
    """

    def __init__(self, max_entries: int = 1_000_000, max_batches: int = 4) -> None:
        self.max_entries = max_entries
        self.max_batches = max_batches
        self._results: dict[str, tuple[int, int] | str] = {}
        self._in_flight = 0
        self._lock = threading.Lock()

    def offer(self, hasher: Hasher, part_file: str, rows: int) -> bool:
        """Hash the stored images of a download part file (``rows`` of them) in the
        background; False if the memo is full or enough batches are in flight."""
        with self._lock:
            full = len(self._results) + rows > self.max_entries
            if full or self._in_flight >= self.max_batches or not rows:
                return False
            self._in_flight += 1
        try:
            future = hasher.submit_file(part_file)
        except HasherBroken:
            with self._lock:
                self._in_flight -= 1
            return False
        future.add_done_callback(self._store)
        return True

    def _store(self, done: Future[FileHashes]) -> None:
        found = None if done.exception() else done.result()
        with self._lock:
            self._in_flight -= 1
            if found is not None:
                shas, results = found
                self._results.update(zip(shas, results, strict=True))

    def take(self, sha256: str) -> tuple[int, int] | str | None:
        """The hashes of the image with this sha256, if they were prefetched (once)."""
        with self._lock:
            return self._results.pop(sha256, None)

    def clear(self) -> None:
        with self._lock:
            self._results.clear()


def start_process_hasher(workers: int | None = None) -> Hasher | None:
    """A :class:`ProcessHasher`, or None if this platform cannot start processes."""
    try:
        return ProcessHasher(workers)
    except OSError as exc:
        log.warning("image: no worker processes (%s); hashing in threads", exc)
        return None


_shared: Hasher | None = None
_shared_started = False
_shared_lock = threading.Lock()
_memo = HashMemo()


def prefetch_hashes(part_file: str, rows: int) -> None:
    """Offer a download part file (``rows`` stored images) to the process-wide workers,
    if they are running (the image stage started them early, in this process): see the
    module's notes."""
    with _shared_lock:
        hasher = _shared if _shared_started else None
    if hasher is not None:
        _memo.offer(hasher, part_file, rows)


def take_prefetched(sha256: str) -> tuple[int, int] | str | None:
    """Prefetched hashes of the image with this sha256, or None."""
    return _memo.take(sha256)


def shared_hasher() -> Hasher | None:
    """The process-wide :class:`ProcessHasher`, started on first use (``ImageStage.warm_up``
    makes that first use early: the workers import while the download runs); None where
    processes cannot be started."""
    global _shared, _shared_started
    with _shared_lock:
        if not _shared_started:
            _shared, _shared_started = start_process_hasher(), True
        return _shared


def stop_shared_hasher() -> None:
    """Shut the process-wide workers down (the image stage is done with them)."""
    global _shared, _shared_started
    with _shared_lock:
        hasher, _shared, _shared_started = _shared, None, False
    _memo.clear()
    if hasher is not None:
        hasher.shutdown(wait=False)  # exiting takes them ~0.1 s; the build need not wait
