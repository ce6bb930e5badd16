"""Run every ``bench/bench_*.py`` and collect their JSON lines into bench/results/latest.json.

Usage: ``python bench/run.py [NAME_FILTER ...]``. Each benchmark runs in its own process;
one that fails is reported and the others still run. With filters, only the matching
benchmarks run and their figures replace theirs in latest.json (each figure has its date).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
REQUIRED = {"name", "value", "unit", "baseline", "baseline_value", "ratio"}


def run_one(script: Path) -> tuple[list[dict], str | None]:
    env = {**os.environ, "PYTHONPATH": str(BENCH), "NO_ALBUMENTATIONS_UPDATE": "1"}
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=BENCH.parent
    )
    figures = []
    for line in proc.stdout.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.keys() >= REQUIRED:
            record["bench"] = script.stem
            figures.append(record)
    elapsed = time.perf_counter() - started
    print(f"{script.stem}: {len(figures)} figures in {elapsed:.0f} s", file=sys.stderr)
    error = None
    if proc.returncode != 0:
        error = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"
        print(f"  FAILED: {error}", file=sys.stderr)
    return figures, error


def main(filters: list[str]) -> int:
    scripts = sorted(BENCH.glob("bench_*.py"))
    if filters:
        scripts = [s for s in scripts if any(f in s.stem for f in filters)]
    figures, failures = [], {}
    for script in scripts:
        found, error = run_one(script)
        figures.extend(found)
        if error:
            failures[script.stem] = error
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for figure in figures:
        figure["date"] = now
    path = RESULTS / "latest.json"
    previous = json.loads(path.read_text()) if filters and path.is_file() else {}
    rerun = {script.stem for script in scripts}
    # A filtered run replaces the figures of the benchmarks it ran and keeps the others.
    kept = [f for f in previous.get("results", []) if f.get("bench") not in rerun]
    old_failures = {k: v for k, v in previous.get("failures", {}).items() if k not in rerun}
    report = {
        "date": now,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "results": kept + figures,
        "failures": {**old_failures, **failures},
    }
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    width = max((len(f["name"]) for f in figures), default=10)
    for f in figures:
        print(f"{f['name']:<{width}}  {f['value']:>12.4g} {f['unit']:<10} ratio {f['ratio']}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
