"""The whole builder on real inputs: bz2 dumps, gzip page views, a WNDB directory."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from openwit.errors import UserError
from openwit.queries.build import build_queries, summary_path
from openwit.schemas import QUERY_SCHEMA
from openwit.text import is_query

from .corpus import EXPECTED_ROWS, test_config, write_inputs


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return write_inputs(tmp_path_factory.mktemp("inputs"))


@pytest.fixture(scope="module")
def built(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "queries.parquet"
    result = build_queries(
        inputs["dumps"], out, inputs["pageviews"], inputs["wordnet"], test_config()
    )
    return out, result


def rows_of(path):
    return [tuple(r.values()) for r in pq.read_table(path).to_pylist()]


def test_query_list_has_exactly_the_expected_queries_counts_and_order(built):
    out, _ = built
    rows = rows_of(out)
    assert [r[:3] for r in rows] == [r[:3] for r in EXPECTED_ROWS]
    for (_, _, _, score), (_, _, _, expected) in zip(rows, EXPECTED_ROWS):
        assert score == pytest.approx(expected)
    assert pq.read_schema(out).equals(QUERY_SCHEMA)


def test_rare_exclusive_bigram_passes_pmi_and_the_most_frequent_bigram_does_not(built):
    out, result = built
    queries = {r[0]: r for r in rows_of(out)}
    assert queries["Yersinia pestis"][1] == "bigram"
    assert queries["Yersinia pestis"][3] == pytest.approx(math.log2(21))
    assert "of the" not in queries  # count 7, PMI log2(6.3) = 2.66 < 4
    bigram = next(s for s in result.sources if s.source == "bigram")
    assert bigram.candidates == 1


def test_every_query_is_unique_and_its_own_normal_form(built):
    out, _ = built
    queries = [r[0] for r in rows_of(out)]
    assert len(queries) == len(set(queries))
    assert all(is_query(q) for q in queries)


def test_pages_are_accounted_for_by_outcome(built):
    _, result = built
    inputs = result.inputs
    assert inputs["dump.pages_read"] == 10
    assert inputs["dump.articles"] == 3
    assert inputs["dump.skipped_redirect"] == 2
    assert inputs["dump.skipped_disambiguation"] == 2
    assert inputs["dump.skipped_other_namespace"] == 2
    assert inputs["dump.skipped_malformed_page"] == 1
    skipped = sum(v for k, v in inputs.items() if k.startswith("dump.skipped_"))
    assert inputs["dump.pages_read"] == inputs["dump.articles"] + skipped
    assert inputs["text.words"] == 63


def test_page_view_lines_are_accounted_for_by_outcome(built):
    _, result = built
    inputs = result.inputs
    assert inputs["pageviews.lines_read"] == 13
    assert inputs["pageviews.counted"] == 7
    assert inputs["pageviews.other_domain"] == 2
    assert inputs["pageviews.namespace_title"] == 2
    assert inputs["pageviews.not_a_query"] == 1
    assert inputs["pageviews.malformed_line"] == 1
    outcomes = [k for k in inputs if k.startswith("pageviews.") and k != "pageviews.lines_read"]
    assert sum(inputs[k] for k in outcomes) == inputs["pageviews.lines_read"]


def test_sources_report_duplicates_of_earlier_sources(built):
    _, result = built
    by_source = {s.source: s for s in result.sources}
    assert by_source["title"].duplicates == 1  # Yersinia pestis is a bigram already
    assert by_source["wordnet"].duplicates == 2  # flea, Yersinia pestis
    assert by_source["wordnet"].kept == 5
    for summary in result.sources:
        assert summary.candidates == (
            summary.invalid + summary.duplicates + summary.capped + summary.kept
        )


def test_summary_json_is_written_beside_the_list(built):
    out, result = built
    summary = json.loads(Path(summary_path(out)).read_text())
    assert summary["rows"] == len(EXPECTED_ROWS) == result.rows
    assert summary["inputs"]["dump.articles"] == 3


def test_cap_keeps_a_proportional_share_of_each_source_best_first(inputs, tmp_path):
    out = tmp_path / "capped.parquet"
    result = build_queries(
        inputs["dumps"], out, inputs["pageviews"], inputs["wordnet"], test_config(max_queries=7)
    )
    # Sizes 6, 1, 2, 5 -> quotas 3, 1, 1, 2 (largest remainder, ties to the earlier source).
    assert [r[0] for r in rows_of(out)] == [
        "the",
        "of",
        "Yersinia",
        "Yersinia pestis",
        "Black Death",
        "plague",
        "Y .  pestis",
    ]
    assert [s.capped for s in result.sources] == [3, 0, 1, 3]


def test_same_inputs_give_the_same_bytes_in_memory_and_multi_processing(inputs, built, tmp_path):
    out, _ = built
    other = tmp_path / "mp.parquet"
    build_queries(
        inputs["dumps"],
        other,
        inputs["pageviews"],
        inputs["wordnet"],
        test_config(reshuffle_pages=True),
        beam_options={"direct_running_mode": "multi_processing", "direct_num_workers": 2},
    )
    assert other.read_bytes() == out.read_bytes()


def test_missing_wordnet_directory_is_a_user_error(inputs, tmp_path):
    with pytest.raises(UserError, match="WordNet directory not found"):
        build_queries(inputs["dumps"], tmp_path / "q.parquet", wordnet=tmp_path / "nowhere")


def test_directory_without_wndb_files_is_a_user_error(inputs, tmp_path):
    with pytest.raises(UserError, match="not a WordNet database directory"):
        build_queries(inputs["dumps"], tmp_path / "q.parquet", wordnet=tmp_path)


def test_missing_dump_is_a_user_error_naming_it(tmp_path):
    with pytest.raises(UserError, match=r"nope\.xml\.bz2"):
        build_queries([tmp_path / "nope.xml.bz2"], tmp_path / "q.parquet")


def test_a_file_that_is_not_a_mediawiki_export_is_a_user_error(tmp_path):
    bad = tmp_path / "feed.xml"
    bad.write_text("<rss><channel/></rss>")
    with pytest.raises(UserError, match="not a MediaWiki XML export"):
        build_queries([bad], tmp_path / "q.parquet")


def test_an_explicit_work_dir_gives_the_same_list_and_is_cleaned_up(inputs, built, tmp_path):
    out, _ = built
    other = tmp_path / "q.parquet"
    work = tmp_path / "shared-work"
    work.mkdir()
    build_queries(
        inputs["dumps"],
        other,
        inputs["pageviews"],
        inputs["wordnet"],
        test_config(),
        work_dir=work,
    )
    assert other.read_bytes() == out.read_bytes()
    assert list(work.iterdir()) == []


def test_the_number_of_shards_does_not_change_the_list(inputs, built, tmp_path):
    out, _ = built
    for shards in (1, 7):
        other = tmp_path / f"q{shards}.parquet"
        build_queries(
            inputs["dumps"],
            other,
            inputs["pageviews"],
            inputs["wordnet"],
            test_config(shards=shards),
        )
        assert other.read_bytes() == out.read_bytes()


def test_an_unreadable_url_is_a_user_error_not_a_traceback(tmp_path):
    with pytest.raises(UserError, match=r"cannot list nosuchscheme://bucket/enwiki-\*\.bz2"):
        build_queries(["nosuchscheme://bucket/enwiki-*.bz2"], tmp_path / "q.parquet")


def test_file_urls_of_the_inputs_are_local_paths(inputs, built, tmp_path):
    """``file:///...`` names a local file (Beam's filesystems know no ``file`` scheme: the
    builder sent such paths to them and failed)."""
    out, _ = built
    other = tmp_path / "q.parquet"
    build_queries(
        [Path(p).resolve().as_uri() for p in inputs["dumps"]],
        other,
        [Path(p).resolve().as_uri() for p in inputs["pageviews"]],
        inputs["wordnet"],
        test_config(),
    )
    assert other.read_bytes() == out.read_bytes()
