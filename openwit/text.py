"""The one text normalisation that query building and query matching must share.

MetaCLIP's substring matching (the curation algorithm openwit follows) pads a caption with a
space at each end, puts spaces around ``, . ; : ? !`` and the backtick, and turns tabs,
newlines and carriage returns into spaces; a query ``q`` then matches where ``" q "``
occurs, case-sensitively. The query builder tokenises Wikipedia with the same function, so
every query it emits is a sequence of these tokens joined by single spaces: exactly the
strings that can match.
"""

from __future__ import annotations

#: Characters MetaCLIP wraps in spaces before matching.
WRAPPED_PUNCTUATION = ",.;:?!`"
#: Characters MetaCLIP turns into spaces.
SPACED_CONTROLS = "\t\n\r"

_TABLE = str.maketrans(
    {**{c: f" {c} " for c in WRAPPED_PUNCTUATION}, **dict.fromkeys(SPACED_CONTROLS, " ")}
)


def metaclip_spacing(text: str) -> str:
    """``text`` as MetaCLIP's matcher sees it: padded, punctuation wrapped in spaces."""
    return f" {text.translate(_TABLE)} "


def match_tokens(text: str) -> list[str]:
    """The tokens of ``text`` under MetaCLIP spacing (punctuation marks are tokens too)."""
    return metaclip_spacing(text).split()


def as_query(phrase: str) -> str:
    """Normalise a phrase (a title, a WordNet lemma) into a string that can match.

    Applies the spacing and collapses runs of whitespace, so ``"St. Louis"`` becomes
    ``"St . Louis"``: the form in which it appears in a spaced caption.
    """
    return " ".join(match_tokens(phrase))
