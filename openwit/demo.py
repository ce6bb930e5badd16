"""``openwit demo``: every part that exists, run on a small bundled sample, offline.

The demo is a chain of parts, each owned by its package and run in order:

1. ``openwit.queries.demo``  -- build the query list from the bundled Wikipedia sample
2. ``openwit.pipeline.demo`` -- serve the demo images on loopback and run ``openwit build``
3. ``openwit.train.demo``    -- train the tiny model on the shards, zero-shot eval
4. ``openwit.dedup.demo``    -- overlap audit of the eval set against the shards

Each part is a module with ``run(ctx: DemoContext) -> str`` that reads what earlier parts
left in the context, adds its own results, and returns a one-line summary.
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
    ("queries", "openwit.queries.demo"),
    ("build", "openwit.pipeline.demo"),
    ("train", "openwit.train.demo"),
    ("audit", "openwit.dedup.demo"),
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
    return ctx
