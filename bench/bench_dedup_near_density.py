"""The near-duplicate search of one partition as the build grows: band copies/s at the bucket
densities of 10M, 100M and 1B records, against one multi-index per large bucket; and at
10B, against one level of pieces.

A partition of the dedup stage's near search holds whole band buckets (a radius-4 band is
13 bits: 8,192 buckets a band), so the number of pHashes in a bucket grows with the build:
about 1,220 at 10M records, 12,200 at 100M and 122,000 at 1B, whatever the number of
partitions. Each point searches 250,000 band copies of one partition (a fifth of the most
a partition gets, 250,000 records x 5 bands, so that the baseline takes ~1.5 minutes, not
7), random 64-bit pHashes whose band value takes as many values as the density asks, with
planted near copies (1-4 bits off). The baseline is the
same search with every large bucket given its own multi-index (how ``dedup/near.py``
searched them until 2026-12-07), on the same copies in the same run; both find the same
groups (checked).

At 10B records a bucket holds ~1.22M pHashes, about what one partition gets (P is ~40,000
there, for 40,960 buckets), so that point searches one whole bucket of 1.22M copies. Its
finer buckets after one level of pieces hold ~1,200 pHashes each; the baseline is the
search with that one level (a multi-index for each large finer bucket, as until
2026-12-07 afternoon), the figure the search with ``PIECE_LEVELS`` levels.
"""

from __future__ import annotations

import time

import numpy as np
from common import emit, install_guard

install_guard()

COPIES = 250_000
RADIUS = 4
#: Records in the build -> pHashes in one 13-bit band bucket.
DENSITIES = {"10M": 1_220, "100M": 12_200, "1B": 122_000}
#: At 10B records: one bucket, the whole of a partition.
BUCKET_10B = 1_220_000


def partition(per_bucket: int, rng: np.random.Generator, copies: int = COPIES) -> np.ndarray:
    """Band-0 copies of one partition: ``copies`` pHashes in buckets of ``per_bucket``."""
    buckets = max(1, copies // per_bucket)
    top = rng.integers(0, buckets, copies).astype(np.uint64) << np.uint64(51)
    codes = top | rng.integers(0, 2**51, copies, dtype=np.uint64)
    for row in range(0, copies, 20):  # 5% near copies of another pHash of the partition
        flips = rng.choice(51, rng.integers(1, RADIUS + 1), replace=False)
        codes[row] = codes[rng.integers(0, copies)] ^ np.uint64(sum(1 << int(b) for b in flips))
    return codes


def search(codes: np.ndarray) -> tuple[float, dict]:
    from openwit.dedup import near
    from openwit.dedup.components import star_components

    zeros = np.zeros(len(codes), np.uint64)
    started = time.perf_counter()
    member, root = near.near_links(
        np.arange(len(codes)), codes, zeros, zeros.astype(np.uint8), RADIUS, None
    )
    seconds = time.perf_counter() - started
    return seconds, star_components(member, root)[0]


def main() -> None:
    from openwit.dedup import near

    rng = np.random.default_rng(0)
    search(partition(1_220, rng)[:10_000])  # imports and first calls out of the timings
    together = near._close_in_buckets

    def one_index_each(values, codes, radius, free_bits=None):
        return together(values, codes, radius)

    for label, per_bucket in DENSITIES.items():
        codes = partition(per_bucket, rng)
        seconds, groups = search(codes)
        near._close_in_buckets = one_index_each
        try:
            base_seconds, base_groups = search(codes)
        finally:
            near._close_in_buckets = together
        if groups != base_groups:
            raise AssertionError(f"{label}: the two searches found different groups")
        emit(
            f"dedup_near_search_copies_per_s_{label}_density",
            COPIES / seconds,
            "band copies/s",
            "one multi-index per large bucket, same copies",
            COPIES / base_seconds,
            hashes_per_bucket=per_bucket,
            copies=COPIES,
            seconds=round(seconds, 3),
            baseline_seconds=round(base_seconds, 3),
            groups=len(set(groups.values())),
        )
    codes = partition(BUCKET_10B, rng, BUCKET_10B)
    seconds, groups = search(codes)
    levels, near.PIECE_LEVELS = near.PIECE_LEVELS, 1
    try:
        base_seconds, base_groups = search(codes)
    finally:
        near.PIECE_LEVELS = levels
    if groups != base_groups:
        raise AssertionError("10B: the two searches found different groups")
    emit(
        "dedup_near_search_copies_per_s_10B_density",
        BUCKET_10B / seconds,
        "band copies/s",
        "one level of pieces (a multi-index for each large finer bucket), same copies",
        BUCKET_10B / base_seconds,
        hashes_per_bucket=BUCKET_10B,
        copies=BUCKET_10B,
        piece_levels=levels,
        seconds=round(seconds, 3),
        baseline_seconds=round(base_seconds, 3),
        groups=len(set(groups.values())),
    )


if __name__ == "__main__":
    main()
