"""The shared MetaCLIP spacing (query building and matching must agree on it)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from openwit.text import as_query, is_query, match_tokens, metaclip_spacing


def reference_spacing(text: str) -> str:
    """MetaCLIP's spacing written the slow, obvious way."""
    spaced = f" {text} "
    for mark in [",", ".", ";", ":", "?", "!", "`"]:
        spaced = spaced.replace(mark, f" {mark} ")
    for control in ["\t", "\n", "\r"]:
        spaced = spaced.replace(control, " ")
    return spaced


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
def test_spacing_equals_the_reference(text):
    assert metaclip_spacing(text) == reference_spacing(text)


def test_examples():
    assert metaclip_spacing("A dog, running.") == " A dog ,  running .  "
    assert match_tokens("St. Louis\tat night!") == ["St", ".", "Louis", "at", "night", "!"]
    assert as_query("  St. Louis ") == "St .  Louis"
    assert as_query("Washington,  D.C.") == "Washington ,  D . C ."


PHRASES = st.text(alphabet=st.sampled_from("ab .,:!?`\t\n"), max_size=30)


@given(PHRASES, PHRASES, PHRASES)
def test_a_query_matches_its_phrase_inside_any_collapsed_caption(before, phrase, after):
    query = as_query(phrase)
    caption = " ".join(f"{before} {phrase} {after}".split())
    if query:
        assert f" {query} " in metaclip_spacing(caption)


@given(PHRASES)
def test_normal_forms_are_queries(phrase):
    query = as_query(phrase)
    assert is_query(query) == bool(query)


def test_strings_that_cannot_match_are_not_queries():
    assert is_query("St .  Louis") and is_query("St . Louis") and is_query("red circle")
    for bad in ("", " red", "red ", "red  circle", "St. Louis", "a . . b", "a\tb"):
        assert not is_query(bad), bad
