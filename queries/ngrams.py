"""Words and bigrams of plain text, exactly as the caption matcher will see them.

Text is tokenised with :func:`openwit.text.match_tokens` (MetaCLIP's spacing, split on
whitespace), line by line, case kept. A token is a *word* when it holds a letter or a digit
and does not begin or end with a bracket or a double quote (``(Paris`` and ``"Paris"`` are
spellings of a word in brackets, not words of their own). A *bigram* is two words next to
each other on one line: a punctuation token, any other non-word token or a line break
between them ends the run, because ``" a b "`` can only occur in a spaced caption where the
two words are adjacent. Every unigram and bigram is therefore a string ``q`` with
``is_query(q)``, counted exactly where ``" q "`` occurs in the spaced line (any
whitespace character counts as a space; the stripper has already turned ``&nbsp;`` into one).

Bigram PMI is NLTK's ``BigramAssocMeasures.pmi`` (what MetaCLIP's ``build_metadata.py``
calls): ``log2(c(xy) * N / (c(x) * c(y)))`` with ``N`` the number of word tokens.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from itertools import pairwise

from openwit.text import WRAPPED_PUNCTUATION, match_tokens

#: Characters a word may not begin or end with.
WRAPPING_CHARS = '()[]{}<>"“”„«»'
_PUNCTUATION_TOKENS = frozenset(WRAPPED_PUNCTUATION)


def is_word(token: str) -> bool:
    """Whether a match token can be a unigram query (see the module docstring)."""
    if token.isalnum():
        return True
    if token in _PUNCTUATION_TOKENS or token[0] in WRAPPING_CHARS or token[-1] in WRAPPING_CHARS:
        return False
    return any(c.isalnum() for c in token)


def word_runs(text: str) -> Iterable[list[str]]:
    """Runs of adjacent words in ``text``: the stretches in which bigrams are taken."""
    for line in text.replace("\r", "\n").split("\n"):
        run: list[str] = []
        for token in match_tokens(line):
            if is_word(token):
                run.append(token)
            elif run:
                yield run
                run = []
        if run:
            yield run


def count_ngrams(text: str, unigrams: Counter[str], bigrams: Counter[str]) -> int:
    """Add the words and bigrams of ``text`` to the counters; returns the number of words."""
    words = 0
    for run in word_runs(text):
        words += len(run)
        unigrams.update(run)
        if len(run) > 1:
            bigrams.update([a + " " + b for a, b in pairwise(run)])
    return words


def pmi(bigram_count: int, first_count: int, second_count: int, total_words: int) -> float:
    """Pointwise mutual information in bits, NLTK's and MetaCLIP's form.

    ``log2(c(xy) * N / (c(x) * c(y)))``: how many times more often the pair occurs than if
    its words were independent, in powers of two. It is at most ``log2(N / c(xy))``, so a
    threshold of 30 is reachable only on corpora of more than 2**30 words (docs/queries.md).
    """
    return math.log2(bigram_count * total_words) - math.log2(first_count * second_count)


def max_pmi(total_words: int, min_bigram_count: int) -> float:
    """The highest PMI a bigram with at least ``min_bigram_count`` occurrences can have."""
    if total_words <= 0:
        return float("-inf")
    return math.log2(total_words / max(1, min_bigram_count))
