"""Wikitext to text, words and bigrams, PMI: the plain-Python cores."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openwit.queries.ngrams import count_ngrams, is_word, max_pmi, pmi, word_runs
from openwit.queries.wikitext import wikitext_to_text
from openwit.text import is_query, metaclip_spacing


@pytest.mark.parametrize(
    ("wikitext", "text"),
    [
        ("A [[capital city|capital]] of [[France]].", "A capital of France."),
        ("[[bus]]es and [[:Category:Buses|bus lists]]", "buses and bus lists"),
        ("'''Bold''' and ''italic'' and '''''both'''''", "Bold and italic and both"),
        ("x{{Infobox|a={{nested|{{deep}}}}|b=[[link]]}}y", "xy"),
        ("Fact.<ref name=a>{{cite|title=Gone}}</ref> More.<ref name=a/>", "Fact. More."),
        ("Before<!-- hidden [[link]] -->after", "Beforeafter"),
        ("a\n{| class=wikitable\n! H\n|-\n| cell\n|}\nb", "a\nb"),
        ("a\n{|\n| outer\n{|\n| inner\n|}\n| outer again\n|}\nb", "a\nb"),
        ("[[File:X.jpg|thumb|left|A [[cat]] on a mat]]Text", "Text"),
        ("[[Image:Y.png|200px]]Text [[Category:Cats]][[de:Katze]]", "Text"),
        ("See [https://example.org the site] or https://x.org/y now", "See the site or now"),
        ("== History ==\nIt began.", "History\nIt began."),
        ("* one\n# two\n: three", "one\ntwo\nthree"),
        ("AT&amp;T &nbsp;costs &lt;5", "AT&T costs <5"),
        ("<small>tiny</small> <span style='x'>text</span><br/>next", "tiny text\nnext"),
        ("E = mc<sup>2</sup> or <math>E=mc^2</math>.", "E = mc2 or ."),
        ("__NOTOC__Text", "Text"),
        ("Open {{unclosed template and text", "Open {{unclosed template and text"),
    ],
)
def test_wikitext_to_text_keeps_prose_and_drops_markup(wikitext, text):
    assert wikitext_to_text(wikitext) == text


@given(st.text(max_size=300))
def test_wikitext_to_text_never_raises(wikitext):
    assert isinstance(wikitext_to_text(wikitext), str)


plain_words = st.lists(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789,.!?", min_size=1, max_size=8),
    max_size=30,
)


@given(plain_words)
def test_text_without_markup_is_unchanged(words):
    text = " ".join(words)
    assert wikitext_to_text(text) == text.strip()


def test_tokens_keep_case_and_break_bigrams_at_punctuation_and_lines():
    unigrams, bigrams = Counter(), Counter()
    words = count_ngrams('The red star. The star, red\nstar (red) "x" a-b', unigrams, bigrams)
    assert unigrams == Counter({"The": 2, "red": 2, "star": 3, "a-b": 1})
    assert bigrams == Counter({"The red": 1, "red star": 1, "The star": 1})
    assert words == 8


@pytest.mark.parametrize(
    ("token", "word"),
    [
        ("star", True),
        ("1990", True),
        ("a-b", True),
        ("Paris's", True),
        ("C++", True),
        (".", False),
        ("-", False),
        ("(Paris", False),
        ("Paris)", False),
        ('"x"', False),
        ("«a»", False),
        ("—", False),
    ],
)
def test_which_tokens_are_words(token, word):
    assert is_word(token) is word


@given(st.text(max_size=200))
def test_every_counted_ngram_is_a_query_that_matches_where_it_was_counted(text):
    unigrams, bigrams = Counter(), Counter()
    count_ngrams(text, unigrams, bigrams)
    lines = text.replace("\r", "\n").split("\n")
    for query in [*unigrams, *bigrams]:
        assert is_query(query)
        # Any whitespace separates tokens; the matcher sees spaces (captions: ASCII spaces).
        assert any(f" {query} " in metaclip_spacing(" ".join(line.split())) for line in lines)


@given(st.text(max_size=200))
def test_word_counts_add_up(text):
    unigrams, bigrams = Counter(), Counter()
    words = count_ngrams(text, unigrams, bigrams)
    runs = list(word_runs(text))
    assert words == sum(unigrams.values()) == sum(len(r) for r in runs)
    assert sum(bigrams.values()) == sum(len(r) - 1 for r in runs)


def test_pmi_is_nltks_log2_form():
    # c(xy)=3, c(x)=3, c(y)=3, N=63: log2(3 * 63 / 9)
    assert pmi(3, 3, 3, 63) == pytest.approx(math.log2(21))
    assert pmi(1, 1, 1, 2**32) == pytest.approx(32.0)
    assert pmi(10, 100, 1000, 10_000) == pytest.approx(0.0)  # independent words


def test_threshold_30_needs_more_than_a_billion_words():
    assert max_pmi(4_000_000_000, 2) > 30 > max_pmi(1_000_000_000, 2)
