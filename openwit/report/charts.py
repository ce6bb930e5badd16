"""The build report's charts: matplotlib PNG files beside ``index.html``.

Each function draws one chart from the report's facts into a folder and returns the file
name, or None when there is nothing to draw (no download failed, no duplicates...): the
page then says so in words.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openwit.report.html import KEPT, OTHER, REFERENCE, REJECTED, figure, save

FUNNEL = "funnel.png"
QUERIES = "query_counts.png"
LANGUAGES = "languages.png"
CAPTIONS = "caption_lengths.png"
SIZES = "image_sizes.png"
ASPECTS = "aspect_ratios.png"
FAILURES = "download_failures.png"
DUPLICATES = "duplicate_groups.png"
TIMINGS = "timings.png"
LOSS = "training_loss.png"


def _counts(ax: Any, axis: str = "x") -> None:
    """Whole-number ticks with thousands separators on a count axis."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(MaxNLocator(integer=True))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))


def funnel(rows: list[dict[str, Any]], out: Path) -> str:
    """Per stage, top to bottom: records passed on and records rejected."""
    names = [r["stage"] for r in rows][::-1]
    kept = [r["out"] for r in rows][::-1]
    rejected = [r["n_rejected"] for r in rows][::-1]
    fig, ax = figure(8.0, 0.45 * len(rows) + 1.2)
    ax.barh(names, kept, color=KEPT, label="passed on")
    ax.barh(names, rejected, left=kept, color=REJECTED, label="rejected")
    for y, (k, r) in enumerate(zip(kept, rejected)):
        ax.annotate(f"{k:,} + {r:,}", (k + r, y), xytext=(4, 0), textcoords="offset points",
                    va="center", fontsize=8)  # fmt: skip
    ax.set_xlim(0, max(k + r for k, r in zip(kept, rejected)) * 1.25 or 1)
    ax.set_xlabel("records entering the stage")
    _counts(ax)
    ax.legend(fontsize=8, loc="lower right", frameon=False)
    save(fig, out / FUNNEL)
    return FUNNEL


def query_counts(queries: dict[str, Any], series: dict[str, Any], out: Path) -> str | None:
    """Matches per query by rank, before and after balancing, log-log, with the cap."""
    before, after = series.get("query_counts_before"), series.get("query_counts_after")
    if not before:
        return None
    fig, ax = figure(7.0, 3.6)
    ranks = range(1, len(before) + 1)
    ax.loglog(ranks, before, color=REJECTED, label="before balancing", linewidth=1.4)
    ax.loglog(ranks, after, color=KEPT, label="after balancing", linewidth=1.4, linestyle="--")
    cap = queries.get("cap")
    if cap:
        ax.axhline(cap, color=REFERENCE, linewidth=0.9, linestyle=":")
        ax.annotate(f"cap t = {cap:,}", (1, cap), xytext=(4, 3), textcoords="offset points",
                    fontsize=8, color=REFERENCE)  # fmt: skip
        ax.set_ylim(top=max(max(before), cap) * 2)
    ax.set_xlabel("query rank (by matches before balancing)")
    ax.set_ylabel("matched pairs")
    ax.legend(fontsize=8, frameon=False)
    save(fig, out / QUERIES)
    return QUERIES


def languages(text: dict[str, Any], out: Path, limit: int = 15) -> str | None:
    rows = text["languages"][:limit]
    if not rows:
        return None
    names = [r[0] for r in rows][::-1]
    kept, rejected = [r[1] for r in rows][::-1], [r[2] for r in rows][::-1]
    fig, ax = figure(6.5, 0.32 * len(rows) + 1.2)
    ax.barh(names, kept, color=KEPT, label="kept")
    ax.barh(names, rejected, left=kept, color=REJECTED, label="rejected for language")
    ax.set_xlabel("captions (text stage)")
    _counts(ax)
    ax.legend(fontsize=8, loc="lower right", frameon=False)
    save(fig, out / LANGUAGES)
    return LANGUAGES


def caption_lengths(series: dict[str, Any], out: Path, width: int = 10) -> str | None:
    counts = series.get("caption_chars") or []
    if not any(counts):
        return None
    last = max(i for i, c in enumerate(counts) if c)
    bins = [sum(counts[i : i + width]) for i in range(0, last + 1, width)]
    fig, ax = figure(7.0, 3.0)
    ax.bar([i * width for i in range(len(bins))], bins, width=width, align="edge", color=KEPT)
    ax.set_xlabel(f"caption length (characters, bins of {width})")
    ax.set_ylabel("samples")
    _counts(ax, "y")
    save(fig, out / CAPTIONS)
    return CAPTIONS


def image_sizes(series: dict[str, Any], min_side: int | None, out: Path) -> str | None:
    sizes = series.get("original_sizes") or []
    if not sizes:
        return None
    widths = [w for (w, _), _ in sizes]
    heights = [h for (_, h), _ in sizes]
    counts = [c for _, c in sizes]
    top = max(counts)
    fig, ax = figure(5.2, 4.2)
    ax.scatter(widths, heights, s=[12 + 240 * (c / top) ** 0.5 for c in counts], color=KEPT,
               alpha=0.55, edgecolors="none")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    if min_side:
        ax.axvline(min_side, color=REFERENCE, linewidth=0.8, linestyle=":")
        ax.axhline(min_side, color=REFERENCE, linewidth=0.8, linestyle=":")
        ax.annotate(f"min side {min_side}", (min_side, min_side), xytext=(4, -12),
                    textcoords="offset points", fontsize=8, color=REFERENCE)  # fmt: skip
    ax.set_xlabel("original width (px)")
    ax.set_ylabel("original height (px)")
    ax.set_title("Downloaded images (area: how many)", fontsize=10)
    save(fig, out / SIZES)
    return SIZES


def aspect_ratios(images: dict[str, Any], out: Path) -> str | None:
    rows = images.get("aspect_classes") or []
    if not rows:
        return None
    fig, ax = figure(6.5, 2.8)
    ax.bar([r[0] for r in rows], [r[1] for r in rows], color=OTHER, width=0.6)
    ax.set_ylabel("downloaded images")
    _counts(ax, "y")
    ax.tick_params(axis="x", labelsize=8)
    save(fig, out / ASPECTS)
    return ASPECTS


def download_failures(downloads: dict[str, Any] | None, out: Path) -> str | None:
    reasons = (downloads or {}).get("reasons") or {}
    if not reasons:
        return None
    names = list(reasons)[::-1]
    fig, ax = figure(6.5, 0.32 * len(names) + 1.2)
    ax.barh(names, [reasons[n] for n in names], color=REJECTED)
    ax.set_xlabel("failed downloads")
    _counts(ax)
    save(fig, out / FAILURES)
    return FAILURES


def duplicate_groups(duplicates: dict[str, Any], out: Path) -> str | None:
    kinds = [
        (k, duplicates[k]["group_sizes"]) for k in ("exact", "near") if duplicates[k]["groups"]
    ]
    if not kinds:
        return None
    sizes = sorted({size for _, rows in kinds for size, _ in rows})
    fig, ax = figure(min(6.0, 4.0 + 0.6 * len(sizes)), 3.0)
    width = 0.3
    for index, (kind, rows) in enumerate(kinds):
        groups = dict(rows)
        xs = [i + index * width for i in range(len(sizes))]
        ax.bar(xs, [groups.get(s, 0) for s in sizes], width=width, label=kind,
               color=(KEPT, OTHER)[index])  # fmt: skip
    ax.set_xticks([i + width * (len(kinds) - 1) / 2 for i in range(len(sizes))], sizes)
    ax.set_xlim(-0.6, len(sizes) - 0.4 + width)
    ax.set_xlabel("group size (the kept record and its duplicates)")
    ax.set_ylabel("groups")
    _counts(ax, "y")
    ax.legend(fontsize=8, frameon=False)
    save(fig, out / DUPLICATES)
    return DUPLICATES


def timings(rows: list[list[Any]], out: Path) -> str:
    names = [r[0] for r in rows][::-1]
    seconds = [r[1] or 0.0 for r in rows][::-1]
    fig, ax = figure(6.5, 0.32 * len(rows) + 1.2)
    ax.barh(names, seconds, color=KEPT)
    ax.set_xlabel("seconds (the stage's last run)")
    save(fig, out / TIMINGS)
    return TIMINGS


def training_loss(points: list[tuple[int, float]], out: Path) -> str | None:
    if len(points) < 2:
        return None
    fig, ax = figure(6.5, 3.0)
    ax.plot([p[0] for p in points], [p[1] for p in points], color=KEPT)
    ax.set_xlabel("step")
    ax.set_ylabel("contrastive loss")
    save(fig, out / LOSS)
    return LOSS
