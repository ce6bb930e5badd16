"""Workers forked from the launcher (:mod:`openwit.workers` uses them where it is safe).

A forked worker starts with the launcher's imports done (Beam, Arrow, the stages: about
1.2 s of CPU that a fresh interpreter spends again, on the cores the launcher needs for its
own start) and shares those pages with it until either writes to them. Forking is safe
only before the launcher has threads of its own or has used gRPC: a child gets copies of
every lock, but only the forking thread.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

#: ``spawn`` makes every worker a fresh interpreter even where forking them is safe (for
#: measuring what forking saves, or as a way out should a library misbehave after fork).
START_ENV = "OPENWIT_WORKER_START"

#: Set once this process has made a gRPC channel or server: a child forked after that would
#: inherit gRPC's state and locks without the threads that own them.
grpc_used = False


#: Native threads gRPC's core starts once a channel or server exists (Linux thread names).
_GRPC_THREADS = ("grpc_", "event_engine", "lifeguard", "default-executo", "resolver-execu")


def can_fork() -> bool:
    """Whether workers may be forked from this process: Linux, one Python thread, and no
    gRPC yet (neither ours nor another library's: its native threads would show it). The
    native threads of Arrow's allocator and of OpenBLAS are fork-safe."""
    if sys.platform != "linux" or os.environ.get(START_ENV, "") == "spawn":
        return False
    if grpc_used or threading.active_count() != 1:
        return False
    try:
        tasks = Path("/proc/self/task").iterdir()
        names = [(task / "comm").read_text() for task in tasks]
    except OSError:
        return False
    return not any(name.startswith(_GRPC_THREADS) for name in names)


def import_what_workers_run() -> None:
    """Import what every worker runs: before forking them (so they start with it), and in a
    spawned worker while the launcher plans its first pipeline (about a second of CPU that
    would otherwise come with the first bundle, in every worker at once)."""
    import apache_beam.runners.worker.bundle_processor
    import apache_beam.runners.worker.sdk_worker
    import apache_beam.runners.worker.worker_pool_main  # noqa: F401
    import grpc  # noqa: F401
    import PIL.Image  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import openwit.build
    import openwit.unit_transform  # noqa: F401


#: This process's ends of the pipes and sockets to the processes it forked. A child forked
#: later closes its copies, or an earlier child would not see end of file when this
#: process leaves.
_launcher_ends: list[Any] = []


def note_launcher_end(end: Any) -> None:
    """Register a pipe or socket to a forked child (see ``_launcher_ends``)."""
    _launcher_ends.append(end)


def _is_open(end: Any) -> bool:
    try:
        return end.fileno() >= 0
    except (OSError, ValueError):
        return False


class WorkerProcess:
    """A forked worker, with what the pool uses of ``Popen``; subclasses say how to
    :meth:`poll` it."""

    pid: int
    returncode: int | None = None

    def poll(self) -> int | None:
        raise NotImplementedError

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("openwit worker", timeout or 0)
            time.sleep(0.01)
        return code

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


def wait_or_kill(process: Any, timeout: float) -> None:
    """Wait for ``process`` (``Popen`` or :class:`WorkerProcess`) to leave; kill it once
    ``timeout`` seconds have passed."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class ChildProcess(WorkerProcess):
    """A process forked from this one (its child: this one reaps it)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere
                self.returncode = 0
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


class ForkedWorker(ChildProcess):
    """A worker forked from this process, and this process's pipes to it."""

    def __init__(self, pid: int, stdin: TextIO, stdout: TextIO) -> None:
        super().__init__(pid)
        self.stdin, self.stdout = stdin, stdout

    def close(self) -> None:
        """Close this process's pipes to the worker: it leaves at end of file."""
        for end in (self.stdin, self.stdout):
            with contextlib.suppress(OSError):
                end.close()


def read_port(worker: Any) -> int:
    """The port a new worker (``Popen`` or :class:`ForkedWorker`) wrote on its stdout."""
    line = worker.stdout.readline().strip()
    if not line.isdigit():
        raise RuntimeError(f"an openwit worker process failed to start (exit {worker.poll()})")
    return int(line)


def fork_workers(count: int) -> list[ForkedWorker]:
    """``count`` workers forked from this process (check :func:`can_fork` first)."""
    # They share this process's memory until they write to it, and the cyclic GC writes
    # to every object it scans: frozen objects are not scanned (in the children either).
    # A build's runner may have frozen them already (``long_lived_objects_frozen``): only
    # what this call froze is given back to the collector afterwards.
    frozen_before = gc.get_freeze_count()
    gc.freeze()
    try:
        return [_fork_worker() for _ in range(count)]
    finally:
        if frozen_before == 0:
            gc.unfreeze()


def fork_process(main: Callable[[], None], close_in_child: Sequence[Any] = ()) -> int:
    """Fork a child that runs ``main()`` and exits (it never returns into this process's
    code); the child first closes its copies of this process's ends to earlier children
    and of ``close_in_child``. Returns the child's pid."""
    _launcher_ends[:] = [end for end in _launcher_ends if _is_open(end)]
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the launcher's to handle
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not a handler of the launcher's
            for end in (*_launcher_ends, *close_in_child):
                with contextlib.suppress(OSError, ValueError):
                    end.close()
            _launcher_ends.clear()
            main()
            code = 0
        except BaseException as exc:
            print(f"openwit worker {os.getpid()}: {exc!r}", file=sys.stderr, flush=True)
        finally:
            os._exit(code)
    return pid


def _fork_worker() -> ForkedWorker:
    port_read, port_write = os.pipe()
    stop_read, stop_write = os.pipe()
    port_in, stop_out = os.fdopen(port_read), os.fdopen(stop_write, "w")

    def serve_here() -> None:
        from openwit.workers import serve

        serve(os.fdopen(port_write, "w"), os.fdopen(stop_read))

    pid = fork_process(serve_here, close_in_child=(port_in, stop_out))
    os.close(port_write)
    os.close(stop_read)
    worker = ForkedWorker(pid, stop_out, port_in)
    _launcher_ends.extend((worker.stdin, worker.stdout))
    return worker
