"""The shared MetaCLIP spacing (query building and matching must agree on it)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from openwit.text import as_query, match_tokens, metaclip_spacing


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
    assert as_query("  St. Louis ") == "St . Louis"


@given(st.text(max_size=40))
def test_a_normalised_phrase_matches_its_own_caption(phrase):
    query = as_query(phrase)
    if query:
        assert f" {query} " in " ".join(match_tokens(phrase)).join("  ")
