"""Near-duplicate search: queries/s at 1M random 64-bit hashes, against numpy brute force.

The index is :class:`openwit.dedup.hamming.HammingIndex` (multi-index hashing in numpy);
the baseline compares every query with all 1M codes (``np.bitwise_count`` of the XOR) in
the same run. Queries are database codes with up to ``radius`` random bits flipped, so each
has at least one true neighbour; recall is measured against the brute-force answer. faiss'
binary indexes are measured on the same queries for reference.
"""

from __future__ import annotations

import time

import numpy as np
from common import emit, install_guard

install_guard()

N_CODES = 1_000_000
N_QUERIES = 4_000
N_BRUTE = 200  # brute force is slow: timed on a subset, recall compared on that subset
RADII = (4, 8, 10)  # build near-dup default, eval detector default, a looser setting


def queries_near(codes: np.ndarray, rng: np.random.Generator, count: int, radius: int):
    picked = codes[rng.integers(0, len(codes), count)].copy()
    for row in range(count):
        for bit in rng.choice(64, rng.integers(0, radius + 1), replace=False):
            picked[row] ^= np.uint64(1) << np.uint64(int(bit))
    return picked


def main() -> None:
    import faiss

    from openwit.dedup.hamming import HammingIndex, brute_force_search

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 2**64 - 1, size=N_CODES, dtype=np.uint64, endpoint=True)
    as_bytes = codes.view(np.uint8).reshape(-1, 8)
    flat = faiss.IndexBinaryFlat(64)
    flat.add(as_bytes)
    for radius in RADII:
        queries = queries_near(codes, rng, N_QUERIES, radius)
        started = time.perf_counter()
        index = HammingIndex(codes, radius)
        build_s = time.perf_counter() - started
        started = time.perf_counter()
        found = index.search(queries)
        index_qps = N_QUERIES / (time.perf_counter() - started)

        started = time.perf_counter()
        truth = brute_force_search(codes, queries[:N_BRUTE], radius)
        brute_qps = N_BRUTE / (time.perf_counter() - started)
        true_pairs = set(zip(truth[0].tolist(), truth[1].tolist()))
        got = {(q, i) for q, i in zip(found[0].tolist(), found[1].tolist()) if q < N_BRUTE}
        recall = len(got & true_pairs) / len(true_pairs)
        emit(
            f"hamming_index_r{radius}_qps",
            index_qps,
            "queries/s",
            "numpy brute force over 1M codes",
            brute_qps,
            recall=round(recall, 4),
            false_pairs=len(got - true_pairs),
            bands=f"{index.n_bands}x{index.band_bits} bits, {index.flips} flips",
            build_s=round(build_s, 2),
            codes=N_CODES,
        )

        q_bytes = queries.view(np.uint8).reshape(-1, 8)
        started = time.perf_counter()
        flat.range_search(q_bytes[:1000], radius + 1)  # faiss: distance < radius
        flat_qps = 1000 / (time.perf_counter() - started)
        emit(
            f"faiss_flat_r{radius}_qps",
            flat_qps,
            "queries/s",
            "numpy brute force over 1M codes",
            brute_qps,
        )
        multi = faiss.IndexBinaryMultiHash(64, 3, 21)
        multi.nflip = radius // 3
        multi.add(as_bytes)
        count = 1000 if radius < 10 else 200
        started = time.perf_counter()
        multi.range_search(q_bytes[:count], radius + 1)
        multi_qps = count / (time.perf_counter() - started)
        emit(
            f"faiss_multihash_r{radius}_qps",
            multi_qps,
            "queries/s",
            "numpy brute force over 1M codes",
            brute_qps,
        )
        del multi


if __name__ == "__main__":
    main()
