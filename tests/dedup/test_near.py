"""Near-duplicate links of band buckets against comparing every pair."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import openwit.dedup.near as near
from openwit.dedup.batches import partition_of
from openwit.dedup.components import star_components
from openwit.dedup.slim import band_copies


def brute_force(phash, dhash, radius, dhash_radius) -> dict[int, int]:
    """Record -> smallest record of its group, from every pair (roots left out)."""
    n = len(phash)
    parent = list(range(n))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            close = (int(phash[i]) ^ int(phash[j])).bit_count() <= radius
            if dhash_radius is not None:
                close &= (int(dhash[i]) ^ int(dhash[j])).bit_count() <= dhash_radius
            if close:
                a, b = root(i), root(j)
                parent[max(a, b)] = min(a, b)
    return {i: root(i) for i in range(n) if root(i) != i}


def searched(phash, dhash, radius, dhash_radius, partitions) -> dict[int, int]:
    """The stage's way: band copies spread over partitions, links per partition, then the
    components of all links."""
    copies = band_copies(np.arange(len(phash)), phash, dhash, radius)
    where = partition_of(copies["key"], partitions)
    found_a, found_b = [], []
    for p in range(partitions):
        mine = where == p
        a, b = near.near_links(
            copies["id"][mine],
            copies["phash"][mine],
            copies["dhash"][mine],
            copies["band"][mine],
            radius,
            dhash_radius,
        )
        found_a.append(a)
        found_b.append(b)
    roots, _ = star_components(np.concatenate(found_a), np.concatenate(found_b))
    return {node: r for node, r in roots.items() if node != r}


@st.composite
def hashes(draw):
    """Clusters of pHashes a few bits apart, repeated hashes, and dHashes that sometimes
    agree and sometimes not."""
    centres = draw(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=6))
    count = draw(st.integers(2, 70))
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    phash = np.asarray(centres, np.uint64)[rng.integers(0, len(centres), count)]
    for i in range(count):
        for bit in rng.choice(64, rng.integers(0, 6), replace=False):
            phash[i] ^= np.uint64(1) << np.uint64(int(bit))
    dhash = rng.integers(0, 2**6, count).astype(np.uint64) << np.uint64(rng.integers(0, 58))
    return phash, dhash


@settings(max_examples=120, deadline=None)
@given(
    hashes(),
    st.integers(0, 6),
    st.sampled_from([None, 0, 2, 14]),
    st.integers(1, 5),
    st.sampled_from([(256, 32), (3, 2)]),
)
def test_links_give_the_groups_of_comparing_every_pair(
    data, radius, dhash_radius, partitions, limits
):
    phash, dhash = data
    old = near.BRUTE_FORCE_UP_TO, near.MATRIX_GRAIN
    # small limits: buckets go through the multi-index and through many matrix widths
    near.BRUTE_FORCE_UP_TO, near.MATRIX_GRAIN = limits
    try:
        got = searched(phash, dhash, radius, dhash_radius, partitions)
    finally:
        near.BRUTE_FORCE_UP_TO, near.MATRIX_GRAIN = old
    assert got == brute_force(phash, dhash, radius, dhash_radius)


def test_equal_hashes_with_different_dhash_still_link_through_a_close_one():
    # b and c share a's pHash but not its dHash; c is near d, so b-c-d is a group apart
    phash = np.asarray([5, 5, 5, 5 ^ 0b11], np.uint64)
    dhash = np.asarray([0, 0xFFFF, 0xFFFE, 0xFFFC], np.uint64)
    assert searched(phash, dhash, 4, 2, 1) == brute_force(phash, dhash, 4, 2) == {2: 1, 3: 1}


@pytest.mark.parametrize("copies", [3000])
def test_many_equal_hashes_cost_one_link_each(copies):
    phash = np.full(copies, 42, np.uint64)
    member, root = near.near_links(
        np.arange(copies), phash, np.zeros(copies, np.uint64), np.zeros(copies, np.uint8), 4, 14
    )
    assert len(member) == copies - 1 and set(root.tolist()) == {0}


def test_links_join_near_and_equal_hashes_to_the_smallest_id():
    base = 0x0123_4567_89AB_CDEF
    phash = np.asarray([base, base ^ 0b111, base, base ^ (0xFFFF << 20)], np.uint64)
    ids = np.asarray([3, 1, 0, 2])  # d, b, a, c: b 3 bits away, a equal, c unrelated
    copies = band_copies(ids, phash, np.zeros(4, np.uint64), 4)
    member, root = near.near_links(
        copies["id"], copies["phash"], copies["dhash"], copies["band"], 4, None
    )
    assert sorted(zip(member.tolist(), root.tolist())) == [(1, 0), (3, 0)]


def test_links_require_dhash_agreement_when_asked():
    copies = band_copies(np.asarray([0, 1]), np.asarray([5, 5], np.uint64),
                         np.asarray([0, (1 << 20) - 1], np.uint64), 4)  # fmt: skip
    args = copies["id"], copies["phash"], copies["dhash"], copies["band"], 4
    assert len(near.near_links(*args, 14)[0]) == 0
    assert [x.tolist() for x in near.near_links(*args, None)] == [[1], [0]]


def test_a_big_bucket_through_the_index_gives_the_same_groups_as_pairwise():
    rng = np.random.default_rng(5)
    low = np.uint64(2**42 - 1)  # band 0 of radius 2 is the top 22 bits: one bucket for all
    centres = rng.integers(0, 2**42, size=150, dtype=np.uint64) | (np.uint64(7) << np.uint64(50))
    codes = np.asarray(
        [int(c) ^ (1 << int(b)) for c in centres for b in rng.choice(42, 4, replace=False)],
        np.uint64,
    )
    assert len(np.unique(codes >> np.uint64(42))) == 1 and (codes & ~low).any()
    n = len(codes)
    assert n > near.BRUTE_FORCE_UP_TO
    args = np.arange(n), codes, np.zeros(n, np.uint64), np.zeros(n, np.uint8), 2, None
    via_index = star_components(*near.near_links(*args))[0]
    old = near.BRUTE_FORCE_UP_TO
    near.BRUTE_FORCE_UP_TO = 10_000
    try:
        pairwise = star_components(*near.near_links(*args))[0]
    finally:
        near.BRUTE_FORCE_UP_TO = old
    assert via_index == pairwise
    assert len(set(pairwise.values())) >= 140  # about one group per centre


def with_near_copies(codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A tenth of the codes replaced by near copies (1-4 of the low 51 bits off) of others."""
    n = len(codes)
    for i in range(0, n, 10):
        source = codes[rng.integers(0, n)]
        flips = rng.choice(51, rng.integers(1, 5), replace=False)
        codes[i] = source ^ np.uint64(sum(1 << int(b) for b in flips))
    return codes


def counted_indexes(monkeypatch) -> list[int]:
    """The sizes of the multi-indexes the near search builds from now on."""
    built: list[int] = []

    class CountedIndex(near.HammingIndex):
        def __init__(self, codes, *args, **kwargs):
            built.append(len(codes))
            super().__init__(codes, *args, **kwargs)

    monkeypatch.setattr(near, "HammingIndex", CountedIndex)
    return built


def pairwise_groups(codes: np.ndarray, radius: int = 4) -> dict:
    a, b = [], []
    for i in range(len(codes)):
        close = np.flatnonzero(np.bitwise_count(codes[i + 1 :] ^ codes[i]) <= radius) + i + 1
        a.append(np.full(len(close), i))
        b.append(close)
    return star_components(np.concatenate(a), np.concatenate(b))[0]


def searched_in_bands(codes: np.ndarray, only_band: int | None = None) -> dict:
    n = len(codes)
    copies = band_copies(np.arange(n), codes, np.zeros(n, np.uint64), 4)
    pick = slice(None) if only_band is None else copies["band"] == only_band
    member, root = near.near_links(
        copies["id"][pick], copies["phash"][pick], copies["dhash"][pick],
        copies["band"][pick], 4, None,
    )  # fmt: skip
    return star_components(member, root)[0]


def test_large_buckets_are_searched_together_with_the_groups_of_every_pair(monkeypatch):
    # band 0 (the top 13 bits at radius 4) takes 12 values: 12 buckets of ~500 pHashes,
    # each over BRUTE_FORCE_UP_TO; a tenth of the codes are near copies (1-4 bits off)
    rng = np.random.default_rng(11)
    n = 6000
    top = rng.integers(0, 12, n).astype(np.uint64) << np.uint64(51)
    codes = with_near_copies(top | rng.integers(0, 2**51, n, dtype=np.uint64), rng)
    assert np.bincount((codes >> np.uint64(51)).astype(np.int64)).min() > near.BRUTE_FORCE_UP_TO
    built = counted_indexes(monkeypatch)
    groups = searched_in_bands(codes)
    # one multi-index per large bucket cost ~5 ms each: 205 s of a 10M-record dedup
    assert built == []
    assert groups == pairwise_groups(codes)
    assert len(set(groups.values())) >= 400


def test_finer_buckets_that_are_still_large_are_cut_again(monkeypatch):
    """Past ~2B records a first-level finer bucket holds over BRUTE_FORCE_UP_TO pHashes
    (~1,200 at 10B): they are cut by pieces of the bits left, not given a multi-index
    each. Here 20,000 pHashes in one band-0 bucket and a limit of 8 put ~20 in a finer
    bucket of the first level (a 10-bit piece of the 51 free bits)."""
    rng = np.random.default_rng(12)
    n = 20_000
    top = np.uint64(5) << np.uint64(51)
    codes = with_near_copies(top | rng.integers(0, 2**51, n, dtype=np.uint64), rng)
    built = counted_indexes(monkeypatch)
    monkeypatch.setattr(near, "BRUTE_FORCE_UP_TO", 8)
    groups = searched_in_bands(codes, only_band=0)  # one bucket: every pair is in it
    assert built == []  # one level of pieces builds a multi-index for each finer bucket
    assert groups == pairwise_groups(codes)
    assert len(set(groups.values())) >= 1500
