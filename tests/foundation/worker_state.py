"""A worker state for the zygote's tests: prepared in the zygote, read in its workers."""

from __future__ import annotations

import os

PREPARED_IN: int | None = None


def prepare(tag: str) -> None:
    global PREPARED_IN
    PREPARED_IN = os.getpid()


def log_state(_: int, path: str) -> None:
    with open(path, "a") as handle:
        handle.write(f"{os.getpid()} {PREPARED_IN}\n")


def slow_prepare(seconds: float) -> None:
    import time

    time.sleep(seconds)
    prepare("slow")
