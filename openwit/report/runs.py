"""What the build report shows of work done on the build's shards: an overlap audit
(``openwit audit`` output folder) and a training run (``openwit train`` run folder).

Both are optional: a folder that holds no audit or run gives None and a one-line note,
and the report is written without that section. Either may be a local folder or a URL.
"""

from __future__ import annotations

import json
import os
import posixpath
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from openwit import fs


def read_audit(
    folder: str | Path | None, report_dir: str | Path
) -> tuple[dict[str, Any] | None, str | None]:
    """``(audit summary, note)``: per-set overlap and accuracy, and the audit page's path
    relative to ``report_dir``, where the report is read (for a link)."""
    if folder is None:
        return None, None
    folder = fs.absolute(folder)
    try:
        audit = fs.read_json(fs.join(folder, "audit.json"))
        sets = [
            {k: s.get(k) for k in ("name", "n", "n_overlap", "overlap_rate", "acc_all",
                                   "acc_clean", "acc_overlap", "delta_all_minus_clean")}
            for s in audit["sets"]
        ]  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"no overlap audit in {folder} ({type(exc).__name__}): section left out"
    page = fs.join(folder, "index.html")
    return {
        "dir": folder,
        "page": relative_link(page, str(report_dir)) if fs.exists(page) else None,
        "model": audit.get("model"),
        "sets": sets,
    }, None


def relative_link(page: str, report_dir: str) -> str | None:
    """``page`` relative to ``report_dir`` when a browser can follow it from there: both
    on this machine, or both in the same bucket (a static website); else None."""
    if fs.is_local(page) and fs.is_local(report_dir):
        return os.path.relpath(fs.local_path(page), fs.local_path(report_dir))
    page_url, report_url = urlsplit(page), urlsplit(report_dir)
    if fs.is_local(page) or fs.is_local(report_dir) or page_url[:2] != report_url[:2]:
        return None
    return posixpath.relpath(page_url.path, report_url.path.rstrip("/") or "/")


def read_training(folder: str | Path | None) -> tuple[dict[str, Any] | None, str | None]:
    """``(training summary, note)``: zero-shot results against chance, steps, loss curve."""
    if folder is None:
        return None, None
    folder = fs.absolute(folder)
    try:
        evaluation = fs.read_json(fs.join(folder, "eval.json"))
        config = fs.read_json(fs.join(folder, "config.json"))
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
    loss = _loss_curve(fs.join(folder, "metrics.jsonl"))
    return {
        "dir": folder,
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


def _loss_curve(path: str) -> list[tuple[int, float]]:
    points = []
    try:
        lines = fs.read_text(path).splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            record = json.loads(line)
            points.append((int(record["step"]), float(record["loss"])))
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line of an interrupted run
    return points
