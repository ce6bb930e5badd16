"""The numbers of a build report, read from the build's own files through :class:`BuildDir`.

:func:`collect` returns :class:`Facts`: ``summary`` (JSON values, written beside the page
as ``report.json``, the source of every number on the page and in the dataset card) and
``series`` (longer arrays only the charts need). Column reads go file by file and keep
aggregates (counts per value, histograms), never a whole column of a large build.

Where the build keeps no table for a question, the answer is derived from stage outputs:
download failures by host and duplicate groups are joined from the rejections
(:mod:`.rejection_facts`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from openwit.builddir import BuildDir
from openwit.report.counting import TOP, strings, value_counts
from openwit.report.rejection_facts import downloads, duplicates

#: Caption lengths are counted per character up to this length; longer ones in one bin.
MAX_CAPTION_CHARS = 1000
#: Language ID rejections carry "LANG SCORE" as their detail (pipeline/text.py).
LANGUAGE_REASONS = ("not_allowed_language", "uncertain_language")


@dataclass
class Facts:
    summary: dict[str, Any]
    series: dict[str, Any] = field(default_factory=dict)


def collect(build: BuildDir) -> Facts:
    """Everything the report shows about ``build`` (a complete build)."""
    manifest, funnel = build.manifest(), build.funnel()
    facts = Facts(summary={})
    s = facts.summary
    s["build"] = _build_info(build, manifest)
    s["funnel"] = _funnel(funnel, manifest)
    s["counts"] = _counts(build, s["funnel"], manifest)
    s["queries"] = _queries(build, manifest, facts.series)
    s["text"] = _text(build, facts.series)
    s["images"] = _images(build, facts.series)
    s["downloads"] = downloads(build, funnel)
    s["duplicates"] = duplicates(build, funnel)
    s["eval_overlap"] = _eval_overlap(build, manifest)
    s["timings"] = _timings(s["funnel"])
    return facts


# -- the build itself --------------------------------------------------------------------------
def _build_info(build: BuildDir, manifest: dict[str, Any]) -> dict[str, Any]:
    return {
        "dir": str(build.root),
        "created": manifest.get("created"),
        "complete": bool(manifest.get("complete")),
        "config_hash": manifest.get("config_hash"),
        "openwit_version": manifest.get("openwit_version"),
        "versions": manifest.get("versions", {}),
        "config": manifest.get("config", {}),
    }


def _funnel(funnel: dict[str, Any], manifest: dict[str, Any]) -> list[dict[str, Any]]:
    stages = manifest.get("stages", {})
    rows = []
    for name in manifest.get("stage_order") or list(funnel):
        if name not in funnel:
            continue
        counts, entry = funnel[name], stages.get(name, {})
        rejected = dict(sorted(counts.get("rejected", {}).items(), key=lambda kv: (-kv[1], kv[0])))
        rows.append(
            {
                "stage": name,
                "in": counts["in"],
                "out": counts["out"],
                "rejected": rejected,
                "n_rejected": sum(rejected.values()),
                "status": entry.get("status"),
                "seconds": entry.get("seconds"),
            }
        )
    return rows


def funnel_law_holds(rows: list[dict[str, Any]]) -> bool:
    """Every stage's in is its out plus its rejections, and each out the next stage's in."""
    balanced = all(r["in"] == r["out"] + r["n_rejected"] for r in rows)
    chained = all(a["out"] == b["in"] for a, b in pairwise(rows))
    return balanced and chained


def _counts(build: BuildDir, rows: list[dict[str, Any]], manifest: dict[str, Any]) -> dict:
    sizes = build.shard_sizes()
    shard_stats = manifest.get("stages", {}).get("shard", {}).get("stats", {})
    return {
        "input_records": rows[0]["in"] if rows else 0,
        "samples": sum(sizes.values()),
        "shards": len(sizes),
        "rejected": sum(r["n_rejected"] for r in rows),
        "tar_bytes": shard_stats.get("tar_bytes"),
        "funnel_law": funnel_law_holds(rows),
    }


# -- queries and balancing ---------------------------------------------------------------------
def _queries(build: BuildDir, manifest: dict[str, Any], series: dict[str, Any]) -> dict | None:
    files = build.stage_files("balance", "query_counts.parquet")
    if not files:
        return None
    table = build.read_table(files, ["query", "count_before", "count_after"])
    rows = sorted(
        zip(*(table.column(c).to_pylist() for c in ("query", "count_before", "count_after"))),
        key=lambda r: (-r[1], r[0]),
    )
    stats = manifest.get("stages", {}).get("balance", {}).get("stats", {})
    cap = stats.get("max_per_query") or manifest.get("config", {}).get("balance", {}).get(
        "max_per_query"
    )
    series["query_counts_before"] = [r[1] for r in rows]
    series["query_counts_after"] = sorted((r[2] for r in rows), reverse=True)
    listed = _query_list_size(manifest.get("config", {}).get("queries"))
    return {
        "list": manifest.get("config", {}).get("queries"),
        "list_size": listed,
        "matched": len(rows),
        "unmatched": None if listed is None else listed - len(rows),
        "cap": cap,
        "over_cap": sum(1 for r in rows if r[1] > (cap or float("inf"))),
        "matches_before": sum(r[1] for r in rows),
        "matches_after": sum(r[2] for r in rows),
        "head": [list(r) for r in rows[:TOP]],
        "tail": [list(r) for r in rows[-TOP:][::-1]] if len(rows) > TOP else [],
    }


def _query_list_size(path: str | None) -> int | None:
    """Rows of the build's query list (a config input, outside the build directory, a
    file or an object: its footer only)."""
    if not path:
        return None
    import pyarrow.parquet as pq

    from openwit import fs

    try:
        with fs.open_input(path) as stream:
            return pq.ParquetFile(stream).metadata.num_rows
    except Exception:  # a moved, replaced or damaged list: the report says "unknown"
        return None


# -- captions ------------------------------------------------------------------------------------
def _text(build: BuildDir, series: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import pyarrow.compute as pc

    kept: Counter[str] = Counter()
    for path in build.stage_files("text"):
        counts = value_counts(build.read_table([path], ["lang"]).column("lang"))
        kept.update({str(lang): count for lang, count in counts.items()})
    rejected: Counter[str] = Counter()
    for path in build.rejection_files("text"):
        table = build.read_table([path], ["reason", "detail"])
        mask = pc.is_in(table.column("reason"), value_set=strings(LANGUAGE_REASONS))
        # the detail is "LANG SCORE": its first word, counted in Arrow (billions of rows
        # at scale; a Python loop over them took hours)
        details = pc.fill_null(table.filter(mask).column("detail"), "")
        details = pc.if_else(pc.equal(details, ""), "?", details)  # none given: "?"
        langs = pc.list_element(pc.split_pattern(details, " ", max_splits=1), 0)
        rejected.update(value_counts(langs))
    lengths = np.zeros(MAX_CAPTION_CHARS + 2, dtype=np.int64)
    for path in build.shard_indexes():
        chars = pc.utf8_length(build.read_table([path], ["text"]).column("text"))
        values = np.minimum(chars.to_numpy(zero_copy_only=False), MAX_CAPTION_CHARS + 1)
        lengths += np.bincount(values, minlength=len(lengths))
    series["caption_chars"] = lengths.tolist()
    languages = sorted(set(kept) | set(rejected), key=lambda k: (-(kept[k] + rejected[k]), k))
    return {
        "languages": [[lang, kept[lang], rejected[lang]] for lang in languages],
        "caption_chars": _distribution(lengths),
    }


def _distribution(counts: Any) -> dict[str, Any]:
    """n, mean, median and 5th/95th percentiles of a histogram of integers from 0."""
    import numpy as np

    n = int(counts.sum())
    if n == 0:
        return {"n": 0, "mean": None, "median": None, "p5": None, "p95": None}
    cumulative = np.cumsum(counts)

    def quantile(q: float) -> int:  # the value at sorted position q * n (0-based)
        return int(np.searchsorted(cumulative, min(int(q * n), n - 1), side="right"))

    mean = float((np.arange(len(counts)) * counts).sum() / n)
    return {
        "n": n,
        "mean": round(mean, 1),
        "median": quantile(0.5),
        "p5": quantile(0.05),
        "p95": quantile(0.95),
    }


# -- images --------------------------------------------------------------------------------------
def _images(build: BuildDir, series: dict[str, Any]) -> dict[str, Any]:
    """Original sizes of every downloaded image (the download stage's output: before the
    image checks, which reject by size and aspect ratio)."""
    import pyarrow.compute as pc

    sizes: Counter[tuple[int, int]] = Counter()
    for path in build.stage_files("download"):
        table = build.read_table([path], ["original_width", "original_height"])
        # distinct sizes counted in Arrow, as one 64-bit key a size (width above, height
        # below): a file's rows are many, its sizes few (billions of rows at scale)
        width, height = (pc.fill_null(table.column(c), 0).cast("int64") for c in (0, 1))
        known = pc.and_(pc.greater(width, 0), pc.greater(height, 0))
        key = pc.filter(pc.bit_wise_or(pc.shift_left(width, 32), height), known)
        for size, count in value_counts(key).items():
            sizes[(size >> 32, size & 0xFFFFFFFF)] += count
    series["original_sizes"] = sorted(sizes.items())
    aspects: Counter[str] = Counter()
    short_sides: Counter[int] = Counter()
    for (w, h), count in sizes.items():
        aspects[_aspect_class(w / h)] += count
        short_sides[min(w, h)] += count
    return {
        "n": sum(sizes.values()),
        "distinct_sizes": len(sizes),
        "common_sizes": [[w, h, c] for (w, h), c in sorted(sizes.items(), key=_by_count)[:TOP]],
        "aspect_classes": [[name, aspects[name]] for name in ASPECT_CLASSES if aspects[name]],
        "short_side": _quantiles(short_sides),
    }


def _by_count(item: tuple[tuple[int, int], int]) -> tuple[int, int, int]:
    (w, h), count = item
    return (-count, w, h)


#: Aspect ratio (width / height) classes, for a table people read.
ASPECT_CLASSES = ("tall (< 3:4)", "portrait (3:4-1)", "square (1:1)", "landscape (1-4:3)",
                  "wide (4:3-2:1)", "very wide (> 2:1)")  # fmt: skip


def _aspect_class(ratio: float) -> str:
    if abs(ratio - 1.0) < 1e-9:
        return ASPECT_CLASSES[2]
    for bound, name in ((0.75, 0), (1.0, 1), (4 / 3, 3), (2.0, 4)):
        if ratio < bound:
            return ASPECT_CLASSES[name]
    return ASPECT_CLASSES[5]


def _quantiles(counts: Counter[int]) -> dict[str, int] | None:
    """Smallest, median and largest of values given as ``{value: count}``."""
    if not counts:
        return None
    values = sorted(counts)
    half, seen = sum(counts.values()) // 2, 0
    median = values[-1]
    for value in values:
        seen += counts[value]
        if seen > half:
            median = value
            break
    return {"min": values[0], "median": median, "max": values[-1]}


# -- evaluation sets -----------------------------------------------------------------------------
def _eval_overlap(build: BuildDir, manifest: dict[str, Any]) -> dict[str, Any] | None:
    stats = manifest.get("stages", {}).get("dedup", {}).get("stats", {})
    sets = stats.get("eval_sets") or {}
    if not sets:
        return None
    return {
        "decontaminate": bool(stats.get("decontaminate")),
        "detector": (stats.get("detector") or {}).get("name"),
        "sets": [
            {
                "name": name,
                "images": s.get("images"),
                "images_matched": s.get("images_matched"),
                "training_samples_matched": s.get("training_samples_matched"),
                "unreadable_images": s.get("unreadable_images"),
            }
            for name, s in sorted(sets.items())
        ],
    }


# -- timings -------------------------------------------------------------------------------------
def _timings(rows: list[dict[str, Any]]) -> dict[str, Any]:
    stages = [[r["stage"], r["seconds"], r["status"]] for r in rows]
    return {"stages": stages, "total_seconds": round(sum(r[1] or 0 for r in stages), 3)}
