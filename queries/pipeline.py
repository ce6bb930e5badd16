"""The counting pipeline: dump files and page-view files in, candidate queries out (Beam).

::

    dump files ─ Reshuffle ─ ReadDump ─ [Reshuffle] ─ CountNgrams ─┬ unigrams ─ CombinePerKey(sum)
                                                                   └ bigrams  ─ CombinePerKey(sum)
    bigrams (count >= min) ─ join c(x) ─ join c(y) ─ PMI (N as a side input) ─ threshold
    page-view files ─ Reshuffle ─ CountPageViews ─ CombinePerKey(sum) ─ threshold

Each file is one unit of work, so several dump files (``pages-articles1.xml...bz2`` ...) are
read in parallel. Workers pre-aggregate n-gram counts in memory (up to ``flush_keys``
distinct keys) before handing them to the combiner, so Beam moves one record per distinct
n-gram per bundle, not one per token. The two joins that attach unigram counts to bigrams
are CoGroupByKeys, so no worker ever holds the vocabulary.

Counts and file outcomes are written as Parquet beside the candidates and read back by the
driver (counts come from files, not runner metrics: docs/decisions.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from itertools import islice
from typing import Any

from openwit.logs import quiet_beam_logging

quiet_beam_logging()  # before Beam's import-time warning

import apache_beam as beam  # noqa: E402 - after the log filter above
import pyarrow as pa  # noqa: E402
from apache_beam.transforms.window import GlobalWindow  # noqa: E402
from apache_beam.utils.timestamp import MIN_TIMESTAMP  # noqa: E402
from apache_beam.utils.windowed_value import WindowedValue  # noqa: E402
from openwit.queries.config import QueryBuildConfig  # noqa: E402
from openwit.queries.dump import (  # noqa: E402
    DumpReadError,
    iter_pages,
    open_compressed,
    skip_reason,
)
from openwit.queries.ngrams import count_ngrams, pmi  # noqa: E402
from openwit.queries.pageviews import count_pageview_lines  # noqa: E402
from openwit.queries.wikitext import wikitext_to_text  # noqa: E402

from openwit.beam import new_pipeline, write_parquet  # noqa: E402

STATS, FILES, UNIGRAMS, BIGRAMS = "stats", "files", "unigrams", "bigrams"

CANDIDATE_SCHEMA = pa.schema(
    [pa.field("query", pa.string()), pa.field("count", pa.int64()), pa.field("score", pa.float64())]
)
STATS_SCHEMA = pa.schema([pa.field("key", pa.string()), pa.field("value", pa.int64())])
FILES_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("records", pa.int64()),
        pa.field("error", pa.string()),
    ]
)


def _global(value: Any) -> WindowedValue:
    """An element emitted from ``finish_bundle`` (which has no input element's window)."""
    return WindowedValue(value, MIN_TIMESTAMP, [GlobalWindow()])


class ReadDump(beam.DoFn):
    """Dump file path -> article wikitexts; page outcomes and the file's status on the side."""

    def process(self, path: str) -> Iterator[Any]:
        counts: Counter[str] = Counter()
        error = ""
        try:
            for page in iter_pages(path):
                counts["dump.pages_read"] += 1
                reason = skip_reason(page)
                if reason is None:
                    counts["dump.articles"] += 1
                    yield page.text
                else:
                    counts[f"dump.skipped_{reason}"] += 1
        except DumpReadError as exc:
            error = exc.problem
        except Exception as exc:  # reported per file by the driver, never a crash mid-run
            error = f"{type(exc).__name__}: {exc}"
        for key, value in counts.items():
            yield beam.pvalue.TaggedOutput(STATS, (key, value))
        yield beam.pvalue.TaggedOutput(
            FILES,
            {"path": path, "kind": "dump", "records": counts["dump.pages_read"], "error": error},
        )


class CountNgrams(beam.DoFn):
    """Article wikitext -> partial (n-gram, count) pairs, aggregated in memory per bundle."""

    def __init__(self, flush_keys: int) -> None:
        self.flush_keys = flush_keys

    def start_bundle(self) -> None:
        self.unigrams: Counter[str] = Counter()
        self.bigrams: Counter[str] = Counter()
        self.words = 0

    def _drain(self) -> Iterator[tuple[str, Any]]:
        yield from ((UNIGRAMS, item) for item in self.unigrams.items())
        yield from ((BIGRAMS, item) for item in self.bigrams.items())
        if self.words:
            yield STATS, ("text.words", self.words)
        self.start_bundle()

    def process(self, wikitext: str) -> Iterator[Any]:
        self.words += count_ngrams(wikitext_to_text(wikitext), self.unigrams, self.bigrams)
        if len(self.unigrams) + len(self.bigrams) >= self.flush_keys:
            for tag, item in self._drain():
                yield beam.pvalue.TaggedOutput(tag, item)

    def finish_bundle(self) -> Iterator[Any]:
        for tag, item in self._drain():
            yield beam.pvalue.TaggedOutput(tag, _global(item))


class CountPageViews(beam.DoFn):
    """Page-view file path -> partial (query, views) pairs; line outcomes on the side."""

    def __init__(self, config: QueryBuildConfig, namespaces: frozenset[str]) -> None:
        self.domains = frozenset(d.encode() for d in config.pageview_domains)
        self.min_hourly_views = config.min_hourly_views
        self.flush_keys = config.flush_keys
        self.namespaces = namespaces

    def process(self, path: str) -> Iterator[Any]:
        views: Counter[str] = Counter()
        outcomes: Counter[str] = Counter()
        error = ""
        try:
            with open_compressed(path) as handle:
                lines = iter(handle)
                chunk = 65_536
                while True:
                    before = sum(outcomes.values())
                    count_pageview_lines(
                        islice(lines, chunk),
                        self.domains,
                        self.namespaces,
                        self.min_hourly_views,
                        views,
                        outcomes,
                    )
                    if len(views) >= self.flush_keys:
                        yield from views.items()
                        views.clear()
                    if sum(outcomes.values()) - before < chunk:
                        break
        except EOFError:
            error = "file is truncated (compressed stream ends early)"
        except Exception as exc:  # reported per file by the driver, never a crash mid-run
            error = f"data is corrupt ({type(exc).__name__}: {exc})"
        yield from views.items()
        counted = sum(outcomes.values())
        outcomes["pageviews.lines_read"] = counted
        for key, value in outcomes.items():
            name = key if key.startswith("pageviews.") else f"pageviews.{key}"
            yield beam.pvalue.TaggedOutput(STATS, (name, value))
        yield beam.pvalue.TaggedOutput(
            FILES, {"path": path, "kind": "pageviews", "records": counted, "error": error}
        )


def _attach_first(item: tuple[str, dict[str, list[Any]]]) -> Iterator[tuple[str, Any]]:
    """(x, {bigrams: [(x y, c)], unigrams: [c(x)]}) -> (y, (x y, c, c(x))) for each bigram."""
    _, grouped = item
    first = grouped["unigrams"]
    if not first:
        return
    for bigram, count in grouped["bigrams"]:
        yield bigram.split(" ", 1)[1], (bigram, count, first[0])


def _attach_second(item: tuple[str, dict[str, list[Any]]]) -> Iterator[tuple[str, int, int, int]]:
    _, grouped = item
    second = grouped["unigrams"]
    if not second:
        return
    for bigram, count, first_count in grouped["bigrams"]:
        yield bigram, count, first_count, second[0]


def _scored(item: tuple[str, int, int, int], total_words: int) -> dict[str, Any]:
    bigram, count, first_count, second_count = item
    return {
        "query": bigram,
        "count": count,
        "score": pmi(count, first_count, second_count, total_words),
    }


def _candidate(item: tuple[str, int]) -> dict[str, Any]:
    query, count = item
    return {"query": query, "count": count, "score": float(count)}


def _stat(item: tuple[str, int]) -> dict[str, Any]:
    return {"key": item[0], "value": item[1]}


def _files(pipeline: beam.Pipeline, paths: Sequence[str], label: str) -> beam.PCollection:
    # Reshuffle: each file becomes its own unit of work, so files are read in parallel.
    return (
        pipeline
        | f"{label} paths" >> beam.Create(list(paths))
        | f"{label} spread" >> (beam.Reshuffle())
    )


def build_pipeline(
    pipeline: beam.Pipeline,
    dumps: Sequence[str],
    pageviews: Sequence[str],
    config: QueryBuildConfig,
    namespaces: frozenset[str],
    work_dir: str,
) -> None:
    """Add the counting transforms to ``pipeline``; they write Parquet under ``work_dir``."""
    read = _files(pipeline, dumps, "Dump") | "Read dump" >> beam.ParDo(ReadDump()).with_outputs(
        STATS, FILES, main="articles"
    )
    articles = read.articles
    if config.reshuffle_pages:
        articles = articles | "Spread pages" >> beam.Reshuffle()
    counted = articles | "Count n-grams" >> beam.ParDo(CountNgrams(config.flush_keys)).with_outputs(
        UNIGRAMS, BIGRAMS, STATS
    )

    unigrams = counted[UNIGRAMS] | "Sum unigrams" >> beam.CombinePerKey(sum)
    bigrams = counted[BIGRAMS] | "Sum bigrams" >> beam.CombinePerKey(sum)
    total_words = (
        counted[STATS]
        | "Word counts" >> beam.Map(lambda kv: kv[1])
        | "Total words" >> beam.CombineGlobally(sum)
    )

    min_unigram = config.min_unigram_count
    frequent_unigrams = unigrams | "Unigram threshold" >> beam.Filter(
        lambda kv: kv[1] >= min_unigram
    )
    write_parquet(
        frequent_unigrams | "Unigram rows" >> beam.Map(_candidate),
        f"{work_dir}/unigram",
        CANDIDATE_SCHEMA,
        "Write unigrams",
    )

    min_bigram = config.min_bigram_count
    frequent_bigrams = bigrams | "Bigram count threshold" >> beam.Filter(
        lambda kv: kv[1] >= min_bigram
    )
    # c(x) >= c(xy) >= min_bigram: rarer words cannot be part of a kept bigram.
    join_unigrams = unigrams | "Unigrams for PMI" >> beam.Filter(lambda kv: kv[1] >= min_bigram)
    by_first = frequent_bigrams | "Key by first word" >> beam.Map(
        lambda kv: (kv[0].split(" ", 1)[0], kv)
    )
    with_first = (
        {"bigrams": by_first, "unigrams": join_unigrams}
        | "Join first word" >> beam.CoGroupByKey()
        | "Attach c(x)" >> beam.FlatMap(_attach_first)
    )
    with_both = (
        {"bigrams": with_first, "unigrams": join_unigrams}
        | "Join second word" >> beam.CoGroupByKey()
        | "Attach c(y)" >> beam.FlatMap(_attach_second)
    )
    min_pmi = config.min_bigram_pmi
    scored = (
        with_both
        | "PMI" >> beam.Map(_scored, total_words=beam.pvalue.AsSingleton(total_words))
        | "PMI threshold" >> beam.Filter(lambda row: row["score"] >= min_pmi)
    )
    write_parquet(scored, f"{work_dir}/bigram", CANDIDATE_SCHEMA, "Write bigrams")

    stats = [read[STATS], counted[STATS]]
    files = [read[FILES]]
    if pageviews:
        views = _files(pipeline, pageviews, "Page views") | "Count page views" >> beam.ParDo(
            CountPageViews(config, namespaces)
        ).with_outputs(STATS, FILES, main="views")
        min_views = config.min_title_views
        titles = (
            views.views
            | "Sum views" >> beam.CombinePerKey(sum)
            | "Title threshold" >> beam.Filter(lambda kv: kv[1] >= min_views)
            | "Title rows" >> beam.Map(_candidate)
        )
        write_parquet(titles, f"{work_dir}/title", CANDIDATE_SCHEMA, "Write titles")
        stats.append(views[STATS])
        files.append(views[FILES])

    summed_stats = (
        stats | "All counts" >> beam.Flatten() | "Sum counts" >> beam.CombinePerKey(sum)
    ) | "Count rows" >> beam.Map(_stat)
    write_parquet(summed_stats, f"{work_dir}/stats", STATS_SCHEMA, "Write counts")
    write_parquet(
        files | "All files" >> beam.Flatten(), f"{work_dir}/files", FILES_SCHEMA, "Write files"
    )


def run_counting(
    dumps: Sequence[str],
    pageviews: Sequence[str],
    config: QueryBuildConfig,
    namespaces: frozenset[str],
    work_dir: str,
    runner: str = "DirectRunner",
    beam_options: dict[str, Any] | None = None,
) -> None:
    """Run the counting pipeline to completion on ``runner``."""
    with new_pipeline(runner, beam_options) as pipeline:
        build_pipeline(pipeline, dumps, pageviews, config, namespaces, work_dir)
