"""The build report: ``OUT/report/index.html`` and ``OUT/report/dataset-card.md``.

Written at the end of every complete build and by ``openwit report --build OUT [--audit DIR]
[--train RUN]``. The modules, in the order the work flows:

- :mod:`~openwit.report.facts`   -- the numbers, from the build's files (``BuildDir``)
- :mod:`~openwit.report.runs`    -- an overlap audit's and a training run's results
- :mod:`~openwit.report.samples` -- sample thumbnails drawn from the shards
- :mod:`~openwit.report.charts`  -- matplotlib PNGs beside the page
- :mod:`~openwit.report.page`    -- ``index.html``; :mod:`~openwit.report.card` the card
- :mod:`~openwit.report.html`    -- page frame and chart helpers shared with the audit report

Everything on the page and in the card comes from ``report.json``, written beside them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openwit import fs
from openwit.builddir import BuildDir
from openwit.errors import UserError
from openwit.io import atomic_write_json, atomic_write_text

INDEX, CARD, FACTS = "index.html", "dataset-card.md", "report.json"


@dataclass
class ReportResult:
    """Where the report's files are: local paths, or URLs for a build in a bucket."""

    html: str
    card: str
    facts: str
    notes: list[str] = field(default_factory=list)  # sections left out, and why


def check_complete(build: BuildDir) -> None:
    """A :class:`UserError` (one line, exit 2) unless ``build`` is a complete build."""
    try:
        manifest = build.manifest()
        build.funnel()
    except FileNotFoundError:
        raise UserError(f"{build.root}: no openwit build here (no manifest.json)") from None
    except (OSError, ValueError):
        raise UserError(f"{build.root}: not an openwit build (manifest.json or funnel.json "
                        "unreadable)") from None  # fmt: skip
    if not manifest.get("complete"):
        where = manifest.get("until")
        stopped = f"it stopped after {where}" if where else "it did not finish"
        raise UserError(
            f"{build.root}: not a complete build ({stopped}); finish it with `openwit build` "
            "before writing its report"
        )


def write_build_report(
    build_dir: str | Path,
    audit: str | Path | None = None,
    train: str | Path | None = None,
    out: Path | None = None,
) -> ReportResult:
    """Write the report of the complete build in ``build_dir`` into ``out`` (default: the
    build's ``report/`` folder). Everything is written into ``out`` and nothing else.

    A build in a bucket gets its report there too: it is rendered into a local temporary
    folder and each file uploaded (only the ones whose bytes changed; thumbnails and charts
    an earlier report left there and this one does not show are removed)."""
    if out is None and not fs.is_local(BuildDir(build_dir).report_dir):
        return _write_remote(BuildDir(build_dir), audit, train)
    return _write_local(build_dir, audit, train, out)


def _write_remote(
    build: BuildDir, audit: str | Path | None, train: str | Path | None
) -> ReportResult:
    from openwit.staging import output_folder

    target = build.report_dir
    with output_folder(target, owned=_owned_names(), last=(INDEX,)) as folder:
        local = _write_local(build.root, audit, train, folder, location=target)
    result = ReportResult(fs.join(target, INDEX), fs.join(target, CARD), fs.join(target, FACTS))
    result.notes = local.notes
    return result


def _write_local(
    build_dir: str | Path,
    audit: str | Path | None,
    train: str | Path | None,
    out: Path | None,
    location: str | None = None,
) -> ReportResult:
    """The report written into the local folder ``out``; ``location`` is where it will be
    read (its links to an audit page are relative to that), ``out`` unless it is uploaded."""
    from openwit.report import card, charts, page
    from openwit.report.facts import collect
    from openwit.report.runs import read_audit, read_training
    from openwit.report.samples import write_samples

    build = BuildDir(build_dir)
    check_complete(build)
    out = Path(out if out is not None else build.report_dir)
    out.mkdir(parents=True, exist_ok=True)
    facts = collect(build)
    summary = facts.summary
    summary["card"] = _card_settings(build, summary["build"]["config"])
    summary["query_sources"] = _query_sources(summary["build"]["config"].get("queries"))
    summary["audit"], audit_note = read_audit(audit, location or out)
    summary["training"], train_note = read_training(train)
    summary["samples"] = write_samples(build, out)
    _remove_stale(
        out / "samples", {s.get("thumb", "").rsplit("/", 1)[-1] for s in summary["samples"]}
    )
    files: dict[str, str | None] = {
        "funnel": charts.funnel(summary["funnel"], out),
        "queries": charts.query_counts(summary["queries"] or {}, facts.series, out),
        "languages": charts.languages(summary["text"], out),
        "captions": charts.caption_lengths(facts.series, out),
        "sizes": charts.image_sizes(
            facts.series, summary["build"]["config"].get("image", {}).get("min_side"), out
        ),
        "aspects": charts.aspect_ratios(summary["images"], out),
        "failures": charts.download_failures(summary["downloads"], out),
        "duplicates": charts.duplicate_groups(summary["duplicates"], out),
        "timings": charts.timings(summary["timings"]["stages"], out),
        "loss": charts.training_loss((summary["training"] or {}).get("loss_curve", []), out),
    }
    _remove_stale_charts(out, files)
    schema = _index_schema(build)
    result = ReportResult(str(out / INDEX), str(out / CARD), str(out / FACTS))
    result.notes = [n for n in (audit_note, train_note) if n]
    atomic_write_json(result.facts, summary)
    atomic_write_text(result.card, card.render(summary, schema), skip_if_same=True)
    atomic_write_text(result.html, page.render(summary, files), skip_if_same=True)
    return result


def _card_settings(build: BuildDir, config: dict[str, Any]) -> dict[str, Any]:
    settings = dict(config.get("card") or {})
    settings.setdefault("license", "other")
    if settings["license"] == "other" and not settings.get("license_name"):
        settings["license_name"] = "web-index-images-keep-own-copyright"
    if not settings.get("pretty_name"):
        settings["pretty_name"] = f"{_last_name(str(build.root))} (openwit build)"
    return settings


def _last_name(root: str) -> str:
    """The build directory's own name, of a local path or a URL."""
    if "://" not in root:
        root = os.path.abspath(root)
    return root.rstrip("/").rsplit("/", 1)[-1] or root


def _query_sources(queries: str | None) -> dict[str, Any] | None:
    """The query list's build summary (``queries.summary.json`` beside it), if there is one."""
    from openwit.queries.build import summary_path

    if not queries:
        return None
    try:
        return fs.read_json(summary_path(queries))
    except (OSError, ValueError):
        return None


def _index_schema(build: BuildDir) -> list[tuple[str, str]]:
    indexes = build.shard_indexes()
    if not indexes:
        return []
    schema = build.read_table(indexes[:1]).schema
    return [(f.name, str(f.type)) for f in schema]


def _remove_stale(folder: Path, keep: set[str]) -> None:
    """Thumbnails of an earlier report of this directory that this one does not show."""
    for path in folder.glob("*"):
        if path.is_file() and path.name not in keep:
            path.unlink()


def _chart_names() -> set[str]:
    from openwit.report import charts

    return {v for k, v in vars(charts).items() if k.isupper() and isinstance(v, str)}


def _owned_names() -> list[str]:
    """The report's own names under its folder: what a new report may replace or remove."""
    return ["samples", *sorted(_chart_names())]


def _remove_stale_charts(out: Path, files: dict[str, str | None]) -> None:
    written = set(files.values())
    for name in _chart_names() - written:
        (out / name).unlink(missing_ok=True)
