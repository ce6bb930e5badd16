"""Union of the four sources into the query list: provenance, cap, order.

The rules (docs/queries.md):

- A query's ``source`` is the first of ``unigram, bigram, title, wordnet`` that proposes it;
  its ``count`` and ``score`` come from that source (score: the value the source's threshold
  was tested on -- occurrences, PMI in bits, views, synsets).
- A query must be a normal form of :func:`openwit.text.as_query` (``is_query(q)``), hold
  a letter or a digit and be at most ``max_query_chars`` long; other candidates are dropped
  and counted.
- Within a source, candidates are ranked by score, then count (both descending), then the
  query's code points.
- Over ``max_queries``, every source is cut to a share proportional to its size (largest
  remainder, ties to the earlier source), keeping its best-ranked queries.
- Rows are written source by source in that order, each in rank order. The row number is the
  query id the matcher emits, so the same inputs give the same ids (and the same bytes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from openwit.schemas import QUERY_SOURCES
from openwit.text import is_query

Candidate = tuple[str, int, float]  # query, count, score


@dataclass
class SourceSummary:
    source: str
    candidates: int = 0  # passed the source's threshold
    invalid: int = 0  # not a matchable query, or too long
    duplicates: int = 0  # already proposed by an earlier source
    capped: int = 0  # cut by max_queries
    kept: int = 0
    min_count: int | None = None
    max_count: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def is_valid_query(query: str, max_chars: int) -> bool:
    return 0 < len(query) <= max_chars and is_query(query) and any(c.isalnum() for c in query)


def _rank_key(candidate: Candidate) -> tuple[float, int, str]:
    query, count, score = candidate
    return (-score, -count, query)


def proportional_quotas(sizes: Sequence[int], cap: int) -> list[int]:
    """Shares of ``cap`` proportional to ``sizes`` (largest remainder; ties to the earlier)."""
    total = sum(sizes)
    if total <= cap:
        return list(sizes)
    quotas = [size * cap // total for size in sizes]
    remainders = sorted(
        range(len(sizes)), key=lambda i: (-(sizes[i] * cap % total), i)
    )  # exact integer remainders, no float ties
    for index in remainders[: cap - sum(quotas)]:
        quotas[index] += 1
    return quotas


def union_queries(
    candidates: Mapping[str, Iterable[Candidate]], max_queries: int, max_query_chars: int
) -> tuple[list[tuple[str, str, int, float]], list[SourceSummary]]:
    """The query list rows ``(query, source, count, score)`` and a summary per source."""
    seen: set[str] = set()
    ranked: list[list[Candidate]] = []
    summaries: list[SourceSummary] = []
    for source in QUERY_SOURCES:
        summary = SourceSummary(source)
        kept: list[Candidate] = []
        for query, count, score in candidates.get(source, ()):
            summary.candidates += 1
            if not is_valid_query(query, max_query_chars):
                summary.invalid += 1
            elif query in seen:
                summary.duplicates += 1
            else:
                seen.add(query)
                kept.append((query, int(count), float(score)))
        kept.sort(key=_rank_key)
        ranked.append(kept)
        summaries.append(summary)
    quotas = proportional_quotas([len(r) for r in ranked], max_queries)
    rows: list[tuple[str, str, int, float]] = []
    for source, kept, quota, summary in zip(QUERY_SOURCES, ranked, quotas, summaries):
        summary.capped = len(kept) - quota
        summary.kept = quota
        chosen = kept[:quota]
        if chosen:
            counts = [count for _, count, _ in chosen]
            summary.min_count, summary.max_count = min(counts), max(counts)
        rows.extend((query, source, count, score) for query, count, score in chosen)
    return rows, summaries


def rows_to_table(rows: Sequence[tuple[str, str, int, float]]) -> Any:
    """The rows as an Arrow table of :data:`openwit.schemas.QUERY_SCHEMA`."""
    import pyarrow as pa

    from openwit.schemas import QUERY_SCHEMA

    columns = list(zip(*rows)) if rows else [[], [], [], []]
    return pa.Table.from_arrays(
        [pa.array(list(col), type=field.type) for col, field in zip(columns, QUERY_SCHEMA)],
        schema=QUERY_SCHEMA,
    )
