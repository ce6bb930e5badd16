"""Duplicate groups without Beam: keep rule, bands, components."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from openwit.dedup.groups import (
    UnionFind,
    band_keys,
    band_layout,
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


def test_components_merge_chains_and_keep_the_smallest():
    links = [("c", "b"), ("b", "a"), ("e", "d"), ("z", "y"), ("y", "d")]
    assert components(links) == {"b": "a", "c": "a", "e": "d", "y": "d", "z": "d"}


def test_union_find_root_is_smallest_member():
    union = UnionFind()
    for a, b in [("m", "n"), ("x", "n"), ("c", "x")]:
        union.union(a, b)
    assert union.groups() == {"c": ["c", "m", "n", "x"]}
