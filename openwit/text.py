"""The one text normalisation that query building and query matching must share.

MetaCLIP's substring matching (the curation algorithm openwit follows) pads a caption with a
space at each end, puts spaces around ``, . ; : ? !`` and the backtick, and turns tabs,
newlines and carriage returns into spaces; a query ``q`` then matches where ``" q "``
occurs, case-sensitively, with no other normalisation.

Because only spaces are added, a phrase with punctuation keeps its original spaces too:
``"St. Louis"`` is spaced as ``" St .  Louis "`` (two spaces after the full stop). So the
query that matches it is ``"St .  Louis"``, which :func:`as_query` produces; a query such as
``"St . Louis"`` would only match the caption ``"St.Louis"``. The query builder normalises
titles and WordNet lemmas with :func:`as_query`; :func:`is_query` tells whether a string is
such a normal form (every query in queries.parquet is).
"""

from __future__ import annotations

import re

#: Characters MetaCLIP wraps in spaces before matching.
WRAPPED_PUNCTUATION = ",.;:?!`"
#: Characters MetaCLIP turns into spaces.
SPACED_CONTROLS = "\t\n\r"

_UNSPACE = re.compile(r" ?([,.;:?!`]) ?")


def metaclip_spacing(text: str) -> str:
    """``text`` as MetaCLIP's matcher sees it: padded, punctuation wrapped in spaces."""
    # A chain of str.replace, skipped for absent characters, is several times faster than
    # str.translate on CPython for short captions.
    for mark in WRAPPED_PUNCTUATION:
        if mark in text:
            text = text.replace(mark, f" {mark} ")
    for control in SPACED_CONTROLS:
        if control in text:
            text = text.replace(control, " ")
    return f" {text} "


def match_tokens(text: str) -> list[str]:
    """The tokens of ``text`` under MetaCLIP spacing (punctuation marks are tokens too)."""
    return metaclip_spacing(text).split()


def as_query(phrase: str) -> str:
    """The query that matches ``phrase`` wherever it occurs in a (whitespace-collapsed) caption.

    Collapses the phrase's own whitespace (the text stage does the same to captions), applies
    the spacing and strips the outer padding: ``"St. Louis"`` becomes ``"St .  Louis"``.
    """
    return metaclip_spacing(" ".join(phrase.split())).strip()


def is_query(candidate: str) -> bool:
    """Whether ``candidate`` is the :func:`as_query` form of some phrase (so it can match)."""
    if not candidate:
        return False
    return as_query(_UNSPACE.sub(r"\1", candidate)) == candidate
