"""``openwit demo``: every part of openwit, run on a small bundled sample, offline.

The demo is a chain of parts, one module each in this package, run in data-flow order:

1. ``queries`` -- build the query list from the bundled Wikipedia sample (``data/``)
2. ``build``   -- serve the demo world's images on loopback, write crawl inputs
   (``inputs``) and run ``openwit build`` through all stages
3. ``train``   -- train the tiny model on the shards, zero-shot eval
4. ``audit``   -- overlap audit of the eval set against the shards
5. ``report``  -- the build report and dataset card, with the audit and the training run

Each part is a module with ``run(ctx: DemoContext) -> str`` that reads what earlier parts
left in the context, adds its own results, and returns a one-line summary. ``world`` draws
the images, captions and eval sets they share; ``shards`` writes shards without a build,
for parts run on their own (tests).
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openwit.console import print_table, stdout

#: (part name, module) in the order they run.
DEMO_PARTS: tuple[tuple[str, str], ...] = (
    ("queries", "openwit.demo.queries"),
    ("build", "openwit.demo.build"),
    ("train", "openwit.demo.train"),
    ("audit", "openwit.demo.audit"),
    ("report", "openwit.demo.report"),
)


@dataclass
class DemoContext:
    """What the demo parts hand to each other. Paths are absolute, under ``out``."""

    out: Path
    queries: Path | None = None  # queries.parquet (queries part)
    eval_sets: dict[str, Path] = field(default_factory=dict)  # name -> image folder
    build_dir: Path | None = None  # the build directory (build part)
    shards: Path | None = None  # build_dir / "shards"
    model: str = "openwit-tiny"
    checkpoint: Path | None = None  # trained checkpoint (train part)
    train_run: Path | None = None  # the training run's folder (train part)
    audit_dir: Path | None = None  # the overlap audit's folder (audit part)
    report: Path | None = None  # the build report (report part)
    card: Path | None = None  # the dataset card (report part)
    results: dict[str, Any] = field(default_factory=dict)  # part name -> small JSON values


def run_demo(out: Path) -> DemoContext:
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    stdout.print(f"openwit demo -> {out}")
    ctx = DemoContext(out=out)
    rows = []
    for name, module_name in DEMO_PARTS:
        part = importlib.import_module(module_name).run
        started = time.perf_counter()
        summary = part(ctx)
        rows.append([name, "ok", summary, round(time.perf_counter() - started, 1)])
    print_table("openwit demo", ["part", "status", "result", "seconds"], rows)
    for what, path in (
        ("build report", ctx.report),
        ("dataset card", ctx.card),
        ("audit report", ctx.audit_dir / "index.html" if ctx.audit_dir else None),
    ):
        if path is not None:
            stdout.print(f"{what + ':':<14}{_shown(path)}", highlight=False)
    return ctx


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it (as a user typed
    ``--out demo-out``), else as it is."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
