"""The audit's HTML report: one self-contained folder (``index.html``, charts, thumbnails).

Everything is a relative file next to ``index.html`` -- no script, no web font, no remote
URL -- so the folder can be copied, mailed or served as it is. Text from the shards (URLs,
captions) is escaped; URLs are shown, never linked, so opening the report fetches nothing
(the frame, styles and chart helpers are :mod:`openwit.report.html`'s).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openwit.io import atomic_write_text
from openwit.report.html import KEPT, REFERENCE, REJECTED, figure, page, pct, save
from openwit.report.html import esc as _e

OVERLAP_CHART = "overlap_rates.png"
DELTA_CHART = "accuracy_deltas.png"

PAIRS_CSS = """
.pairs { display: grid; grid-template-columns: repeat(auto-fill, minmax(350px, 1fr)); gap: 14px; }
.pair { border: 1px solid #dde; border-radius: 6px; padding: 8px; }
.pair .imgs { display: flex; gap: 6px; }
.pair figure { margin: 0; flex: 1; text-align: center; }
.pair img { width: 160px; height: 160px; object-fit: contain; background: #f4f6fa; }
.pair figcaption { font-size: 12px; color: #556; }
.pair .meta { font-size: 12px; word-break: break-all; margin-top: 4px; }
.missing { width: 160px; height: 160px; display: flex; align-items: center;
           justify-content: center; background: #f4f6fa; color: #889; font-size: 12px; }
"""


def _pp(value: float | None) -> str:
    """Percentage points with a sign."""
    return "–" if value is None else f"{value * 100:+.1f}"


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.3f}"


def overlap_chart(sets: list[dict[str, Any]], path: Path) -> None:
    names = [s["name"] for s in sets]
    rates = [100 * (s["overlap_rate"] or 0.0) for s in sets]
    fig, ax = figure(max(4.0, 1.1 * len(sets) + 2), 3.2)
    bars = ax.bar(names, rates, color=KEPT, width=0.5)
    ax.set_xlim(-0.75, len(sets) - 0.25)
    for bar, s in zip(bars, sets):
        ax.annotate(
            f"{s['n_overlap']}/{s['n'] - s.get('n_unreadable', 0)}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
            xytext=(0, 2),
            textcoords="offset points",
        )
    ax.set_ylabel("overlap (% of eval images)")
    ax.set_ylim(0, max(5.0, max(rates, default=0) * 1.25))
    ax.set_title("Detected overlap with the training shards")
    save(fig, path)


def delta_chart(sets: list[dict[str, Any]], path: Path) -> bool:
    """Overlap minus Clean accuracy with its 99.5% interval, and All minus Clean; False if
    no set has accuracies."""
    measured = [s for s in sets if s["acc_clean"] is not None and s["acc_overlap"] is not None]
    if not measured:
        return False
    fig, ax = figure(max(4.0, 1.1 * len(measured) + 2), 3.4)
    xs = list(range(len(measured)))
    for x, s in zip(xs, measured):
        clean = s["acc_clean"]
        centre = 100 * (s["acc_overlap"] - clean)
        low, high = (100 * (b - clean) for b in s["ci_overlap"])
        ax.errorbar(
            [x],
            [centre],
            yerr=[[centre - low], [high - centre]],
            fmt="o",
            color=REJECTED,
            capsize=4,
            label="Overlap − Clean (99.5% CI)" if x == 0 else None,
        )
        ax.plot(
            [x + 0.15],
            [100 * s["delta_all_minus_clean"]],
            "D",
            color=KEPT,
            label="All − Clean" if x == 0 else None,
        )
    ax.axhline(0, color=REFERENCE, linewidth=0.8)
    ax.set_xlim(-0.75, len(measured) - 0.25)
    ax.set_xticks(xs, [s["name"] for s in measured])
    ax.set_ylabel("accuracy difference (points)")
    ax.set_title("Zero-shot accuracy: does overlap help?")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    save(fig, path)
    return True


def _summary_table(sets: list[dict[str, Any]]) -> str:
    head = (
        "<tr><th>eval set</th><th>images</th><th>unreadable</th><th>overlap</th><th>rate</th>"
        "<th>acc All</th><th>acc Clean</th><th>acc Overlap</th><th>All − Clean</th>"
        "<th>Overlap 99.5% CI</th><th>p-value</th></tr>"
    )
    rows = []
    for s in sets:
        ci = s["ci_overlap"]
        ci_text = "–" if ci is None else f"{pct(ci[0])} – {pct(ci[1])}"
        p_text = _p(s["p_value"])
        if s["p_value"] is None and s["acc_all"] is not None:
            p_text = f'<span class="muted" title="{_e(s["test_note"])}">no test</span>'
        rows.append(
            f"<tr><td>{_e(s['name'])}</td><td>{s['n']:,}</td>"
            f"<td>{s.get('n_unreadable', 0):,}</td><td>{s['n_overlap']:,}</td>"
            f"<td>{pct(s['overlap_rate'], 2)}</td><td>{pct(s['acc_all'])}</td>"
            f"<td>{pct(s['acc_clean'])}</td><td>{pct(s['acc_overlap'])}</td>"
            f"<td>{_pp(s['delta_all_minus_clean'])}</td><td>{ci_text}</td><td>{p_text}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _notes(sets: list[dict[str, Any]]) -> str:
    items = []
    for s in sets:
        if s.get("test_note"):
            items.append(f"<li><b>{_e(s['name'])}</b>: {_e(s['test_note'])}</li>")
        removed = s.get("removed_by_decontamination")
        if removed:
            items.append(
                f"<li><b>{_e(s['name'])}</b>: the build removed {removed['training_samples']:,} "
                f"training samples matching {removed['images']:,} of its images "
                "(decontamination); the overlap above is what remains.</li>"
            )
        if s.get("n_unreadable"):
            items.append(
                f"<li><b>{_e(s['name'])}</b>: {s['n_unreadable']} images could not be read; "
                "they are in neither Overlap nor Clean, and left out of the overlap rate and "
                "every accuracy.</li>"
            )
    return f"<ul>{''.join(items)}</ul>" if items else ""


def _figure(src: str | None, caption: str) -> str:
    if src is None:
        return (
            '<figure><div class="missing">no image</div>'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )
    return (
        f'<figure><img src="{_e(src)}" alt="{_e(caption)}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _pairs(s: dict[str, Any]) -> str:
    shown = s["matches"][: s["pairs_shown"]]
    if not shown:
        return '<p class="muted">No matched pairs.</p>'
    cards = []
    for pair in shown:
        cards.append(
            '<div class="pair"><div class="imgs">'
            + _figure(pair["eval_thumb"], f"eval: {pair['eval_path']}")
            + _figure(pair["shard_thumb"], f"shard {pair['shard']} key {pair['shard_key']}")
            + '</div><div class="meta">'
            f"pHash {pair['phash_distance']}, dHash {pair['dhash_distance']} "
            f"({_e(pair['variant'])})<br>url: {_e(pair['url'])}<br>"
            f"text: {_e(pair['text'])}</div></div>"
        )
    more = len(s["matches"]) - len(shown)
    tail = f'<p class="muted">{more:,} more pairs in audit.json.</p>' if more > 0 else ""
    return f'<div class="pairs">{"".join(cards)}</div>{tail}'


def render_html(audit: dict[str, Any], has_delta_chart: bool) -> str:
    sets = audit["sets"]
    detector = audit["detector"]
    accuracy = (
        f"zero-shot accuracy of <code>{_e(audit['model'])}</code> from "
        f"<code>{_e(audit['checkpoint'])}</code>"
        if audit.get("checkpoint")
        else "accuracy from the given prediction tables"
        if any(s["accuracy_source"] for s in sets)
        else "no checkpoint or predictions given: accuracy columns are empty"
    )
    delta = (
        f'<img class="chart" src="{DELTA_CHART}" alt="accuracy deltas">'
        if has_delta_chart
        else '<p class="muted">No accuracy to compare (no checkpoint or predictions, or no '
        "overlap).</p>"
    )
    sections = "".join(
        f"<h2>{_e(s['name'])}: matched pairs ({len(s['matches']):,})</h2>{_pairs(s)}" for s in sets
    )
    test = audit["test"]
    body = f"""<h1>Overlap audit</h1>
<p class="muted">{audit["n_shard_samples"]:,} training samples in {audit["n_shard_files"]:,} shards
(<code>{_e(audit["shards"])}</code>) against {len(sets)} evaluation set(s); {accuracy}.
Created {_e(audit["created"])}.</p>
<p class="note">Detector: {_e(detector["name"])}, {detector["variants"]} hashes per eval image.
An eval image is in <b>Overlap</b> when any training sample matches it, else in <b>Clean</b>;
an image that could not be read is in neither.
The p-value is a {_e(test["kind"])}, shown by openwit's own rule only from
{test["min_overlap_for_test"]} overlapping images on and where the test could reach
p &le; {test["alpha"]:g}; the interval is the {_e(test["ci"])}.</p>
{_summary_table(sets)}
{_notes(sets)}
<h2>Overlap rate</h2>
<img class="chart" src="{OVERLAP_CHART}" alt="overlap rates">
<h2>Accuracy differences</h2>
{delta}
{sections}"""
    return page("openwit overlap audit", body, PAIRS_CSS)


def write_report(audit: dict[str, Any], out: Path) -> Path:
    """Write the charts and ``index.html`` into ``out``; returns the HTML path."""
    overlap_chart(audit["sets"], out / OVERLAP_CHART)
    has_delta = delta_chart(audit["sets"], out / DELTA_CHART)
    if not has_delta:
        (out / DELTA_CHART).unlink(missing_ok=True)
    path = out / "index.html"
    atomic_write_text(path, render_html(audit, has_delta))
    return path
