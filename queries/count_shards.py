"""Counts split into key shards, and the PMI joins done shard by shard (plain Python).

The pipeline hands Beam one dictionary per shard and flush instead of one element per
n-gram: a key's shard is ``crc32(key) % shards`` (stable across processes, unlike
``hash``), and shard dictionaries merge with ``Counter.update``, at C speed. A bigram is
sharded by its *first* word, so ``c(x)`` is in the unigram dictionary of the same shard;
the bigram is then re-sharded by its second word to meet ``c(y)``.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping

from openwit.queries.ngrams import pmi

# bigram, c(xy), c(x)
HalfJoined = tuple[str, int, int]


def shard_of(key: str, shards: int) -> int:
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % shards


def split_by_shard(counts: Mapping[str, int], shards: int) -> dict[int, dict[str, int]]:
    """``counts`` cut into per-shard dictionaries, by the key's shard."""
    if shards == 1:
        return {0: dict(counts)} if counts else {}
    parts: dict[int, dict[str, int]] = {}
    for key, count in counts.items():
        shard = zlib.crc32(key.encode("utf-8", "surrogatepass")) % shards
        part = parts.get(shard)
        if part is None:
            parts[shard] = part = {}
        part[key] = count
    return parts


def split_bigrams_by_first_word(
    counts: Mapping[str, int], shards: int
) -> dict[int, dict[str, int]]:
    """Bigram counts cut into per-shard dictionaries, by the shard of their first word."""
    parts: dict[int, dict[str, int]] = {}
    for bigram, count in counts.items():
        first = bigram.split(" ", 1)[0]
        shard = zlib.crc32(first.encode("utf-8", "surrogatepass")) % shards
        part = parts.get(shard)
        if part is None:
            parts[shard] = part = {}
        part[bigram] = count
    return parts


def merge_counts(parts: Iterable[Mapping[str, int]]) -> Counter[str]:
    merged: Counter[str] = Counter()
    for part in parts:
        merged.update(part)
    return merged


def attach_first_word(
    bigrams: Mapping[str, int], unigrams: Mapping[str, int], min_count: int, shards: int
) -> Iterator[tuple[int, list[HalfJoined]]]:
    """Frequent bigrams of one shard with ``c(x)``, grouped by the shard of their second word."""
    by_target: dict[int, list[HalfJoined]] = {}
    for bigram, count in bigrams.items():
        if count < min_count:
            continue
        first, second = bigram.split(" ", 1)
        target = shard_of(second, shards)
        by_target.setdefault(target, []).append((bigram, count, unigrams[first]))
    yield from sorted(by_target.items())


def score_bigrams(
    half_joined: Iterable[HalfJoined],
    unigrams: Mapping[str, int],
    total_words: int,
    min_pmi: float,
) -> Iterator[tuple[str, int, float]]:
    """``(bigram, count, pmi)`` of the bigrams whose PMI reaches ``min_pmi``."""
    for bigram, count, first_count in half_joined:
        second = bigram.split(" ", 1)[1]
        score = pmi(count, first_count, unigrams[second], total_words)
        if score >= min_pmi:
            yield bigram, count, score
