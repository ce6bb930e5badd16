"""``build_queries``: dump, page views and WordNet in, ``queries.parquet`` out.

The driver checks the inputs (missing files and directories are exit 2 before any work),
runs the counting pipeline on the chosen Beam runner, reads its Parquet outputs back, adds
the WordNet lemmas (small: read here), takes the union and writes ``queries.parquet``
atomically, with ``<name>.summary.json`` beside it (what was read, skipped and kept). The
list may go to a local path or to a URL of a store (``s3://bucket/queries.parquet``), as a
build's ``queries:`` may name either.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openwit import fs
from openwit.errors import UserError
from openwit.queries.config import QueryBuildConfig
from openwit.queries.dump import SKIP_REASONS, read_namespaces
from openwit.queries.ngrams import max_pmi
from openwit.queries.pageviews import LINE_OUTCOMES, check_pageview_file, namespace_names
from openwit.queries.union import Candidate, SourceSummary, rows_to_table, union_queries
from openwit.queries.wordnet import read_wordnet, wordnet_dir


@dataclass
class PartialFile:
    path: str
    kind: str  # dump | pageviews
    records: int  # pages or lines read before the damage
    error: str


@dataclass
class QueryBuildResult:
    out: str  # a local path or a URL
    rows: int
    sources: list[SourceSummary]
    inputs: dict[str, int]  # pages, words, page-view lines, WordNet synsets, by outcome
    partial_files: list[PartialFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: The input files by kind (dump, pageviews, wordnet): the dataset card names them and
    #: their dump dates.
    files: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "rows": self.rows,
            "sources": [s.to_json() for s in self.sources],
            "inputs": self.inputs,
            "files": self.files,
            "partial_files": [vars(p) for p in self.partial_files],
            "notes": self.notes,
        }


def beside(out: str | Path, suffix: str) -> str:
    """``DIR/queries.parquet`` -> ``DIR/queries<suffix>``, for a path or a URL."""
    name = fs.basename(str(out))
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return fs.join(fs.parent(str(out)), stem + suffix)


def summary_path(out: str | Path) -> str:
    """``queries.parquet`` -> ``queries.summary.json``."""
    return beside(out, ".summary.json")


def _match(pattern: str) -> list[str]:
    """Paths matching ``pattern`` on any filesystem Beam knows (local, gs://, s3://, ...)."""
    from apache_beam.io.filesystems import FileSystems

    try:
        return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    except Exception as exc:  # Beam raises plain exceptions for unknown schemes and access
        raise UserError(f"cannot list {pattern}: {exc}") from None


def _existing_files(paths: Sequence[str | Path], what: str) -> list[str]:
    """Local paths must exist; URLs may be globs (``gs://b/enwiki-*.bz2``) and must match."""
    found = []
    for path in paths:
        if not fs.is_local(str(path)):
            matched = _match(str(path))
            if not matched:
                raise UserError(f"{what} not found: {path}")
            found.extend(matched)
            continue
        path = fs.local_path(path)  # file:// is a local path too
        if not path.is_file():
            raise UserError(f"{what} not found: {path}")
        found.append(str(path.resolve()))
    return found


def _read_parquet_rows(work_dir: str, prefix: str) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    rows: list[dict[str, Any]] = []
    for path in _match(f"{work_dir}/{prefix}-*.parquet"):
        with FileSystems.open(path) as handle:
            rows.extend(pq.read_table(handle).to_pylist())
    return rows


def _new_work_dir(out: str, work_dir: str | Path | None) -> str:
    """Where the pipeline writes its outputs: every worker must reach it. By default a
    hidden folder beside a local ``out``, or this machine's temporary folder."""
    if work_dir is None:
        name = fs.basename(out)
        folder = fs.parent(out) if fs.is_local(out) else None
        return tempfile.mkdtemp(prefix=f".{name}.", suffix=".work", dir=folder)
    import uuid

    return f"{str(work_dir).rstrip('/')}/openwit-queries-{uuid.uuid4().hex[:12]}"


def _remove_work_dir(work_dir: str) -> None:
    from apache_beam.io.filesystems import FileSystems

    if fs.is_local(work_dir):
        shutil.rmtree(fs.local_path(work_dir), ignore_errors=True)
        return
    # Leftovers in a bucket are harmless: the list is already written.
    with contextlib.suppress(Exception):
        FileSystems.delete([f"{work_dir}/"])


def _candidates(work_dir: str, prefix: str) -> list[Candidate]:
    return [(r["query"], r["count"], r["score"]) for r in _read_parquet_rows(work_dir, prefix)]


def _input_counts(stats: dict[str, int], has_pageviews: bool) -> dict[str, int]:
    counts = {"dump.pages_read": stats.get("dump.pages_read", 0)}
    counts["dump.articles"] = stats.get("dump.articles", 0)
    for reason in SKIP_REASONS:
        counts[f"dump.skipped_{reason}"] = stats.get(f"dump.skipped_{reason}", 0)
    counts["text.words"] = stats.get("text.words", 0)
    if has_pageviews:
        counts["pageviews.lines_read"] = stats.get("pageviews.lines_read", 0)
        for outcome in LINE_OUTCOMES:
            counts[f"pageviews.{outcome}"] = stats.get(f"pageviews.{outcome}", 0)
    return counts


def build_queries(
    wiki_dumps: Sequence[str | Path],
    out: str | Path,
    pageviews: Sequence[str | Path] = (),
    wordnet: str | Path | None = None,
    config: QueryBuildConfig | None = None,
    runner: str = "DirectRunner",
    beam_options: dict[str, Any] | None = None,
    status: Callable[[str], None] | None = None,
    work_dir: str | Path | None = None,
) -> QueryBuildResult:
    """Build the query list and write it to ``out`` (Parquet, ``QUERY_SCHEMA``).

    Raises :class:`openwit.errors.UserError` (exit 2) for a missing input, an input that is
    not what it should be, or a damaged dump or page-view file (unless
    ``config.keep_partial``, which keeps what was read and lists the file in the result).
    Inputs may be URLs of any filesystem Beam reads (``gs://``, ``s3://``; globs allowed).
    ``work_dir`` is where the pipeline writes its results: on a cluster runner, a location
    every worker can reach (``gs://bucket/tmp``); by default a hidden folder beside ``out``.
    """
    config = config or QueryBuildConfig()
    say = status or (lambda message: None)
    out = fs.absolute(out)
    if not wiki_dumps:
        raise UserError("at least one --wiki-dump file is needed")
    dumps = _existing_files(wiki_dumps, "Wikipedia dump")
    views = _existing_files(pageviews, "page-view file")
    for view in views:
        check_pageview_file(view)
    wordnet_root = wordnet_dir(wordnet) if wordnet is not None else None

    say("reading dump headers")
    site_namespaces: set[str] = set()
    for dump in dumps:
        site_namespaces.update(name for key, name in read_namespaces(dump).items() if key != 0)
    namespaces = namespace_names(site_namespaces)

    from openwit.queries.counting import run_counting  # imports Beam

    if fs.is_local(out):
        fs.makedirs(fs.parent(out))
    else:  # a missing client, credentials or endpoint fails now, not after the counting
        fs.probe(out)
    work = _new_work_dir(out, work_dir)
    try:
        say(f"counting with Beam ({runner}): {len(dumps)} dump file(s), {len(views)} page-view")
        run_counting(dumps, views, config, namespaces, work, runner, beam_options)
        stats = {r["key"]: r["value"] for r in _read_parquet_rows(work, "stats")}
        files = _read_parquet_rows(work, "files")
        candidates = {
            "unigram": _candidates(work, "unigram"),
            "bigram": _candidates(work, "bigram"),
            "title": _candidates(work, "title"),
        }
    finally:
        _remove_work_dir(work)

    damaged = sorted(
        (PartialFile(f["path"], f["kind"], f["records"], f["error"]) for f in files if f["error"]),
        key=lambda p: p.path,
    )
    if damaged and not config.keep_partial:
        unit = {"dump": "pages", "pageviews": "lines"}
        problems = "; ".join(
            f"{p.path}: {p.error} after {p.records:,} {unit[p.kind]} read" for p in damaged
        )
        raise UserError(f"{problems} (pass --keep-partial to keep what was read)")

    inputs = _input_counts(stats, bool(views))
    if wordnet_root is not None:
        say("reading WordNet")
        lemmas = read_wordnet(wordnet_root)
        candidates["wordnet"] = [(q, n, float(n)) for q, n in lemmas.lemmas.items()]
        inputs["wordnet.synsets"] = lemmas.synsets
        inputs["wordnet.malformed_lines"] = lemmas.malformed_lines
        inputs["wordnet.lemmas"] = len(lemmas.lemmas)

    rows, summaries = union_queries(candidates, config.max_queries, config.max_query_chars)
    notes = []
    reachable = max_pmi(inputs["text.words"], config.min_bigram_count)
    if reachable < config.min_bigram_pmi:
        notes.append(
            f"no bigram can reach PMI {config.min_bigram_pmi:g} on {inputs['text.words']:,} "
            f"words (at most {reachable:.1f} with min_bigram_count "
            f"{config.min_bigram_count}); see docs/queries.md"
        )
    for partial in damaged:
        notes.append(f"kept {partial.records:,} records of damaged {partial.path}")

    import pyarrow.parquet as pq

    with fs.open_output(out) as stream:
        pq.write_table(rows_to_table(rows), stream, compression="zstd")
    files = {"dump": [str(d) for d in dumps], "pageviews": [str(v) for v in views]}
    if wordnet_root is not None:
        files["wordnet"] = [str(wordnet_root)]
    result = QueryBuildResult(out, len(rows), summaries, inputs, damaged, notes, files)
    fs.write_json(summary_path(out), result.to_json(), skip_if_same=False)
    return result
