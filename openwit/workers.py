"""openwit's local runner: Beam's FnApiRunner over worker processes that live for a build.

Beam's DirectRunner runs a pipeline either in the launcher process (one core for every
Python DoFn: the GIL) or, in ``multi_processing`` mode, in worker processes it starts for
that pipeline and stops after it (1.5-2.5 s of start-up each time, as each imports Beam).
A build is eight pipelines or more, so openwit starts its workers once per build instead:
``N`` processes (one per core), each serving Beam's external worker pool protocol with its
SDK harness in a thread, and a dispatcher that hands the runner's ``StartWorker`` requests
to them in turn. Every pipeline of the build then runs on the FnApiRunner with an
``EXTERNAL`` environment pointing at the dispatcher and ``direct_num_workers = N``: the
same Fn API path Flink, Spark and Dataflow use, every core busy, no start-up per stage.

Where it is safe (Linux, a launcher with one Python thread that has not used gRPC yet:
``openwit build`` at its start) the workers are forked, once the launcher has imported
Beam, Arrow and the stages, from a zygote forked from it (:mod:`openwit.worker_zygote`):
they start with those imports done instead of repeating them (about 1.2 s of CPU each, on
the cores the launcher needs for its own start), and a stage whose workers all build the
same object first (the match stage's automaton) gets new workers forked after the zygote
built it once. Elsewhere (a test process, a notebook) they are fresh interpreters.

Everything listens on 127.0.0.1 only (a worker runs whatever code its control endpoint
sends). A worker exits when the launcher does: it watches a pipe from the launcher (its
stdin when spawned) and leaves at end of file.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any, TextIO

from openwit.errors import WorkerLost
from openwit.worker_loss import (
    fail_running_pipelines,
    pools_in_use,
    quiet_about_lost_workers,
    saw_a_loss,
)

#: Workers in the pool; 0 (or 1) means: run in the launcher process (in_memory).
WORKERS_ENV = "OPENWIT_WORKERS"
#: How often the pool looks at its workers, and how long after failing the running
#: pipeline for a lost worker it waits for the runner to return before the launcher leaves.
WATCH_INTERVAL_S = 0.5
LOST_EXIT_AFTER_S = 60.0


def pool_size_for(runner: str, beam_options: dict[str, Any]) -> int:
    """Workers openwit's local pool should have for this build; 0 when it should not run
    one (another runner, or a ``direct_running_mode`` the user chose)."""
    from openwit.resources import DIRECT_RUNNERS, machine_cores

    if runner not in DIRECT_RUNNERS or "direct_running_mode" in beam_options:
        return 0
    requested = beam_options.get("direct_num_workers")
    if requested is None:
        requested = os.environ.get(WORKERS_ENV)
    size = machine_cores() if requested in (None, "", 0, "0") else int(requested)
    if requested in (0, "0"):
        return 0
    return size if size > 1 else 0


class LocalWorkerPool:
    """``size`` worker processes and a dispatcher; use as a context manager."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.processes: list[Any] = []  # Popen, or worker_zygote.ZygoteWorker
        self.ports: list[int] = []
        self.server: Any = None
        self.address = ""
        self.zygote: Any = None  # worker_zygote.Zygote, where the workers are forked
        self._dispatcher: _Dispatcher | None = None
        #: Held while the workers are swapped or stopped, so the watch never takes a
        #: worker being stopped on purpose for a lost one.
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._watch: threading.Thread | None = None
        #: Why the pool failed the running pipeline (:meth:`watch`), if it did.
        self.lost: Exception | None = None

    def __enter__(self) -> LocalWorkerPool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.spawn()
        self.connect()

    def spawn(self) -> None:
        """Start the worker processes and return at once: they import while the launcher
        does other work (a first stage in its own process, say)."""
        from openwit import worker_fork

        if worker_fork.can_fork():
            worker_fork.import_what_workers_run()  # the launcher imports it all next anyway
            if worker_fork.can_fork():
                from openwit.worker_zygote import Zygote

                self.zygote = Zygote()
                self.processes = self.zygote.fork(self.size) or []  # nothing to wait for
                self.ports = [worker.port for worker in self.processes]
                return
        command = [sys.executable, "-m", "openwit.workers"]
        self.processes = [
            subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            for _ in range(self.size)
        ]

    @property
    def connected(self) -> bool:
        return self.server is not None

    def connect(self) -> None:
        """Wait for the spawned workers and put the dispatcher in front of them."""
        import grpc
        from apache_beam.portability.api import beam_fn_api_pb2_grpc

        from openwit import worker_fork
        from openwit.worker_fork import read_port

        worker_fork.grpc_used = True
        try:
            if not self.ports:
                self.ports = [read_port(p) for p in self.processes]
        except BaseException:
            self.stop()
            raise
        self._dispatcher = _Dispatcher(_stubs(self.ports))
        self.server = grpc.server(futures.ThreadPoolExecutor(max(4, self.size)))
        beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(
            self._dispatcher, self.server
        )
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.address = f"127.0.0.1:{port}"
        quiet_about_lost_workers()
        pools_in_use.add(self)
        self._watch = threading.Thread(target=self.watch, name="openwit-pool-watch", daemon=True)
        self._watch.start()

    def prepare(self, target: str, args: list[Any], fs_options: dict[str, Any]) -> None:
        """Have ``module:function(*args)`` built once for the workers of a later stage
        (:meth:`refresh`), where the workers come from a zygote; else nothing (each worker
        builds what it needs when it needs it)."""
        if self.zygote is not None:
            self.zygote.prepare(target, args, fs_options)

    def refresh(self) -> None:
        """Replace the workers by new ones forked from the zygote, with what it prepared
        since the last ones (call between pipelines: none may be running)."""
        if self.zygote is None or not self.zygote.prepared:
            return
        with self._lock:
            if self.zygote.process.poll() is not None:
                raise _lost(self.zygote.process, zygote=True)
            old, new = self.processes, self.zygote.fork(self.size)
            if new is None:  # not ready: these workers build what they need themselves
                return
            self.processes, self.ports = new, [worker.port for worker in new]
            if self._dispatcher is not None:
                self._dispatcher.replace(_stubs(self.ports))
            self.zygote.stop([worker.pid for worker in old])

    def alive(self) -> bool:
        return bool(self.processes) and all(p.poll() is None for p in self.processes)

    def check(self) -> None:
        """Raise :class:`WorkerLost` if a worker, or the zygote, has ended: before a
        pipeline, which would otherwise fail on a refused connection."""
        with self._lock:
            loss = self._loss()
        if loss is not None:
            saw_a_loss()
            raise loss

    def _loss(self) -> WorkerLost | None:
        """Why the pool cannot serve: what :meth:`watch` found, the zygote ended (its
        workers leave with it), or a worker ended; None while all live."""
        if self.lost is not None:
            return self.lost
        if self.zygote is not None and self.zygote.process.poll() is not None:
            return _lost(self.zygote.process, zygote=True)
        gone = [p for p in list(self.processes) if p.poll() is not None]
        return _lost(gone[0], zygote=False) if gone else None

    def watch(self) -> None:
        """Fail the running pipeline when a worker ends while the pool is in use.

        Beam's FnApiRunner waits for a bundle's answer without a timeout: a worker killed
        for memory hung the build for good, at 0% CPU. The watch fails the runner's
        pending requests with :class:`WorkerLost` (as Beam's own Docker environment does
        when its container stops); the stage fails, and its finished units are kept for
        ``--resume``. Should the runner still not return, the launcher leaves with the
        same one-line error rather than hang."""
        while not self._closing.wait(WATCH_INTERVAL_S):
            with self._lock:
                if self._closing.is_set():
                    return
                self.lost = self._loss()
            if self.lost is None:
                continue
            saw_a_loss()
            fail_running_pipelines(self.lost)
            if self._closing.wait(LOST_EXIT_AFTER_S):
                return
            print(f"openwit: {self.lost}", file=sys.stderr, flush=True)
            os._exit(self.lost.exit_code)

    def stop(self) -> None:
        from openwit.worker_fork import wait_or_kill

        with self._lock:
            self._closing.set()
        pools_in_use.discard(self)
        if self.server is not None:
            self.server.stop(grace=None)
            self.server = None
        if self.zygote is not None:  # it closes its workers' pipes and leaves
            self.zygote.close()
            self.zygote = None
        for process in self.processes:
            with contextlib.suppress(OSError):
                if process.stdin:
                    process.stdin.close()  # the worker leaves at end of file
        for process in self.processes:
            wait_or_kill(process, 5)
            if process.stdout:
                process.stdout.close()
        self.processes, self.ports = [], []


def _lost(process: Any, zygote: bool) -> WorkerLost:
    """The loss of an ended worker (or of the zygote, whose workers leave with it)."""
    from openwit.worker_zygote import ZYGOTE

    what = ZYGOTE if zygote else "a worker of openwit's local pool"
    return WorkerLost.of(what, process.pid, process.poll())


def _stubs(ports: list[int]) -> list[Any]:
    import grpc
    from apache_beam.portability.api import beam_fn_api_pb2_grpc

    return [
        beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolStub(
            grpc.insecure_channel(f"127.0.0.1:{port}")
        )
        for port in ports
    ]


class _Dispatcher:
    """Hands each ``StartWorker`` to the next worker process, and ``StopWorker`` to the
    process that started it."""

    def __init__(self, stubs: list[Any]) -> None:
        self.stubs = stubs
        self.turn = itertools.count()
        self.where: dict[str, Any] = {}
        self.lock = threading.Lock()

    def replace(self, stubs: list[Any]) -> None:
        """New workers for the pipelines to come (those started keep their StopWorker's)."""
        with self.lock:
            self.stubs = stubs

    def StartWorker(self, request: Any, context: Any) -> Any:
        with self.lock:
            stub = self.stubs[next(self.turn) % len(self.stubs)]
            self.where[request.worker_id] = stub
        return stub.StartWorker(request)

    def StopWorker(self, request: Any, context: Any) -> Any:
        from apache_beam.portability.api import beam_fn_api_pb2

        with self.lock:
            stub = self.where.pop(request.worker_id, None)
        if stub is None:
            return beam_fn_api_pb2.StopWorkerResponse()
        return stub.StopWorker(request)


def early_pool_size(config: Any) -> int:
    """Workers to spawn before a build of ``config`` starts (:func:`spawned_early`): its
    pool's size, or 0 when a local build directory already holds this very build, complete
    (a rerun that will run nothing). A bucket is not asked: a refused read there would be
    logged by Beam before the runner's one-line error, and a needless pool costs only its
    imports."""
    from openwit import fs
    from openwit.builddir import BuildDir

    if fs.is_local(config.out):
        try:
            manifest = BuildDir(config.out).manifest()
            if manifest.get("complete") and manifest.get("config_hash") == config.hash():
                return 0
        except (OSError, ValueError):
            pass  # no build there yet, or one that cannot be read: the runner will say
    try:
        return pool_size_for(config.runner, config.beam_options)
    except (TypeError, ValueError):  # direct_num_workers=many: the option check says so
        return 0


#: A pool spawned before the build's runner exists (:func:`spawned_early`), for it to take.
_early: LocalWorkerPool | None = None


@contextlib.contextmanager
def spawned_early(size: int) -> Iterator[None]:
    """Spawn a pool of ``size`` now, for the first :func:`local_pool` of this block to take;
    stopped at the end of the block if none took it.

    A build's launcher spends its first seconds on one core (imports, input checks,
    fingerprints) and its workers' imports (about 1.3 s each) used to start only with the
    first stage: spawned here they import on the idle cores meanwhile.
    """
    global _early
    if size <= 1 or _early is not None:
        yield
        return
    pool = _early = LocalWorkerPool(size)
    pool.spawn()
    try:
        yield
    finally:
        if _early is pool:  # nobody took it: every stage was up to date, or the build failed
            _early = None
            pool.stop()


@contextlib.contextmanager
def spawned_early_for(config: Any) -> Iterator[None]:
    """:func:`spawned_early` with :func:`early_pool_size` of ``config``. Both ``openwit
    build`` (before it imports the stages) and ``run_build`` (for every other caller) open
    one; the inner one finds the pool spawned and does not read the build directory's
    manifest or hash the config a second time."""
    with spawned_early(0 if _early is not None else early_pool_size(config)):
        yield


@contextlib.contextmanager
def local_pool(size: int) -> Iterator[LocalWorkerPool | None]:
    """A pool of ``size`` spawned workers (:meth:`LocalWorkerPool.connect` it before use),
    or None when ``size`` is 0; stopped at the end of the block. Takes the pool
    :func:`spawned_early` started when it has that size."""
    global _early
    if size <= 0:
        yield None
        return
    if _early is not None and _early.size == size and _early.alive():
        pool, _early = _early, None
    else:
        pool = LocalWorkerPool(size)
        pool.spawn()
    try:
        yield pool
    finally:
        pool.stop()


def serve(port_out: TextIO | None = None, stop_in: TextIO | None = None) -> None:
    """A worker process: Beam's external worker pool servicer, SDK harnesses in threads.
    Writes its port to ``port_out`` (stdout) and serves until ``stop_in`` (stdin) ends."""
    port_out, stop_in = port_out or sys.stdout, stop_in or sys.stdin
    from openwit.logs import quiet_beam_logging

    quiet_beam_logging()
    import grpc
    from apache_beam.portability.api import beam_fn_api_pb2_grpc
    from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer

    server = grpc.server(futures.ThreadPoolExecutor(8))
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(
        BeamFnExternalWorkerPoolServicer(use_process=False), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, file=port_out, flush=True)
    from openwit.worker_fork import import_what_workers_run

    import_what_workers_run()  # (a forked worker has it all already)
    stop_in.read()  # returns at end of file: the launcher is gone or done
    server.stop(grace=None)
    os._exit(0)  # SDK harness threads are daemons of a finished build


if __name__ == "__main__":
    serve()
