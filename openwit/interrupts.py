"""What a Ctrl-C must stop at once: work this process runs on thread pools of its own.

At exit Python joins every ``ThreadPoolExecutor`` thread, and each first drains its queue:
a download stage running in the launcher, with hundreds of fetches queued against a server
that does not answer, held an interrupted ``openwit build`` for a minute (100 URLs, 5 s
timeouts: 68 s). Parts that run such pools register a stop here; the CLI calls
:func:`stop_background_work` once it has said the command was interrupted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

_stops: list[Callable[[], None]] = []


def on_interrupt(stop: Callable[[], None]) -> None:
    """Call ``stop`` (cancel queued work, wake blocked threads) when the user interrupts."""
    _stops.append(stop)


def stop_background_work() -> None:
    """Every registered stop, each once; one that fails does not keep the others from
    running (the process is leaving)."""
    while _stops:
        stop = _stops.pop()
        with contextlib.suppress(Exception):
            stop()
