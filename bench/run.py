"""Run every ``bench/bench_*.py`` and collect their JSON lines into bench/results/latest.json.

Usage: ``python bench/run.py [NAME_FILTER ...]``. Each benchmark runs in its own process;
one that fails is reported and the others still run.
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
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "results": figures,
        "failures": failures,
    }
    RESULTS.mkdir(exist_ok=True)
    name = "latest.json" if not filters else f"latest-{'-'.join(filters)}.json"
    (RESULTS / name).write_text(json.dumps(report, indent=2) + "\n")
    width = max((len(f["name"]) for f in figures), default=10)
    for f in figures:
        print(f"{f['name']:<{width}}  {f['value']:>12.4g} {f['unit']:<10} ratio {f['ratio']}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
