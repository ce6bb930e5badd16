"""What every benchmark shares: the JSON line it prints and a timer.

Each figure is one JSON line: ``{"name", "value", "unit", "baseline", "baseline_value",
"ratio"}`` with ``ratio = value / baseline_value``, both measured in the same run. For
throughputs (``.../s``) a ratio above 1 means openwit is faster; for times (``s``) a ratio
below 1 does.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
NETGUARD = REPO / "tests" / "netguard"


def emit(
    name: str,
    value: float,
    unit: str,
    baseline: str,
    baseline_value: float,
    **extra: Any,
) -> dict[str, Any]:
    """Print one figure as a JSON line and return it."""
    record = {
        "name": name,
        "value": round(value, 6),
        "unit": unit,
        "baseline": baseline,
        "baseline_value": round(baseline_value, 6),
        "ratio": round(value / baseline_value, 4) if baseline_value else None,
        **extra,
    }
    print(json.dumps(record), flush=True)
    return record


def median_time(fn: Callable[[], Any], repeats: int = 5) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs, in seconds."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def guarded_env() -> dict[str, str]:
    """Environment for subprocesses: the loopback-only network guard of the tests."""
    path = os.pathsep.join(filter(None, [str(NETGUARD), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "NO_ALBUMENTATIONS_UPDATE": "1"}


def install_guard() -> None:
    """Benchmarks never send traffic outside loopback, even through a library's default."""
    sys.path.insert(0, str(NETGUARD))
    import openwit_netguard

    openwit_netguard.install()
