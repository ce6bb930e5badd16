"""Query matching with MetaCLIP's substring semantics on an Aho-Corasick automaton.

**Semantics** (MetaCLIP's, :mod:`openwit.text`): a query ``q`` matches a text where
``" " + q + " "`` occurs in ``metaclip_spacing(text)``; case-sensitive, every occurrence of
every query counts (overlapping and nested ones too), and a text's ``query_ids`` are the
sorted, distinct row numbers of the queries that match.

**How.** Like MetaCLIP's own Aho-Corasick matcher, the automaton holds the space-padded
queries, so every match it reports is a whole-word match and no boundary check is needed.
What differs is measured in docs/candidates.md: the automaton is ahocorasick_rs's contiguous
NFA (Rust) instead of pyahocorasick's trie, the shared spacing is a chain of ``str.replace``
(several times faster than ``str.translate`` on CPython), and the matches go from Rust into a set
without a Python loop. A word-level automaton (one symbol per word) was tried and measured
slower: the per-word dictionary lookups in Python cost more than the characters they save.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import threading
from collections.abc import Sequence
from operator import itemgetter

from openwit.text import metaclip_spacing

_first = itemgetter(0)


class QueryMatcher:
    """Matches texts against a fixed list of queries; build once, use for many texts."""

    def __init__(self, queries: Sequence[str]) -> None:
        import ahocorasick_rs

        self.n_queries = len(queries)
        # Building makes a million short strings; the cyclic GC would walk them again and
        # again, and none of them can form a cycle.
        collecting = gc.isenabled()
        gc.disable()
        try:
            # Pattern i is query i. A repeated query string (a list should have none) is
            # reported under every id it has: ahocorasick_rs reports each pattern.
            patterns = [f" {query} " for query in queries]
            self.automaton = (
                ahocorasick_rs.AhoCorasick(
                    patterns,
                    matchkind=ahocorasick_rs.MatchKind.Standard,
                    implementation=ahocorasick_rs.Implementation.ContiguousNFA,
                )
                if patterns
                else None
            )
        finally:
            if collecting:
                gc.enable()

    def match(self, text: str) -> list[int]:
        """Sorted, distinct ids of the queries that match ``text``."""
        if self.automaton is None:
            return []
        found = self.automaton.find_matches_as_indexes(metaclip_spacing(text), True)  # overlapping
        return sorted(set(map(_first, found))) if found else []


def read_queries(path: str) -> list[str]:
    """The ``query`` column of a queries.parquet (local path or URL), in row order."""
    import pyarrow.parquet as pq

    from openwit import fs

    with fs.open_input(path) as handle:
        column = pq.read_table(handle, columns=["query"]).column("query")
    return ["" if q is None else q for q in column.to_pylist()]


#: Query lists already checked in this process, by (path, sha256): a build checks its list
#: before any stage runs and the match stage checks it again before its pipeline (the file
#: may have changed in between); the second check of the same bytes costs a hash, not the
#: 0.2 s of reading and counting 500k queries.
_checked: dict[tuple[str, str], int] = {}


def check_queries_file(path: str) -> int:
    """Number of queries in a queries.parquet; :class:`ConfigError` if it cannot be one.

    A query list holds each query once, as text that is not blank: a row number is a
    query's id, and a repeated query would be counted, and capped, as two queries (each
    copy gets its own ``max_per_query``), while a blank one matches every double space.
    An empty list would reject every record as ``no_query_match``. All of these are
    refused here, before any stage runs (``openwit queries build`` writes none of them).
    """
    try:
        key = (path, file_digest(path))
    except OSError:  # no such file: the full check says so in its own words
        return _check_queries_file(path)
    if key not in _checked:
        _checked[key] = _check_queries_file(path)
    return _checked[key]


def _check_queries_file(path: str) -> int:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from openwit import fs
    from openwit.errors import ConfigError

    try:
        with fs.open_input(path) as handle:
            parquet = pq.ParquetFile(handle)
            if "query" not in parquet.schema_arrow.names:
                raise ConfigError(
                    f"queries: {path} has no 'query' column (see `openwit queries build`)"
                )
            column = parquet.read(columns=["query"]).column("query")
    except FileNotFoundError:
        raise ConfigError(f"queries: no such file: {path}") from None
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"queries: cannot read {path} as Parquet: {exc}") from None
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise ConfigError(f"queries: the 'query' column of {path} is {column.type}, not text")
    if len(column) == 0:
        raise ConfigError(f"queries: {path} holds no queries (0 rows)")
    blank = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(column)), 0), True)
    if pc.any(blank).as_py():
        rows = pc.indices_nonzero(blank)
        raise ConfigError(
            f"queries: {path} has {len(rows):,} empty or blank queries (first at row {rows[0]})"
        )
    distinct = pc.count_distinct(column).as_py()
    if distinct != len(column):  # find the first repeat to name it (rare: not on the hot path)
        first_row: dict[str, int] = {}
        for row, query in enumerate(column.to_pylist()):
            seen = first_row.setdefault(query, row)
            if seen != row:
                raise ConfigError(
                    f"queries: {path} repeats {len(column) - distinct:,} queries ({query!r} "
                    f"at rows {seen} and {row}); each query must appear once, its row number "
                    "is its id"
                )
    return len(column)


def file_digest(path: str) -> str:
    """sha256 of a file's bytes (local or a URL), for fingerprints and caches."""
    from openwit import fs

    digest = hashlib.sha256()
    with fs.open_input(path) as handle:
        for block in iter(functools.partial(handle.read, 1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_cache: dict[tuple[str, str], QueryMatcher] = {}
_cache_lock = threading.Lock()


def shared_matcher(path: str, digest: str) -> QueryMatcher:
    """One matcher per process for a queries file: every DoFn instance (Beam may run several
    per worker process, one per thread) shares it instead of building its own."""
    key = (path, digest)
    with _cache_lock:
        matcher = _cache.get(key)
        if matcher is None:
            _cache.clear()  # one query list at a time; an old one is garbage now
            matcher = _cache[key] = QueryMatcher(read_queries(path))
        return matcher


def prepare_shared_matcher(path: str) -> None:
    """Build the matcher of a queries file ahead of its stage (openwit's local pool forks
    the match stage's workers from the process that ran this: they share it)."""
    shared_matcher(path, file_digest(path))
