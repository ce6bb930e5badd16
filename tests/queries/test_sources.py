"""Page-view titles, WordNet lemmas and the union rules (plain Python, no Beam)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openwit.errors import UserError
from openwit.queries.export_xml import write_wndb
from openwit.queries.pageviews import (
    LINE_OUTCOMES,
    count_pageview_lines,
    namespace_names,
    title_to_query,
)
from openwit.queries.union import proportional_quotas, union_queries
from openwit.queries.wordnet import parse_data_line, read_wordnet, wordnet_dir
from openwit.text import is_query

NAMESPACES = namespace_names(["Portal", "Draft"])


@pytest.mark.parametrize(
    ("title", "query"),
    [
        ("Black_Death", "Black Death"),
        ("St._Louis", "St .  Louis"),
        ("Star_Wars:_Episode_IV", "Star Wars :  Episode IV"),  # a colon, not a namespace
        ("Talk:Plague", None),
        ("User_talk:Someone", None),
        ("special:Search", None),
        ("Caf%C3%A9_au_lait", "Café au lait"),
        ("100%_Pure", "100% Pure"),  # not an escape: kept as written
    ],
)
def test_titles_become_queries_and_namespaces_are_skipped(title, query):
    assert title_to_query(title, NAMESPACES) == query


@given(st.text(max_size=60))
def test_every_title_query_is_its_own_normal_form(title):
    query = title_to_query(title, NAMESPACES)
    assert query is None or is_query(query)


def test_page_view_lines_sum_per_query_and_every_line_has_an_outcome():
    lines = [
        b"en St._Louis 30 0\n",
        b"en St.__Louis 45 0\n",
        b"en.m St._Louis 1000 0\n",
        b"en Talk:X 9 0\n",
        b"en Quiet 1 0\n",
        b"en nonsense\n",
        b"en \xff\xfe 3 0\n",
        b"en - 4 0\n",
    ]
    views, outcomes = Counter(), Counter()
    count_pageview_lines(lines, frozenset({b"en"}), NAMESPACES, 2, views, outcomes)
    assert views == Counter({"St .  Louis": 75})
    assert outcomes == Counter(
        counted=2,
        other_domain=1,
        namespace_title=1,
        below_hourly_floor=1,
        malformed_line=2,
        not_a_query=1,
    )
    assert set(outcomes) <= set(LINE_OUTCOMES)


def test_wordnet_data_lines_parse_like_princetons_files():
    line = (
        "00019731 00 s 02 handy 0 ready_to_hand(p) 0 002 & 00019131 a 0000 "
        '+ 04718999 n 0101 | easy to reach; "found a handy spot"  \n'
    )
    assert parse_data_line(line) == ["handy", "ready to hand"]
    many = "00001740 03 n 0b " + " ".join(f"w{i} 0" for i in range(11)) + " 000 | gloss\n"
    assert len(parse_data_line(many)) == 11  # w_cnt is hexadecimal
    assert parse_data_line("garbage line\n") is None


def test_wordnet_lemmas_count_their_synsets(tmp_path):
    root = write_wndb(tmp_path / "dict", {"noun": [["dog", "domestic_dog"], ["dog"]]})
    lemmas = read_wordnet(tmp_path)  # finds the dict/ folder inside
    assert lemmas.lemmas == Counter({"dog": 2, "domestic dog": 1})
    assert lemmas.synsets == 2
    assert wordnet_dir(tmp_path) == root


def test_debian_wordnet_base_reads_when_installed():
    root = "/usr/share/wordnet"
    try:
        wordnet_dir(root)
    except UserError:
        pytest.skip("wordnet-base is not installed here (CI builds its own WNDB dirs)")
    lemmas = read_wordnet(root)
    assert lemmas.synsets == 117_659  # WordNet 3.0
    assert lemmas.malformed_lines == 0
    assert "ice cream" in lemmas.lemmas


def test_union_takes_the_first_source_and_drops_what_cannot_match():
    rows, summaries = union_queries(
        {
            "unigram": [("star", 10, 10.0), ("a  b", 5, 5.0), ("...", 9, 9.0)],
            "bigram": [("red star", 4, 6.5), ("star", 1, 99.0)],
            "title": [("Red Star", 80, 80.0), ("x" * 300, 99, 99.0)],
            "wordnet": [("star", 3, 3.0), ("red giant", 1, 1.0)],
        },
        max_queries=100,
        max_query_chars=256,
    )
    assert rows == [
        ("star", "unigram", 10, 10.0),
        ("red star", "bigram", 4, 6.5),
        ("Red Star", "title", 80, 80.0),
        ("red giant", "wordnet", 1, 1.0),
    ]
    assert [s.invalid for s in summaries] == [2, 0, 1, 0]
    assert [s.duplicates for s in summaries] == [0, 1, 0, 1]


def test_ranking_breaks_ties_by_count_then_code_points():
    rows, _ = union_queries(
        {"bigram": [("b c", 2, 5.0), ("a b", 2, 5.0), ("B c", 2, 5.0), ("c d", 9, 5.0)]},
        max_queries=10,
        max_query_chars=256,
    )
    assert [r[0] for r in rows] == ["c d", "B c", "a b", "b c"]


@pytest.mark.parametrize(
    ("sizes", "cap", "quotas"),
    [
        ([6, 1, 2, 5], 7, [3, 1, 1, 2]),
        ([10, 10, 10, 10], 40, [10, 10, 10, 10]),
        ([300_000, 100_000, 60_000, 140_000], 500_000, [250_000, 83_333, 50_000, 116_667]),
        ([5, 0, 0, 0], 3, [3, 0, 0, 0]),
    ],
)
def test_proportional_quotas(sizes, cap, quotas):
    assert proportional_quotas(sizes, cap) == quotas
    assert sum(quotas) == min(cap, sum(sizes))
