"""The build report's ``index.html``: every section rendered from the report's facts.

Sections without data (no audit, no training run, no download failure) say so in a line or
are left out; numbers come from ``report.json``'s values only, so the page, the card and
the JSON agree.
"""

from __future__ import annotations

from typing import Any

import yaml

from openwit.report.html import Raw, chart_img, esc, num, page, pct, table

EXTRA_CSS = """
nav { margin: 1em 0; font-size: 13px; } nav a { margin-right: .8em; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; margin: 1em 0; }
.card { background: #f4f6fa; border-radius: 6px; padding: .6em 1em; min-width: 9em; }
.card b { display: block; font-size: 1.5em; }
.cols { display: flex; gap: 24px; flex-wrap: wrap; align-items: flex-start; }
.samples { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr));
           gap: 12px; }
.samples figure { margin: 0; border: 1px solid #dde; border-radius: 6px; padding: 6px; }
.samples img { width: 100%; height: 150px; object-fit: contain; background: #f4f6fa; }
.samples figcaption { font-size: 12px; color: #334; margin-top: 4px; }
.samples .key { color: #889; font-size: 11px; }
tr.reason td { color: #556; font-size: 13px; } tr.reason td:first-child { padding-left: 2em; }
pre { background: #f4f6fa; padding: .8em; border-radius: 6px; overflow-x: auto; font-size: 12px; }
.ok { color: #2a7a3a; } .bad { color: #b02a2a; }
"""

SECTIONS = (
    ("funnel", "Funnel"),
    ("queries", "Queries"),
    ("captions", "Captions"),
    ("images", "Images"),
    ("downloads", "Download failures"),
    ("duplicates", "Duplicates"),
    ("overlap", "Eval overlap"),
    ("training", "Training"),
    ("samples", "Samples"),
    ("timings", "Timings"),
    ("config", "Config"),
)


def render(facts: dict[str, Any], files: dict[str, str | None]) -> str:
    """The page for ``facts`` (report.json's values) and the chart ``files`` written."""
    parts = {
        "funnel": _funnel(facts, files),
        "queries": _queries(facts.get("queries"), files),
        "captions": _captions(facts["text"], files),
        "images": _images(facts["images"], files, facts),
        "downloads": _downloads(facts.get("downloads"), files),
        "duplicates": _duplicates(facts["duplicates"], files),
        "overlap": _overlap(facts.get("eval_overlap"), facts.get("audit")),
        "training": _training(facts.get("training"), files),
        "samples": _samples(facts.get("samples") or []),
        "timings": _timings(facts["timings"], files),
        "config": _config(facts["build"]),
    }
    shown = [(key, title) for key, title in SECTIONS if parts[key]]
    nav = "<nav>" + "".join(f'<a href="#{k}">{esc(t)}</a>' for k, t in shown) + "</nav>"
    body = (
        _header(facts)
        + nav
        + "".join(
            f'<section id="{key}"><h2>{esc(title)}</h2>{parts[key]}</section>'
            for key, title in shown
        )
    )
    return page(f"openwit build report: {facts['card']['pretty_name']}", body, EXTRA_CSS)


def _header(facts: dict[str, Any]) -> str:
    build, counts = facts["build"], facts["counts"]
    law = (
        '<span class="ok">the funnel law holds</span>'
        if counts["funnel_law"]
        else '<span class="bad">the funnel does not reconcile</span>'
    )
    cards = [
        ("input records", num(counts["input_records"])),
        ("samples", num(counts["samples"])),
        ("shards", num(counts["shards"])),
        ("rejected", num(counts["rejected"])),
        (
            "kept",
            pct(counts["samples"] / counts["input_records"] if counts["input_records"] else None),
        ),
        ("build time", f"{facts['timings']['total_seconds']:,.1f} s"),
    ]
    card_html = "".join(f'<div class="card"><b>{v}</b>{esc(k)}</div>' for k, v in cards)
    links = '<a href="dataset-card.md">dataset card</a> · <a href="report.json">report.json</a>'
    return (
        f"<h1>Build report: {esc(facts['card']['pretty_name'])}</h1>"
        f'<p class="muted">Build <code>{esc(build["dir"])}</code>, created '
        f"{esc(build['created'])}, config hash <code>{esc(build['config_hash'][:16])}…</code>; "
        f"{law}. {links}.</p>"
        f'<div class="cards">{card_html}</div>'
    )


def _funnel(facts: dict[str, Any], files: dict[str, str | None]) -> str:
    rows: list[str] = []
    for r in facts["funnel"]:
        rows.append(
            f"<tr><td><b>{esc(r['stage'])}</b></td><td>{num(r['in'])}</td><td>{num(r['out'])}</td>"
            f"<td>{num(r['n_rejected'])}</td><td>{esc(r['status'])}</td></tr>"
        )
        rows += [
            f'<tr class="reason"><td>{esc(reason)}</td><td></td><td></td><td>{num(n)}</td>'
            "<td></td></tr>"
            for reason, n in r["rejected"].items()
        ]
    head = "<tr><th>stage / reason</th><th>in</th><th>out</th><th>rejected</th><th>status</th></tr>"
    return (
        chart_img(files["funnel"] or "", "records per stage")
        + f"<table>{head}{''.join(rows)}</table>"
        + "<p class=\"muted\">Counts are <code>funnel.json</code>'s: every stage's in is its out "
        "plus its rejections, and its out is the next stage's in. Every rejected record is in "
        "<code>rejections/</code> with its uid, reason and detail.</p>"
    )


def _queries(queries: dict[str, Any] | None, files: dict[str, str | None]) -> str:
    if queries is None:
        return '<p class="muted">The balance stage kept no per-query counts.</p>'
    listed = queries["list_size"]
    matched = f"{num(queries['matched'])}"
    if listed:
        matched += f" of {num(listed)} queries ({pct(queries['matched'] / listed)})"
    cols = ["query", "matches before", "after"]
    tail = (
        "<div><h3>Tail (fewest matches)</h3>" + table(cols, queries["tail"]) + "</div>"
        if queries["tail"]
        else ""
    )
    return (
        f"<p>{matched} matched at least one caption; {num(queries['over_cap'])} had more than "
        f"the cap t = {num(queries['cap'])} matches and were balanced down. Matched pairs "
        f"(a caption counts once per query it matches): {num(queries['matches_before'])} "
        f"before balancing, {num(queries['matches_after'])} after. Query list: "
        f"<code>{esc(queries['list'])}</code>.</p>"
        + (chart_img(files["queries"], "matches per query") if files.get("queries") else "")
        + '<div class="cols"><div><h3>Head (most matches)</h3>'
        + table(cols, queries["head"])
        + "</div>"
        + tail
        + "</div>"
    )


def _captions(text: dict[str, Any], files: dict[str, str | None]) -> str:
    lengths = text["caption_chars"]
    rows = [[lang, kept, rejected] for lang, kept, rejected in text["languages"][:15]]
    languages = table(["language", "kept", "rejected for language"], rows)
    length_line = (
        f"<p>Caption length in the shards: median {lengths['median']} characters (mean "
        f"{lengths['mean']}, 5th-95th percentile {lengths['p5']}-{lengths['p95']}) over "
        f"{num(lengths['n'])} samples.</p>"
        if lengths["n"]
        else '<p class="muted">No captions in the shards.</p>'
    )
    return (
        "<h3>Languages</h3><p>Language ID of the captions that reached it (the text stage): "
        "kept, and rejected as another or an uncertain language.</p>"
        + '<div class="cols">'
        + (chart_img(files["languages"], "languages") if files.get("languages") else "")
        + languages
        + "</div><h3>Caption lengths</h3>"
        + length_line
        + (chart_img(files["captions"], "caption lengths") if files.get("captions") else "")
    )


def _images(images: dict[str, Any], files: dict[str, str | None], facts: dict[str, Any]) -> str:
    if not images["n"]:
        return '<p class="muted">No image was downloaded.</p>'
    image_config = facts["build"]["config"].get("image", {})
    side = images["short_side"] or {}
    sizes = table(["width", "height", "images"], images["common_sizes"])
    return (
        f"<p>Original sizes of the {num(images['n'])} downloaded images, before the image "
        f"checks (minimum side {esc(image_config.get('min_side'))} px, maximum aspect ratio "
        f"{esc(image_config.get('max_aspect'))}) and before resizing to at most "
        f"{esc(image_config.get('resize_max_side'))} px: {num(images['distinct_sizes'])} "
        f"distinct sizes; shorter side {side.get('min')} to {side.get('max')} px, median "
        f"{side.get('median')}.</p>"
        + '<div class="cols">'
        + (chart_img(files["sizes"], "original image sizes") if files.get("sizes") else "")
        + "<div><h3>Most common sizes</h3>"
        + sizes
        + "</div></div>"
        + "<h3>Aspect ratios</h3>"
        + (chart_img(files["aspects"], "aspect ratios") if files.get("aspects") else "")
    )


def _downloads(downloads: dict[str, Any] | None, files: dict[str, str | None]) -> str:
    if downloads is None:
        return ""
    if not downloads["failed"]:
        return f"<p>All {num(downloads['attempted'])} downloads succeeded.</p>"
    reasons = table(["reason", "failures"], [[r, n] for r, n in downloads["reasons"].items()])
    hosts = table(["host", "failures", "top reasons"], downloads["top_hosts"])
    return (
        f"<p>{num(downloads['failed'])} of {num(downloads['attempted'])} downloads failed "
        f"({pct(downloads['failed'] / downloads['attempted'])}), on "
        + ("at least " if downloads.get("host_sample", 1.0) < 1 else "")  # the sample's hosts
        + f"{num(downloads['hosts_with_failures'])} hosts.</p>"
        + '<div class="cols">'
        + (chart_img(files["failures"], "download failures") if files.get("failures") else "")
        + reasons
        + "</div><h3>Hosts with most failures</h3>"
        + hosts
        + f'<p class="muted">Host: the {esc(downloads["host_source"])} (rejections keep no '
        "URL)." + _sample_note(downloads.get("host_sample", 1.0), "failed downloads") + "</p>"
    )


def _sample_note(share: float, what: str) -> str:
    """Where a figure comes from a sample of the rejections (a large build), say so."""
    if share >= 1:
        return ""
    return (
        f" Estimated from the {esc(what)} whose uid falls in a uniform 1-in-{round(1 / share):,}"
        " sample (by uid), scaled up: there are too many to join one by one."
    )


def _duplicates(duplicates: dict[str, Any], files: dict[str, str | None]) -> str:
    exact, near = duplicates["exact"], duplicates["near"]
    rows = [
        ["exact (same sha256)", exact["groups"], exact["removed"]],
        ["near (pHash and dHash)", near["groups"], near["removed"]],
    ]
    sizes = [
        [kind, size, groups]
        for kind, d in (("exact", exact), ("near", near))
        for size, groups in d["group_sizes"]
    ]
    return (
        "<p>A group is one kept record and the records removed as its duplicates.</p>"
        + table(["duplicates", "groups", "records removed"], rows)
        + (
            chart_img(files["duplicates"], "duplicate group sizes")
            if files.get("duplicates")
            else ""
        )
        + (table(["kind", "group size", "groups"], sizes) if sizes else "")
        + (
            f'<p class="muted">{_sample_note(exact["group_sample"], "groups")}</p>'
            if exact.get("group_sample", 1.0) < 1
            else ""
        )
    )


def _overlap(overlap: dict[str, Any] | None, audit: dict[str, Any] | None) -> str:
    if overlap is None and audit is None:
        return ""
    parts = []
    if overlap is not None:
        action = (
            "removed from the training data (decontamination on)"
            if overlap["decontaminate"]
            else "kept (decontamination off); the audit measures what they are worth"
        )
        rows = [
            [s["name"], s["images"], s["images_matched"], s["training_samples_matched"]]
            for s in overlap["sets"]
        ]
        parts.append(
            f"<p>Detector: {esc(overlap['detector'])}. Matching training samples were {action}.</p>"
            + table(["eval set", "images", "images matched", "training samples matched"], rows)
        )
    if audit is not None:
        link = (
            f'<a href="{esc(audit["page"])}">the overlap audit report</a>'
            if audit["page"]
            else "the overlap audit"
        )
        rows = [
            [s["name"], s["n"], s["n_overlap"], Raw(pct(s["overlap_rate"], 2)),
             Raw(pct(s["acc_all"])), Raw(pct(s["acc_clean"])), Raw(pct(s["acc_overlap"]))]
            for s in audit["sets"]
        ]  # fmt: skip
        parts.append(
            f"<h3>Audit</h3><p>From {link} (<code>{esc(audit['dir'])}</code>):</p>"
            + table(
                ["eval set", "images", "overlap", "rate", "acc All", "acc Clean", "acc Overlap"],
                rows,
            )
        )
    else:
        parts.append('<p class="muted">No overlap audit given (<code>--audit DIR</code>).</p>')
    return "".join(parts)


def _training(training: dict[str, Any] | None, files: dict[str, str | None]) -> str:
    if training is None:
        return ""
    rows = [
        [r["name"], r["n"], r["classes"], Raw(pct(r["top1"])), Raw(pct(r["top5"])),
         Raw(pct(r["chance_top1"])),
         Raw(f"{r['top1'] / r['chance_top1']:.1f}x" if r["chance_top1"] else "–")]
        for r in training["eval"]
    ]  # fmt: skip
    return (
        f"<p><code>{esc(training['model'])}</code> trained {num(training['steps'])} steps at "
        f"batch {num(training['batch_size'])} (lr {esc(training['lr'])}, seed "
        f"{esc(training['seed'])}); loss {_loss(training['first_loss'])} → "
        f"{_loss(training['last_loss'])}. Run: <code>{esc(training['dir'])}</code>.</p>"
        + table(
            ["eval set", "images", "classes", "top-1", "top-5", "chance", "top-1 / chance"], rows
        )
        + (chart_img(files["loss"], "training loss") if files.get("loss") else "")
    )


def _loss(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _samples(samples: list[dict[str, Any]]) -> str:
    if not samples:
        return '<p class="muted">The shards hold no samples.</p>'
    figures = []
    for s in samples:
        image = (
            f'<img src="{esc(s["thumb"])}" alt="sample {esc(s["key"])}">' if s.get("thumb") else ""
        )
        figures.append(
            f"<figure>{image}<figcaption>{esc(s.get('caption', ''))}"
            f'<div class="key">{esc(s["shard"])} · {esc(s["key"])}</div></figcaption></figure>'
        )
    return (
        f"<p>{len(samples)} samples spread evenly over the shards' keys (the same ones on "
        "every run of the report), with their captions.</p>"
        f'<div class="samples">{"".join(figures)}</div>'
    )


def _timings(timings: dict[str, Any], files: dict[str, str | None]) -> str:
    return (
        '<div class="cols">'
        + (chart_img(files["timings"], "stage timings") if files.get("timings") else "")
        + table(["stage", "seconds", "status"], timings["stages"])
        + "</div>"
        + f"<p>Total: {timings['total_seconds']:,.1f} s (each stage's last run).</p>"
    )


def _config(build: dict[str, Any]) -> str:
    versions = [[name, version] for name, version in build["versions"].items()]
    config = yaml.safe_dump(build["config"], sort_keys=False, allow_unicode=True)
    return (
        f"<p>Config hash (sha256): <code>{esc(build['config_hash'])}</code></p>"
        f"<pre>{esc(config)}</pre>"
        "<h3>Package versions</h3>" + table(["package", "version"], versions)
    )
