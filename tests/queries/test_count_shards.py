"""Sharded counts and the shard-by-shard PMI join agree with a direct computation."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from openwit.queries.count_shards import (
    attach_first_word,
    merge_counts,
    score_bigrams,
    shard_of,
    split_bigrams_by_first_word,
    split_by_shard,
)
from openwit.queries.ngrams import count_ngrams, pmi

texts = st.lists(st.text(alphabet="ab cd,\n", max_size=40), min_size=1, max_size=6)


def direct(texts_: list[str], min_count: int, min_pmi: float) -> dict[str, float]:
    unigrams, bigrams = Counter(), Counter()
    words = sum(count_ngrams(t, unigrams, bigrams) for t in texts_)
    return {
        b: pmi(c, unigrams[b.split()[0]], unigrams[b.split()[1]], words)
        for b, c in bigrams.items()
        if c >= min_count
        and pmi(c, unigrams[b.split()[0]], unigrams[b.split()[1]], words) >= min_pmi
    }


@settings(max_examples=60)
@given(texts, st.integers(1, 5), st.integers(1, 3))
def test_shard_by_shard_join_equals_the_direct_computation(texts_, shards, min_count):
    # Each text is counted by a different "worker"; shards merge, then the two joins run.
    unigram_parts, bigram_parts, words = [], [], 0
    for text in texts_:
        unigrams, bigrams = Counter(), Counter()
        words += count_ngrams(text, unigrams, bigrams)
        unigram_parts.append(split_by_shard(unigrams, shards))
        bigram_parts.append(split_bigrams_by_first_word(bigrams, shards))
    merged_u = {s: merge_counts(p.get(s, {}) for p in unigram_parts) for s in range(shards)}
    merged_b = {s: merge_counts(p.get(s, {}) for p in bigram_parts) for s in range(shards)}
    half: dict[int, list] = {s: [] for s in range(shards)}
    for shard in range(shards):
        for target, items in attach_first_word(merged_b[shard], merged_u[shard], min_count, shards):
            half[target].extend(items)
    scored = {
        bigram: score
        for target in range(shards)
        for bigram, _, score in score_bigrams(half[target], merged_u[target], words, -100.0)
    }
    assert scored == direct(texts_, min_count, -100.0)


def test_a_key_always_lands_in_the_same_shard():
    assert shard_of("Yersinia", 64) == shard_of("Yersinia", 64)
    parts = split_by_shard({"a": 1, "b": 2, "c": 3}, 2)
    assert merge_counts(parts.values()) == Counter({"a": 1, "b": 2, "c": 3})
    assert all(shard_of(k, 2) == s for s, part in parts.items() for k in part)
