"""Running one build stage on its own, as the runner would, for stage tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openwit import fs
from openwit.config import BuildConfig
from openwit.outputs import StageTotals, collect_totals
from openwit.resources import Resources
from openwit.stage import Stage, StageContext, StageResult


def run_stage(
    stage: Stage,
    config: BuildConfig,
    inputs: Sequence[Any],
    attempt: Path,
    resume: bool = False,
    build_dir: Path | None = None,
) -> tuple[StageResult, StageTotals, dict[str, Any]]:
    """Run ``stage`` over ``inputs`` (Parquet files) into ``attempt``; returns its result,
    the totals of its done markers and what ``finalize`` reported."""
    ctx = StageContext(
        stage.name,
        config,
        str(build_dir or attempt.parent),
        str(attempt),
        [str(path) for path in inputs],
        Resources(1, config.download.threads_per_worker),
        resume,
    )
    result = stage.run(ctx)
    totals = collect_totals(fs.list_files(str(attempt)))
    return result, totals, stage.finalize(ctx, totals)


def files(attempt: Path, pattern: str) -> list[Path]:
    return sorted(attempt.glob(pattern))
