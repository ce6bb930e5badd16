"""What the build report shows of work done on the build's shards: an overlap audit
(``openwit audit`` output folder) and a training run (``openwit train`` run folder).

Both are optional: a folder that holds no audit or run gives None and a one-line note,
and the report is written without that section.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from openwit.io import read_json


def read_audit(folder: Path | None, report_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``(audit summary, note)``: per-set overlap and accuracy, and the audit page's path
    relative to ``report_dir`` (for a link)."""
    if folder is None:
        return None, None
    try:
        audit = read_json(folder / "audit.json")
        sets = [
            {k: s.get(k) for k in ("name", "n", "n_overlap", "overlap_rate", "acc_all",
                                   "acc_clean", "acc_overlap", "delta_all_minus_clean")}
            for s in audit["sets"]
        ]  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"no overlap audit in {folder} ({type(exc).__name__}): section left out"
    page = folder / "index.html"
    return {
        "dir": str(folder),
        "page": os.path.relpath(page, report_dir) if page.is_file() else None,
        "model": audit.get("model"),
        "sets": sets,
    }, None


def read_training(folder: Path | None) -> tuple[dict[str, Any] | None, str | None]:
    """``(training summary, note)``: zero-shot results against chance, steps, loss curve."""
    if folder is None:
        return None, None
    try:
        evaluation = read_json(folder / "eval.json")
        config = read_json(folder / "config.json")
        results = [
            {
                "name": name,
                "top1": r.get("top1"),
                "top5": r.get("top5"),
                "chance_top1": r.get("chance_top1"),
                "n": r.get("n"),
                "classes": r.get("classes"),
            }
            for name, r in evaluation["sets"].items()
        ]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return None, f"no training run in {folder} ({type(exc).__name__}): section left out"
    loss = _loss_curve(folder / "metrics.jsonl")
    return {
        "dir": str(folder),
        "model": evaluation.get("model") or config.get("model"),
        "steps": loss[-1][0] if loss else config.get("steps"),
        "batch_size": config.get("batch_size"),
        "lr": config.get("lr"),
        "seed": config.get("seed"),
        "first_loss": loss[0][1] if loss else None,
        "last_loss": loss[-1][1] if loss else None,
        "loss_curve": loss,
        "eval": results,
    }, None


def _loss_curve(path: Path) -> list[tuple[int, float]]:
    points = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            record = json.loads(line)
            points.append((int(record["step"]), float(record["loss"])))
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line of an interrupted run
    return points
