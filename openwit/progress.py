"""What a build tells the person or scheduler watching it: stage events and unit progress.

The runner sends its events to a :class:`Reporter`: the CLI draws them (tables and progress
bars, :mod:`openwit.console`), Airflow logs them. :class:`UnitProgress` turns a running
pass's done markers into progress events, the only way the launcher sees work that runs on
other machines.
"""

from __future__ import annotations

import threading
from typing import Protocol

from openwit import fs
from openwit.funnel import StageCounts
from openwit.outputs import is_done_marker


class Reporter(Protocol):
    """Receives progress events; the CLI draws them, Airflow logs them."""

    def stage_started(self, stage: str) -> None: ...
    def stage_skipped(self, stage: str, counts: StageCounts) -> None: ...
    def stage_finished(self, stage: str, counts: StageCounts, seconds: float) -> None: ...
    def stage_failed(self, stage: str, error: BaseException) -> None: ...
    def stage_damaged(self, stage: str, problems: list[str]) -> None: ...
    def stage_progress(self, stage: str, done: int, total: int) -> None: ...


class SilentReporter:
    def stage_started(self, stage: str) -> None:
        pass

    def stage_skipped(self, stage: str, counts: StageCounts) -> None:
        pass

    def stage_finished(self, stage: str, counts: StageCounts, seconds: float) -> None:
        pass

    def stage_failed(self, stage: str, error: BaseException) -> None:
        pass

    def stage_damaged(self, stage: str, problems: list[str]) -> None:
        pass

    def stage_progress(self, stage: str, done: int, total: int) -> None:
        pass


class UnitProgress:
    """Counts a pass's finished units (their done markers in the attempt) while it runs,
    for the reporter's progress bar: the runner sees the work only through the files."""

    #: Seconds between listings: a local directory is cheap, a bucket listing less so.
    LOCAL_INTERVAL, REMOTE_INTERVAL = 0.5, 3.0

    def __init__(self, stage: str, attempt: str, reporter: Reporter) -> None:
        self.stage, self.attempt, self.reporter = stage, attempt, reporter
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _markers(self) -> int:
        try:
            return sum(1 for url in fs.list_files(self.attempt) if is_done_marker(url))
        except Exception:  # progress is a courtesy; never a reason to fail
            return 0

    def start(self, total: int) -> None:
        self.stop()
        self._stop = stop = threading.Event()
        before = self._markers()
        interval = self.LOCAL_INTERVAL if fs.is_local(self.attempt) else self.REMOTE_INTERVAL

        def poll() -> None:
            while True:
                done = min(total, self._markers() - before)
                self.reporter.stage_progress(self.stage, done, total)
                if stop.wait(interval):
                    return

        self._thread = threading.Thread(target=poll, name="openwit-progress", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
