"""Multi-index hashing finds exactly the pairs brute force finds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openwit.dedup.hamming import HammingIndex, brute_force_search, choose_bands, flip_masks


def pairs(result):
    q, i, d = result
    return sorted(zip(q.tolist(), i.tolist(), d.tolist()))


def perturbed(codes: np.ndarray, rng: np.random.Generator, max_flips: int) -> np.ndarray:
    out = codes.copy()
    for row in range(len(out)):
        for bit in rng.choice(64, rng.integers(0, max_flips + 1), replace=False):
            out[row] ^= np.uint64(1) << np.uint64(int(bit))
    return out


@pytest.mark.parametrize("radius", [0, 1, 4, 8, 10])
def test_same_pairs_as_brute_force_on_random_codes(radius):
    rng = np.random.default_rng(radius)
    codes = rng.integers(0, 2**64 - 1, size=5000, dtype=np.uint64, endpoint=True)
    queries = perturbed(codes[rng.integers(0, len(codes), 300)], rng, radius + 2)
    index = HammingIndex(codes, radius)
    assert pairs(index.search(queries)) == pairs(brute_force_search(codes, queries, radius))


def test_clustered_codes_and_duplicates_are_all_found():
    rng = np.random.default_rng(7)
    centres = rng.integers(0, 2**64 - 1, size=20, dtype=np.uint64, endpoint=True)
    codes = perturbed(np.repeat(centres, 50), rng, 3)
    codes[:10] = codes[0]  # exact repeats
    index = HammingIndex(codes, 6)
    assert pairs(index.search(codes)) == pairs(brute_force_search(codes, codes, 6))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=60),
    st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=20),
    st.integers(0, 12),
    st.sampled_from([(8, 4), (16, 4), (21, 3), (12, 5), (6, 10)]),
)
def test_any_band_layout_is_exact(codes, queries, radius, layout):
    codes_array = np.asarray(codes, dtype=np.uint64)
    queries_array = np.asarray(queries, dtype=np.uint64)
    index = HammingIndex(codes_array, radius, *layout)
    assert pairs(index.search(queries_array)) == pairs(
        brute_force_search(codes_array, queries_array, radius)
    )


def test_queries_split_into_chunks_keep_their_positions(monkeypatch):
    import openwit.dedup.hamming as hamming

    monkeypatch.setattr(hamming, "PROBES_PER_CHUNK", 64)
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 2**64 - 1, size=500, dtype=np.uint64, endpoint=True)
    index = HammingIndex(codes, 4)
    assert pairs(index.search(codes)) == pairs(brute_force_search(codes, codes, 4))


def test_empty_index_and_empty_queries():
    empty = np.empty(0, dtype=np.uint64)
    assert pairs(HammingIndex(empty, 4).search(np.asarray([1], dtype=np.uint64))) == []
    assert pairs(HammingIndex(np.asarray([1], dtype=np.uint64), 4).search(empty)) == []


def test_flip_masks_count_and_weights():
    masks = flip_masks(10, 2)
    assert len(masks) == 1 + 10 + 45
    assert max(int(m).bit_count() for m in masks) == 2


def test_band_choice_grows_with_the_index():
    assert choose_bands(1_000, 8)[0] < choose_bands(10_000_000, 8)[0]


def test_bad_layout_is_refused():
    with pytest.raises(ValueError):
        HammingIndex(np.zeros(3, dtype=np.uint64), 4, band_bits=24, n_bands=3)
