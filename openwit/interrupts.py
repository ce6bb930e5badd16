"""What a Ctrl-C must stop at once: work this process runs on thread pools of its own.

At exit Python joins every ``ThreadPoolExecutor`` thread, and each first drains its queue:
a download stage running in the launcher, with hundreds of fetches queued against a server
that does not answer, held an interrupted ``openwit build`` for a minute (100 URLs, 5 s
timeouts: 68 s). Parts that run such pools register a stop here; the CLI calls
:func:`stop_background_work` once it has said the command was interrupted.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from typing import Any

#: Weak references: registering keeps nothing alive (a test makes many downloaders, each
#: with thread pools that end when it is collected).
_stops: list[weakref.WeakMethod[Any]] = []


def on_interrupt(stop: Callable[[], None]) -> None:
    """Call the bound method ``stop`` (cancel queued work, wake blocked threads) when the
    user interrupts, if its object is still alive then."""
    _stops[:] = [ref for ref in _stops if ref() is not None]
    _stops.append(weakref.WeakMethod(stop))  # type: ignore[arg-type]


def stop_background_work() -> None:
    """Every registered stop whose object is alive, each once; one that fails does not keep
    the others from running (the process is leaving)."""
    while _stops:
        stop = _stops.pop()()
        if stop is not None:
            with contextlib.suppress(Exception):
                stop()
