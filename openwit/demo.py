"""``openwit demo``: every part that exists, run on a small bundled sample, offline.

The demo grows with the project: each step runs when its part is built and is listed as
"not built yet" otherwise, so ``make demo`` always shows where the project stands.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from openwit.console import print_table, stdout
from openwit.schemas import BUILD_STAGES


@dataclass
class DemoStep:
    name: str
    available: Callable[[], bool]
    run: Callable[[Path], str]  # returns a one-line result


def _module_exists(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _check_stack(out: Path) -> str:
    """Start a trivial Beam pipeline on the offline DirectRunner: the ground every stage uses."""
    from openwit.beam import new_pipeline

    started = time.perf_counter()
    import apache_beam as beam

    with new_pipeline() as pipeline:
        _ = pipeline | beam.Create(range(1000)) | beam.combiners.Count.Globally()
    return f"Beam DirectRunner (offline) ran a pipeline in {time.perf_counter() - started:.1f} s"


def _command(*path: str) -> Callable[[], bool]:
    def built() -> bool:
        from openwit.cli import app
        from openwit.stubs import command_is_built

        return command_is_built(app, *path)

    return built


def demo_steps() -> list[DemoStep]:
    from openwit.build import stage_is_built

    steps = [DemoStep("beam runner", lambda: True, _check_stack)]
    for command in (("queries", "build"), ("audit",), ("train",), ("eval",)):
        steps.append(DemoStep("openwit " + " ".join(command), _command(*command), lambda _out: ""))
    for stage in BUILD_STAGES:
        steps.append(
            DemoStep(f"build stage {stage}", lambda s=stage: stage_is_built(s), lambda _out: "")
        )
    return steps


def run_demo(out: Path) -> None:
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    stdout.print(f"openwit demo -> {out}")
    rows = []
    for step in demo_steps():
        if not step.available():
            rows.append([step.name, "not built yet", ""])
            continue
        rows.append([step.name, "ok", step.run(out)])
    print_table("openwit demo", ["part", "status", "result"], rows)
