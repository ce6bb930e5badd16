"""``openwit audit`` (import-light: heavy work is imported inside the command)."""

from __future__ import annotations

from typing import Annotated

import typer


def audit(
    shards: Annotated[
        str,
        typer.Option(
            help="Shard directory: NNNNN.tar + NNNNN.parquet (openwit build); a path or a URL."
        ),
    ],
    eval_: Annotated[
        list[str],
        typer.Option("--eval", help="Evaluation image folder NAME=PATH (repeatable)."),
    ],
    out: Annotated[
        str, typer.Option(help="Report folder: audit.json, index.html; a path or a URL.")
    ],
    checkpoint: Annotated[
        str | None,
        typer.Option(help="Checkpoint for zero-shot accuracy on All/Clean/Overlap (path or URL)."),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="open_clip model name of the checkpoint.")
    ] = None,
    predictions: Annotated[
        list[str] | None,
        typer.Option(
            "--predictions",
            help="Precomputed zero-shot predictions NAME=FILE.parquet (path, correct), "
            "as `openwit eval` writes them; used instead of a checkpoint for that set.",
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="Device for zero-shot evaluation.")] = "cpu",
    phash_radius: Annotated[
        int | None, typer.Option(min=0, max=31, help="Detector pHash radius (default 8).")
    ] = None,
    dhash_radius: Annotated[
        int | None, typer.Option(min=-1, max=64, help="Detector dHash radius; -1 turns it off.")
    ] = None,
    max_pairs: Annotated[
        int, typer.Option(min=0, help="Matched pairs shown with thumbnails per set.")
    ] = 60,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Processes hashing eval images.")
    ] = None,
) -> None:
    """Overlap audit of evaluation sets against built shards (CLIP section 5).

    Splits every eval set into Overlap (a shard sample is a near copy) and Clean, and with a
    checkpoint or predictions compares zero-shot accuracy on All, Clean and Overlap with a
    one-sided binomial test and 99.5% Clopper-Pearson intervals.
    """
    import dataclasses

    from openwit import fs
    from openwit.console import print_table, stdout
    from openwit.dedup.audit import AuditRequest, run_audit
    from openwit.dedup.detector import Detector
    from openwit.evalsets import parse_eval_args, parse_named_paths

    detector = Detector()
    if phash_radius is not None:
        detector = dataclasses.replace(detector, phash_radius=phash_radius)
    if dhash_radius is not None:
        detector = dataclasses.replace(
            detector, dhash_radius=None if dhash_radius < 0 else dhash_radius
        )
    prediction_files = {
        name: path for name, path in parse_named_paths(predictions or [], "--predictions").items()
    }
    request = AuditRequest(
        shards=shards,
        eval_sets=parse_eval_args(eval_),
        out=out,
        detector=detector,
        predictions=prediction_files,
        checkpoint=checkpoint,
        model=model,
        device=device,
        max_pairs=max_pairs,
        workers=workers,
    )
    result = run_audit(request)
    rows = []
    for s in result["sets"]:
        p_value = s["p_value"]
        rows.append(
            [
                s["name"],
                s["n"],
                s["n_overlap"],
                _percent(s["overlap_rate"], 2),
                _percent(s["acc_all"]),
                _percent(s["acc_clean"]),
                _percent(s["acc_overlap"]),
                _points(s["delta_all_minus_clean"]),
                "" if p_value is None else f"{p_value:.3g}",
            ]
        )
    print_table(
        "openwit audit",
        [
            "eval set",
            "images",
            "overlap",
            "rate",
            "acc all",
            "acc clean",
            "acc overlap",
            "all-clean (pts)",
            "p-value",
        ],
        rows,
    )
    for s in result["sets"]:
        if s["n_unreadable"]:
            stdout.print(
                f"{s['name']}: {s['n_unreadable']} unreadable images, left out of the overlap "
                "rate and the accuracies"
            )
        if s["acc_all"] is not None and s["p_value"] is None:
            stdout.print(f"{s['name']}: no test: {s['test_note']}")
    stdout.print(f"report: {fs.join(out, 'index.html')}", highlight=False)


def _points(value: float | None) -> str:
    return "" if value is None else f"{100 * value:+.1f}"


def _percent(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{100 * value:.{digits}f}%"


def register(root: typer.Typer) -> None:
    root.command("audit")(audit)
