"""Terminal output shared by the commands: progress on stderr, summary tables on stdout."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from openwit.funnel import Funnel, StageCounts

# Printed text is shown as is: paths, URLs, reasons and install hints ("openwit[gcp]") may
# hold square brackets, which rich would take for markup and drop. The few styled lines
# below ask for markup themselves and escape what they interpolate.
stdout = Console(soft_wrap=True, markup=False)
stderr = Console(stderr=True, soft_wrap=True, markup=False)


def error(message: str) -> None:
    """One line on stderr, the way every user error is reported."""
    stderr.print(f"[bold red]openwit: error:[/] {escape(message)}", highlight=False, markup=True)


def print_table(
    title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], console: Console = stdout
) -> None:
    """A summary table; numeric columns are right-aligned."""
    rows = [list(r) for r in rows]
    table = Table(title=title, title_justify="left")
    for index, name in enumerate(columns):
        numeric = bool(rows) and all(isinstance(r[index], int | float) for r in rows)
        table.add_column(name, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    console.print(table)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)


def top_reasons(rejected: dict[str, int], limit: int = 4) -> str:
    ordered = sorted(rejected.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = [f"{reason} {count:,}" for reason, count in ordered[:limit]]
    if len(ordered) > limit:
        shown.append(f"+{len(ordered) - limit} more")
    return ", ".join(shown)


def print_funnel(funnel: Funnel, manifest: dict[str, Any], console: Console = stdout) -> None:
    """The end-of-build table: one row per stage with its counts and timing."""
    rows = []
    for name, counts in funnel.stages.items():
        entry = manifest.get("stages", {}).get(name, {})
        rows.append(
            [
                name,
                entry.get("status", ""),
                counts.n_in,
                counts.n_out,
                counts.n_rejected,
                top_reasons(counts.rejected),
                float(entry.get("seconds", 0.0)),
            ]
        )
    print_table(
        "openwit build",
        ["stage", "status", "in", "out", "rejected", "top reasons", "seconds"],
        rows,
        console,
    )


class BuildReporter:
    """Draws stage progress of a build on stderr (a spinner while a stage runs)."""

    def __init__(self, console: Console = stderr) -> None:
        self.console = console
        self._status: Any = None

    def stage_started(self, stage: str) -> None:
        self._stop()
        self._status = Progress(
            SpinnerColumn(),
            TextColumn("stage [bold]{task.description}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("units"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self._task = self._status.add_task(stage, total=None)
        self._status.start()

    def stage_progress(self, stage: str, done: int, total: int) -> None:
        status = self._status
        if status is not None:
            status.update(self._task, completed=done, total=total)

    def _stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def stage_skipped(self, stage: str, counts: StageCounts) -> None:
        self.console.print(f"  {stage:<9} up to date ({counts.n_out:,} records)")

    def stage_finished(self, stage: str, counts: StageCounts, seconds: float) -> None:
        self._stop()
        self.console.print(
            f"  {stage:<9} done in {seconds:.1f} s: {counts.n_in:,} in, {counts.n_out:,} out, "
            f"{counts.n_rejected:,} rejected"
        )

    def stage_failed(self, stage: str, error: BaseException) -> None:
        from openwit.errors import interrupted

        self._stop()
        what = "interrupted" if interrupted(error) else type(error).__name__
        self.console.print(f"  {stage:<9} [red]failed[/]: {what}", markup=True)

    def stage_damaged(self, stage: str, problems: list[str]) -> None:
        more = f"; {len(problems) - 3} more" if len(problems) > 3 else ""
        shown = "; ".join(problems[:3]) + more
        self.console.print(
            f"  {stage:<9} [yellow]damaged[/]: {escape(shown)}: running it again", markup=True
        )


@contextmanager
def progress_bar(description: str, total: int | None = None) -> Iterator[Any]:
    """A progress bar on stderr; yields a callable ``advance(n=1)``.

    Hidden when stderr is not a terminal (logs of scheduled runs stay readable).
    """
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr,
        disable=not sys.stderr.isatty(),
        transient=True,
    )
    with progress:
        task = progress.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            progress.advance(task, n)

        yield advance
