"""Duplicate groups without Beam: keep rule, bands, bucket forests, components."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from openwit.dedup.groups import (
    Slim,
    UnionFind,
    band_keys,
    band_layout,
    bucket_forest,
    components,
    exact_duplicates,
    rank_key,
    uid_of,
)


def test_rank_key_orders_by_uid_then_source_and_offset():
    a = rank_key({"uid": "aa", "source": "x.jsonl", "source_offset": 10})
    b = rank_key({"uid": "aa", "source": "x.jsonl", "source_offset": 9})
    c = rank_key({"uid": "ab", "source": "a.jsonl", "source_offset": 0})
    assert sorted([c, a, b]) == [b, a, c]
    assert uid_of(a) == "aa"


def test_exact_duplicates_keep_the_smallest_key_whatever_the_order():
    keys = ["c", "a", "b"]
    for _ in range(5):
        random.shuffle(keys)
        assert exact_duplicates(keys) == ("a", ["b", "c"])


@given(st.integers(0, 20))
def test_bands_cover_the_64_bits(radius):
    layout = band_layout(radius)
    assert len(layout) == radius + 1
    assert sum(width for _, width in layout) == 64
    assert sorted(shift for shift, _ in layout)[0] == 0


@given(st.integers(0, 2**64 - 1), st.sets(st.integers(0, 63), max_size=6), st.integers(0, 8))
def test_hashes_within_radius_share_a_band(code, flips, radius):
    other = code
    for bit in flips:
        other ^= 1 << bit
    if len(flips) <= radius:
        assert set(band_keys(code, radius)) & set(band_keys(other, radius))


def slim(key, phash, dhash=0):
    return Slim(key, None, phash, dhash)


def test_bucket_forest_links_near_and_equal_hashes_to_the_smallest_key():
    base = 0x0123_4567_89AB_CDEF
    items = [
        slim("d", base),
        slim("b", base ^ 0b111),  # 3 bits away
        slim("a", base),  # equal hash
        slim("c", base ^ (0xFFFF << 20)),  # 16 bits away: unrelated
    ]
    links = bucket_forest(items, radius=4, dhash_radius=None)
    assert sorted(links) == [("b", "a"), ("d", "a")]


def test_bucket_forest_requires_dhash_agreement_when_asked():
    items = [slim("a", 5, dhash=0), slim("b", 5, dhash=(1 << 20) - 1)]
    assert bucket_forest(items, 4, dhash_radius=14) == []
    assert bucket_forest(items, 4, dhash_radius=None) == [("b", "a")]


def test_components_merge_chains_and_keep_the_smallest():
    links = [("c", "b"), ("b", "a"), ("e", "d"), ("z", "y"), ("y", "d")]
    assert components(links) == {"b": "a", "c": "a", "e": "d", "y": "d", "z": "d"}


def test_union_find_root_is_smallest_member():
    union = UnionFind()
    for a, b in [("m", "n"), ("x", "n"), ("c", "x")]:
        union.union(a, b)
    assert union.groups() == {"c": ["c", "m", "n", "x"]}


def test_forest_of_many_equal_hashes_is_linear():
    items = [slim(f"k{i:05d}", 42) for i in range(3000)]
    links = bucket_forest(items, 4, None)
    assert len(links) == 2999
    assert {root for _, root in links} == {"k00000"}


def test_big_bucket_through_the_index_gives_the_same_groups_as_pairwise():
    import numpy as np

    import openwit.dedup.groups as groups

    rng = np.random.default_rng(5)
    centres = rng.integers(0, 2**64 - 1, size=150, dtype=np.uint64, endpoint=True)
    codes = [int(c) ^ (1 << int(b)) for c in centres for b in rng.choice(64, 4, replace=False)]
    items = [slim(f"k{i:04d}", code) for i, code in enumerate(codes)]
    assert len(items) > groups.BRUTE_FORCE_UP_TO
    via_index = components(bucket_forest(items, 2, None))
    old = groups.BRUTE_FORCE_UP_TO
    groups.BRUTE_FORCE_UP_TO = 10_000
    try:
        pairwise = components(bucket_forest(items, 2, None))
    finally:
        groups.BRUTE_FORCE_UP_TO = old
    assert via_index == pairwise
    assert len(set(pairwise.values())) >= 140  # about one group per centre
