"""Duplicate-detector quality on real photographs: precision and recall per crawl transform.

The labelled set is :func:`bench.detector_quality.build_labelled_set` (photographs shipped
inside scikit-image, their crawl copies, look-alike negatives). For each transform the
figure is the recall of openwit's eval detector, with plain imagehash pHash at the same
radius as the baseline; precision rides along. The full tables -- the ladder from plain
pHash to the final detector, and a sweep of radii -- are written to
``bench/results/dedup-detector.md`` (docs/dedup.md keeps a copy).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from common import emit, install_guard

install_guard()

RESULTS = Path(__file__).resolve().parent / "results"


def fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def ladder_table(results: dict, kinds: list[str]) -> str:
    labels = list(results)
    lines = [
        "| transform | positives | " + " | ".join(f"{label} R / P" for label in labels) + " |",
        "|---|---:|" + "---:|" * len(labels),
    ]
    for kind in kinds:
        first = results[labels[0]][kind]
        cells = []
        for label in labels:
            row = results[label][kind]
            if row["positives"]:
                cells.append(f"{fmt(row['recall'])} / {fmt(row['precision'])}")
            else:
                cells.append(f"{row['false_matches']} false of {row['negative_pairs']:,}")
        lines.append(f"| {kind} | {first['positives']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sweep_table(rows: list[dict]) -> str:
    lines = [
        "| pHash radius | dHash radius | recall | precision | false matches | worst transform |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        dhash = "off" if r["dhash_radius"] is None else r["dhash_radius"]
        lines.append(
            f"| {r['phash_radius']} | {dhash}"
            f" | {fmt(r['recall'])} | {fmt(r['precision'])} | {r['false_matches']}"
            f" | {fmt(r['worst_transform_recall'])} |"
        )
    return "\n".join(lines)


def main() -> None:
    from bench.detector_quality import (
        LOOKALIKE,
        build_labelled_set,
        default_settings,
        evaluate,
        radius_sweep,
    )
    from openwit.dedup.detector import Detector

    detector = Detector()
    labelled = build_labelled_set()
    settings = default_settings(detector.phash_radius, detector.dhash_radius)
    results = evaluate(labelled, settings)
    final, plain = results[settings[-1].label], results[settings[0].label]
    kinds = list(final)
    for kind in kinds:
        if kind == LOOKALIKE:
            continue
        emit(
            f"detector_recall[{kind}]",
            final[kind]["recall"],
            "recall",
            f"plain pHash<={detector.phash_radius}",
            plain[kind]["recall"],
            precision=final[kind]["precision"],
            false_matches=final[kind]["false_matches"],
        )
    emit(
        "detector_lookalike_false_matches",
        final[LOOKALIKE]["false_matches"],
        "pairs",
        "plain pHash",
        plain[LOOKALIKE]["false_matches"],
        negative_pairs=final[LOOKALIKE]["negative_pairs"],
    )
    sweep = radius_sweep(labelled, detector, [4, 6, 8, 10, 12], [None, 10, 14, 18])
    near = radius_sweep(
        labelled, Detector(12, None, flip=False, crop_steps=()), [2, 4, 6, 8], [None, 14]
    )
    report = "\n\n".join(
        [
            f"# Detector quality ({datetime.now(UTC).date()}, {len(labelled.eval_names)} eval "
            f"images, {len(labelled.pool_images)} pool images)",
            f"Ladder at pHash<={detector.phash_radius}, dHash<={detector.dhash_radius} "
            "(R = recall, P = precision):",
            ladder_table(results, kinds),
            f"Eval detector ({detector.name}), radii swept:",
            sweep_table(sweep),
            "Build near-duplicate rule (trimmed pHash, no variants), radii swept; it is not "
            "meant to catch mirrors or crops, so its worst transform is a mirror (0):",
            sweep_table(near),
        ]
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dedup-detector.md").write_text(report + "\n")


if __name__ == "__main__":
    main()
