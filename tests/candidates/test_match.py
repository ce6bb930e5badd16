"""The matcher against the naive definition of MetaCLIP's substring matching, and the stage."""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st

from openwit.beam import apply_core, test_pipeline
from openwit.config import BuildConfig
from openwit.errors import ConfigError
from openwit.pipeline.match.matcher import QueryMatcher
from openwit.pipeline.match.stage import MatchStage, match_record
from openwit.schemas import QUERY_SCHEMA
from openwit.text import as_query, metaclip_spacing


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


def test_match_core_sets_query_ids_or_rejects():
    matcher = QueryMatcher(["dog", "beach"])
    kept = list(match_record(matcher, {"uid": "u1", "text": "a dog on the beach"}))
    assert kept == [{"uid": "u1", "text": "a dog on the beach", "query_ids": [0, 1]}]
    (rejection,) = match_record(matcher, {"uid": "u2", "text": "a cat on a sofa"})
    assert (rejection.uid, rejection.stage, rejection.reason) == ("u2", "match", "no_query_match")


def test_match_table_is_the_record_core_on_a_table():
    import pyarrow as pa

    from openwit.pipeline.match.stage import match_table
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
    kept, rejected = match_table(matcher, pa.Table.from_pylist(rows, candidate_schema("text")))
    assert kept.schema == candidate_schema("match")
    assert kept.column("uid").to_pylist() == ["a", "c"]
    assert kept.column("query_ids").to_pylist() == [[0, 1], [0]]
    assert rejected.to_pylist() == [
        {"uid": "b", "stage": "match", "reason": "no_query_match", "detail": "a cat"}
    ]


def test_match_stage_on_beam_builds_the_automaton_in_the_worker(tmp_path):
    path = write_queries(tmp_path / "queries.parquet", ["dog", "beach", "sunset"])
    stage = MatchStage()
    config = BuildConfig(queries=path)
    records = [
        {"uid": "a", "text": "a dog on the beach"},
        {"uid": "b", "text": "sunset over the sea"},
        {"uid": "c", "text": "nothing here"},
    ]
    with test_pipeline() as pipeline:
        kept, rejected = apply_core(
            pipeline | beam.Create(records), "match", stage.make_core(config)
        )
        assert_that(
            kept,
            equal_to(
                [
                    {"uid": "a", "text": "a dog on the beach", "query_ids": [0, 1]},
                    {"uid": "b", "text": "sunset over the sea", "query_ids": [2]},
                ]
            ),
            label="kept",
        )
        assert_that(
            rejected | "reasons" >> beam.Map(lambda r: (r["uid"], r["reason"])),
            equal_to([("c", "no_query_match")]),
            label="rejected",
        )


def test_match_stage_fingerprint_follows_the_queries_file(tmp_path):
    path = write_queries(tmp_path / "queries.parquet", ["dog"])
    config = BuildConfig(queries=path)
    first = MatchStage().fingerprint(config)
    write_queries(tmp_path / "queries.parquet", ["dog", "cat"])
    assert MatchStage().fingerprint(config) != first


def test_a_queries_file_without_a_query_column_is_a_config_error(tmp_path):
    pq.write_table(pa.table({"word": ["dog"]}), tmp_path / "q.parquet")
    with pytest.raises(ConfigError, match="no 'query' column"):
        MatchStage().make_core(BuildConfig(queries=str(tmp_path / "q.parquet")))
