"""When a worker of openwit's local pool is lost: noticed, failed once, reported once.

A worker killed for memory (or any worker that ends) must fail the running pipeline with
one line, :class:`~openwit.errors.WorkerLost`, instead of hanging Beam's runner or filling
the terminal with the tracebacks of every connection it held. The pools
(:mod:`openwit.workers`) register here while a pipeline may use them; this module answers
whether a worker is lost, fails the runner's pending requests and keeps Beam's reports of
the closed connections quiet while, and only while, a loss explains them.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any

#: How long a report of a dropped connection waits to see whether a worker ended.
LOSS_SHOWS_WITHIN_S = 0.5
#: For this long after a loss, Beam's reports of closed connections are still the loss's.
LOSS_QUIET_S = 30.0

#: Pools whose workers a pipeline may be using (connected, not stopped).
pools_in_use: weakref.WeakSet[Any] = weakref.WeakSet()  # openwit.workers.LocalWorkerPool
#: Beam's loggers that report a worker's dropped connections, each with a traceback.
_BEAM_LOSS_LOGGERS = (
    "apache_beam.runners.worker.data_plane",
    "apache_beam.runners.portability.fn_api_runner.worker_handlers",
)


def worker_lost(wait_s: float = 0.0) -> bool:
    """Whether a worker of a pool in use has ended (stopping a pool ends none of them),
    or one was found lost in the last :data:`LOSS_QUIET_S` (the runner may have replaced
    that pool by then, while Beam's threads of the failed pipeline still report its
    connections), looking again for up to ``wait_s``: a killed worker's connections close
    a moment before the kernel shows the process as ended."""
    deadline = time.monotonic() + wait_s
    while True:
        if _loss_seen_at is not None and time.monotonic() - _loss_seen_at < LOSS_QUIET_S:
            return True
        # Without the pool's lock: a refresh holds it while the zygote forks.
        if any(pool._loss() is not None for pool in list(pools_in_use)):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


#: When a pool last found a worker lost (monotonic seconds).
_loss_seen_at: float | None = None


def saw_a_loss() -> None:
    """Note that a pool found a worker lost (see :func:`worker_lost`)."""
    global _loss_seen_at
    _loss_seen_at = time.monotonic()


class _UnlessWorkerLost(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not worker_lost(LOSS_SHOWS_WITHIN_S)


def quiet_about_lost_workers() -> None:
    """Once a worker is lost, Beam's launcher-side threads each report its closed
    connections (a logged error or a thread's uncaught ``grpc.RpcError``, tracebacks
    all); the loss is reported once, as :class:`~openwit.errors.WorkerLost`'s one line.
    Nothing else is silenced: the filters pass everything while every worker lives."""
    global _default_excepthook
    if _default_excepthook is not None:
        return
    for name in _BEAM_LOSS_LOGGERS:
        logging.getLogger(name).addFilter(_UnlessWorkerLost())
    _default_excepthook = threading.excepthook

    def excepthook(args: threading.ExceptHookArgs) -> None:
        import grpc

        if isinstance(args.exc_value, grpc.RpcError) and worker_lost(LOSS_SHOWS_WITHIN_S):
            return
        _default_excepthook(args)  # type: ignore[misc]

    threading.excepthook = excepthook


_default_excepthook: Any = None


def fail_running_pipelines(error: Exception) -> None:
    """Fail every request Beam's runners in this process are waiting on with ``error``."""
    import gc

    from apache_beam.runners.portability.fn_api_runner.worker_handlers import ControlConnection

    for connection in [o for o in gc.get_objects() if isinstance(o, ControlConnection)]:
        # Not connection.abort(): it walks the live dict the runner's threads change.
        for future in list(connection._futures_by_id.values()):
            future.abort(error)
