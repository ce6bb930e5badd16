"""End-of-command tables for ``openwit train`` and ``openwit eval``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openwit.console import print_table, stdout


@dataclass
class RunSummary:
    """What a training run reports at its end (the table, the demo, the CLI)."""

    run_dir: str  # a path or a URL
    steps: int = 0
    start_step: int = 0
    samples: int = 0
    loss: float | None = None
    first_loss: float | None = None
    logit_scale: float | None = None
    samples_per_s: float | None = None
    data_share: float | None = None
    mfu: float | None = None
    shards_failed: int = 0
    samples_skipped: int = 0
    checkpoint: str | None = None  # a path or a URL
    eval: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    precision: str = "fp32"
    decode: str = "workers"
    compiled: bool = False
    world_size: int = 1
    seconds: float = 0.0


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def print_run_summary(summary: RunSummary) -> None:
    """The table at the end of ``openwit train`` (MFU only where it is known: a GPU)."""
    rows = [
        ["steps", f"{summary.start_step:,} -> {summary.start_step + summary.steps:,}"],
        ["samples", f"{summary.samples:,}"],
        ["loss", f"{_num(summary.first_loss)} -> {_num(summary.loss)}"],
        ["logit scale", _num(summary.logit_scale, 2)],
        ["samples/s", _num(summary.samples_per_s, 1)],
        ["data time share", _pct(summary.data_share)],
        ["device", f"{summary.device} x {summary.world_size}, {summary.precision}"],
        ["decode", summary.decode + (", compiled" if summary.compiled else "")],
        ["shards skipped", f"{summary.shards_failed:,}"],
        ["samples skipped", f"{summary.samples_skipped:,}"],
        ["seconds", f"{summary.seconds:,.1f}"],
    ]
    if summary.mfu is not None:
        rows.insert(5, ["MFU", _pct(summary.mfu)])
    for name, result in summary.eval.items():
        rows.append(
            [
                f"zero-shot {name}",
                f"top-1 {_pct(result['top1'])}, top-5 {_pct(result['top5'])} "
                f"(chance {_pct(result['chance_top1'])})",
            ]
        )
    rows.append(["checkpoint", str(summary.checkpoint or "")])
    print_table(f"openwit train: {summary.run_dir}", ["", "value"], rows)


def print_eval_results(results: dict[str, Any], out: str | Path) -> None:
    rows = [
        [
            name,
            r["n"],
            r["classes"],
            _pct(r["top1"]),
            _pct(r["top5"]),
            _pct(r["chance_top1"]),
        ]
        for name, r in results.items()
    ]
    print_table("openwit eval", ["set", "images", "classes", "top-1", "top-5", "chance"], rows)
    stdout.print(f"wrote {out}")
