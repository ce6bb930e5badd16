"""The counting pipeline: dump files and page-view files in, candidate queries out (Beam).

::

    dump files ─ Reshuffle ─ ReadDump ─ [Reshuffle] ─ CountNgrams ─┬ unigram shards ─ merge
                                                                   └ bigram shards  ─ merge
    (unigram shard s, bigram shard s) ─ CoGroupByKey ─ attach c(x) ─ re-shard by second word
    (unigram shard t, half-joined bigrams for t) ─ CoGroupByKey ─ attach c(y), PMI ─ threshold
    page-view files ─ Reshuffle ─ CountPageViews ─ merge ─ threshold

(merge: ``CombinePerKey(MergeCounts())`` over shard keys.)

Each file is one unit of work, so several dump files (``pages-articles1.xml...bz2`` ...) are
read in parallel. Workers count n-grams in memory (up to ``flush_keys`` distinct keys) and
hand Beam one dictionary per key shard (``shards`` of them, by a stable hash of the key)
instead of one element per n-gram: the combine per shard merges dictionaries at C speed,
and the shards spread the work and memory over workers. Bigrams are sharded by their first
word, so ``c(x)`` sits in the same shard; the second join meets ``c(y)`` after re-sharding
by the second word. No worker ever holds the whole vocabulary (``queries/count_shards.py``).

Counts and file outcomes are written as Parquet beside the candidates and read back by the
driver (counts come from files, not runner metrics: docs/decisions.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

from openwit.logs import quiet_beam_logging

quiet_beam_logging()  # before Beam's import-time warning

import apache_beam as beam  # noqa: E402 - after the log filter above
import pyarrow as pa  # noqa: E402
from apache_beam.transforms.window import GlobalWindow  # noqa: E402
from apache_beam.utils.timestamp import MIN_TIMESTAMP  # noqa: E402
from apache_beam.utils.windowed_value import WindowedValue  # noqa: E402

from openwit.beam import new_pipeline, spread, write_parquet  # noqa: E402
from openwit.queries.config import QueryBuildConfig  # noqa: E402
from openwit.queries.count_shards import (  # noqa: E402
    HalfJoined,
    attach_first_word,
    merge_counts,
    score_bigrams,
    split_bigrams_by_first_word,
    split_by_shard,
)
from openwit.queries.dump import (  # noqa: E402
    DumpReadError,
    iter_pages,
    open_compressed,
    skip_reason,
)
from openwit.queries.ngrams import count_ngrams  # noqa: E402
from openwit.queries.pageviews import count_pageview_lines  # noqa: E402
from openwit.queries.wikitext import wikitext_to_text  # noqa: E402

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
    """Article wikitext -> (shard, {n-gram: count}) dictionaries, counted in memory first."""

    def __init__(self, flush_keys: int, shards: int) -> None:
        self.flush_keys = flush_keys
        self.shards = shards

    def start_bundle(self) -> None:
        self.unigrams: Counter[str] = Counter()
        self.bigrams: Counter[str] = Counter()
        self.words = 0

    def _drain(self) -> Iterator[tuple[str, Any]]:
        for shard, part in sorted(split_by_shard(self.unigrams, self.shards).items()):
            yield UNIGRAMS, (shard, part)
        for shard, part in sorted(split_bigrams_by_first_word(self.bigrams, self.shards).items()):
            yield BIGRAMS, (shard, part)
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


class MergeCounts(beam.CombineFn):
    """Sums ``{key: count}`` dictionaries (the combine of one shard)."""

    def create_accumulator(self) -> Counter[str]:
        return Counter()

    def add_input(self, accumulator: Counter[str], counts: dict[str, int]) -> Counter[str]:
        accumulator.update(counts)
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[Counter[str]]) -> Counter[str]:
        return merge_counts(accumulators)

    def extract_output(self, accumulator: Counter[str]) -> dict[str, int]:
        return dict(accumulator)


class CountPageViews(beam.DoFn):
    """Page-view file path -> (shard, {query: views}) dictionaries; line outcomes aside."""

    def __init__(self, config: QueryBuildConfig, namespaces: frozenset[str]) -> None:
        self.domains = frozenset(d.encode() for d in config.pageview_domains)
        self.min_hourly_views = config.min_hourly_views
        self.flush_keys = config.flush_keys
        self.shards = config.shards
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
                        yield from sorted(split_by_shard(views, self.shards).items())
                        views.clear()
                    if sum(outcomes.values()) - before < chunk:
                        break
        except EOFError:
            error = "file is truncated (compressed stream ends early)"
        except Exception as exc:  # reported per file by the driver, never a crash mid-run
            error = f"data is corrupt ({type(exc).__name__}: {exc})"
        yield from sorted(split_by_shard(views, self.shards).items())
        counted = sum(outcomes.values())
        outcomes["pageviews.lines_read"] = counted
        for key, value in outcomes.items():
            name = key if key.startswith("pageviews.") else f"pageviews.{key}"
            yield beam.pvalue.TaggedOutput(STATS, (name, value))
        yield beam.pvalue.TaggedOutput(
            FILES, {"path": path, "kind": "pageviews", "records": counted, "error": error}
        )


def _half_join(
    item: tuple[int, dict[str, list[dict[str, int]]]], min_count: int, shards: int
) -> Iterator[tuple[int, list[HalfJoined]]]:
    """(s, {bigrams: [B_s], unigrams: [U_s]}) -> (t, [(x y, c, c(x))]) by second-word shard."""
    _, grouped = item
    for bigrams in grouped["bigrams"]:
        unigrams = grouped["unigrams"][0] if grouped["unigrams"] else {}
        yield from attach_first_word(bigrams, unigrams, min_count, shards)


def _scored(
    item: tuple[int, dict[str, list[Any]]], total_words: int, min_pmi: float
) -> Iterator[dict[str, Any]]:
    _, grouped = item
    unigrams = grouped["unigrams"][0] if grouped["unigrams"] else {}
    for half_joined in grouped["bigrams"]:
        for bigram, count, score in score_bigrams(half_joined, unigrams, total_words, min_pmi):
            yield {"query": bigram, "count": count, "score": score}


def _over(item: tuple[int, dict[str, int]], minimum: int) -> Iterator[dict[str, Any]]:
    """Candidate rows of one merged shard whose count reaches ``minimum``."""
    for query, count in item[1].items():
        if count >= minimum:
            yield {"query": query, "count": count, "score": float(count)}


def _stat(item: tuple[str, int]) -> dict[str, Any]:
    return {"key": item[0], "value": item[1]}


def _files(pipeline: beam.Pipeline, paths: Sequence[str], label: str) -> beam.PCollection:
    # Each file becomes its own unit of work, so files are read in parallel.
    return spread(pipeline, paths, f"{label} paths")


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
    shards = config.shards
    counted = articles | "Count n-grams" >> beam.ParDo(
        CountNgrams(config.flush_keys, shards)
    ).with_outputs(UNIGRAMS, BIGRAMS, STATS)

    unigrams = counted[UNIGRAMS] | "Merge unigram shards" >> beam.CombinePerKey(MergeCounts())
    bigrams = counted[BIGRAMS] | "Merge bigram shards" >> beam.CombinePerKey(MergeCounts())
    total_words = (
        counted[STATS]
        | "Word counts" >> beam.Map(lambda kv: kv[1])
        | "Total words" >> beam.CombineGlobally(sum)
    )
    write_parquet(
        unigrams | "Unigram threshold" >> beam.FlatMap(_over, config.min_unigram_count),
        f"{work_dir}/unigram",
        CANDIDATE_SCHEMA,
        "Write unigrams",
    )
    half_joined = (
        {"bigrams": bigrams, "unigrams": unigrams}
        | "Join first word" >> beam.CoGroupByKey()
        | "Attach c(x)" >> beam.FlatMap(_half_join, config.min_bigram_count, shards)
    )
    scored = (
        {"bigrams": half_joined, "unigrams": unigrams}
        | "Join second word" >> beam.CoGroupByKey()
        | "PMI threshold"
        >> beam.FlatMap(
            _scored,
            total_words=beam.pvalue.AsSingleton(total_words),
            min_pmi=config.min_bigram_pmi,
        )
    )
    write_parquet(scored, f"{work_dir}/bigram", CANDIDATE_SCHEMA, "Write bigrams")

    stats = [read[STATS], counted[STATS]]
    files = [read[FILES]]
    if pageviews:
        views = _files(pipeline, pageviews, "Page views") | "Count page views" >> beam.ParDo(
            CountPageViews(config, namespaces)
        ).with_outputs(STATS, FILES, main="views")
        titles = (
            views.views
            | "Merge view shards" >> beam.CombinePerKey(MergeCounts())
            | "Title threshold" >> beam.FlatMap(_over, config.min_title_views)
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
