"""The matcher against the naive definition of MetaCLIP's substring matching, and the stage."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openwit.config import BuildConfig
from openwit.errors import ConfigError
from openwit.pipeline.match.matcher import QueryMatcher
from openwit.pipeline.match.stage import MatchStage, match_table
from openwit.schemas import QUERY_SCHEMA, candidate_schema
from openwit.text import as_query, metaclip_spacing
from tests.harness import run_stage


def reference_matches(queries: list[str], text: str) -> list[int]:
    """The definition: q matches where " q " occurs in the spaced text."""
    spaced = metaclip_spacing(text)
    return [i for i, q in enumerate(queries) if f" {q} " in spaced]


# Few distinct characters, so random queries really occur in random texts; punctuation,
# tabs, newlines, double spaces and non-ASCII all included.
ALPHABET = st.sampled_from(list("ab c,.;:?!`\t\n\r\u00e9\u00a0-'"))
texts = st.text(alphabet=ALPHABET, max_size=40)
words = st.text(alphabet=st.sampled_from(list("abc\u00e9")), min_size=1, max_size=3)
normalised_queries = st.lists(words, min_size=1, max_size=3).map(" ".join)


@settings(max_examples=400, deadline=None)
@given(
    queries=st.lists(st.one_of(normalised_queries, texts.map(as_query), texts), max_size=12),
    text=texts,
)
def test_matcher_equals_the_naive_definition(queries, text):
    matcher = QueryMatcher(queries)
    assert matcher.match(text) == reference_matches(queries, text)


def test_matching_examples():
    queries = ["red", "red circle", "circle", "St . Louis", "Louis", "a", "on a", "Red"]
    matcher = QueryMatcher(queries)
    assert matcher.match("a red circle on a grey background") == [0, 1, 2, 5, 6]
    assert matcher.match("St.Louis at night") == [3, 4]  # punctuation spaced like MetaCLIP
    # " St .  Louis ": the spacing leaves two spaces after the period, so MetaCLIP's
    # matching (and ours) does not find the title in this common spelling.
    assert matcher.match("St. Louis at night") == [4]
    assert matcher.match("Red circles") == [7]  # case-sensitive, whole words only
    assert matcher.match("redcircle") == []
    assert matcher.match("red,circle") == [0, 2]  # " red , circle ": not the bigram
    assert matcher.match("red  circle") == [0, 2]  # a double space breaks the bigram
    assert matcher.match("") == []


def test_repeated_queries_all_match():
    matcher = QueryMatcher(["cat", "dog", "cat"])
    assert matcher.match("a cat and a dog") == [0, 1, 2]


def test_no_queries_match_nothing():
    assert QueryMatcher([]).match("anything at all") == []


def write_queries(path, queries: list[str]) -> str:
    rows = [{"query": q, "source": "unigram", "count": 1, "score": 1.0} for q in queries]
    pq.write_table(pa.Table.from_pylist(rows, schema=QUERY_SCHEMA), path)
    return str(path)


def test_match_core_sets_query_ids_or_rejects_on_a_table():
    import pyarrow as pa

    from openwit.schemas import candidate_schema

    matcher = QueryMatcher(["dog", "beach"])
    rows = [
        {
            "uid": u,
            "url": f"https://x/{u}.jpg",
            "text": t,
            "source": "s",
            "source_offset": i,
            "lang": "en",
            "lang_score": 0.9,
        }
        for i, (u, t) in enumerate([("a", "a dog on the beach"), ("b", "a cat"), ("c", "dog")])
    ]
    output = match_table(matcher, pa.Table.from_pylist(rows, candidate_schema("text")))
    kept, rejected = output.kept, output.rejected
    assert kept.schema == candidate_schema("match")
    assert kept.column("uid").to_pylist() == ["a", "c"]
    assert kept.column("query_ids").to_pylist() == [[0, 1], [0]]
    assert rejected.to_pylist() == [
        {"uid": "b", "stage": "match", "reason": "no_query_match", "detail": "a cat"}
    ]


def test_match_stage_writes_query_ids_and_rejections(tmp_path):
    path = write_queries(tmp_path / "queries.parquet", ["dog", "beach", "sunset"])
    texts = ["a dog on the beach", "sunset over the sea", "nothing here"]
    rows = [
        {
            "uid": u,
            "url": f"http://x/{u}.jpg",
            "text": t,
            "source": "p",
            "source_offset": i,
            "lang": "en",
            "lang_score": 0.9,
        }
        for i, (u, t) in enumerate(zip("abc", texts))
    ]
    pq.write_table(pa.Table.from_pylist(rows, candidate_schema("text")), tmp_path / "in.parquet")
    attempt = tmp_path / "attempt"
    _, totals, _ = run_stage(
        MatchStage(), BuildConfig(queries=path), [tmp_path / "in.parquet"], attempt
    )
    kept = pq.read_table(sorted(attempt.glob("part-*.parquet")))
    assert kept.column("query_ids").to_pylist() == [[0, 1], [2]]
    assert dict(totals.rejected) == {"no_query_match": 1}


def test_match_stage_fingerprint_follows_the_queries_file(tmp_path):
    path = write_queries(tmp_path / "queries.parquet", ["dog"])
    config = BuildConfig(queries=path)
    first = MatchStage().fingerprint(config)
    write_queries(tmp_path / "queries.parquet", ["dog", "cat"])
    assert MatchStage().fingerprint(config) != first


def test_a_queries_file_without_a_query_column_is_a_config_error(tmp_path):
    pq.write_table(pa.table({"word": ["dog"]}), tmp_path / "q.parquet")
    with pytest.raises(ConfigError, match="no 'query' column"):
        run_stage(
            MatchStage(),
            BuildConfig(queries=str(tmp_path / "q.parquet")),
            [write_text_records(tmp_path)],
            tmp_path / "attempt",
        )


def write_text_records(tmp_path) -> str:
    rows = [
        {
            "uid": "a",
            "url": "http://x/a.jpg",
            "text": "a dog",
            "source": "p",
            "source_offset": 0,
            "lang": "en",
            "lang_score": 0.9,
        }
    ]
    path = tmp_path / "records.parquet"
    pq.write_table(pa.Table.from_pylist(rows, candidate_schema("text")), path)
    return str(path)
