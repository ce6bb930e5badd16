"""Near-duplicate links inside one partition of band buckets (plain numpy, no Beam).

Two records are near duplicates when their pHashes are within ``radius`` bits and their
dHashes within ``dhash_radius`` bits (no dHash check when it is None). With ``radius + 1``
bands of the 64-bit pHash (:func:`openwit.dedup.groups.band_layout`), two pHashes within
``radius`` bits agree exactly on at least one band (pigeonhole), so each record is sent to
the bucket ``(band, band value)`` of every band and only records of a bucket are compared.
The stage sends the buckets to partitions by a hash of their key; :func:`near_links`
searches all the buckets of one partition, vectorised:

- records with the same hashes are linked to the first of them and compared no more (a
  bucket of a million blank images costs linear time, not quadratic);
- buckets of up to :data:`BRUTE_FORCE_UP_TO` distinct hashes compare every pair, all
  buckets at once: the ``k``-th round compares each row with the row ``k`` places after
  it in the same bucket, so there are as many numpy rounds as the largest bucket has rows;
- larger buckets use the multi-index (:class:`openwit.dedup.hamming.HammingIndex`).

The links found are reduced to a forest -- each record of a local group linked to the
group's smallest id -- so what leaves a partition is at most one link per record.
"""

from __future__ import annotations

import numpy as np

from openwit.dedup.groups import band_layout
from openwit.dedup.hamming import HammingIndex

#: Buckets up to this many distinct hashes are compared pair by pair.
BRUTE_FORCE_UP_TO = 256


def band_values(phash: np.ndarray, band: np.ndarray, radius: int) -> np.ndarray:
    """The value of band ``band[i]`` of ``phash[i]``."""
    layout = band_layout(radius)
    shifts = np.asarray([s for s, _ in layout], dtype=np.uint64)[band]
    masks = np.asarray([(1 << w) - 1 for _, w in layout], dtype=np.uint64)[band]
    return (phash >> shifts) & masks


def near_links(
    ids: np.ndarray,
    phash: np.ndarray,
    dhash: np.ndarray,
    band: np.ndarray,
    radius: int,
    dhash_radius: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(member, root)``: a forest connecting the near-duplicate groups among these copies
    (copy ``i`` is record ``ids[i]`` in the bucket of its band ``band[i]``)."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) < 2:
        return _empty(), _empty()
    values = band_values(phash, band, radius)
    same_a, same_b, reps = _identical(ids, phash, dhash, band, dhash_radius)
    order = reps[np.lexsort((values[reps], band[reps]))]
    bucket = np.r_[True, (band[order][1:] != band[order][:-1])]
    bucket[1:] |= values[order][1:] != values[order][:-1]
    q, h = _close_in_buckets(np.cumsum(bucket), phash[order], radius)
    a, b = order[q], order[h]
    if dhash_radius is not None and len(a):
        close = np.bitwise_count(dhash[a] ^ dhash[b]) <= dhash_radius
        a, b = a[close], b[close]
    return local_forest(np.r_[same_a, ids[a]], np.r_[same_b, ids[b]])


def _identical(
    ids: np.ndarray, phash: np.ndarray, dhash: np.ndarray, band: np.ndarray, dhash_radius
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Links of copies with the same hashes (in the same band) to the first of them, and
    the positions of the first of each."""
    if dhash_radius is None:
        order = np.lexsort((ids, phash, band))
        differs = (phash[order][1:] != phash[order][:-1]) | (band[order][1:] != band[order][:-1])
    else:
        order = np.lexsort((ids, dhash, phash, band))
        differs = (phash[order][1:] != phash[order][:-1]) | (dhash[order][1:] != dhash[order][:-1])
        differs |= band[order][1:] != band[order][:-1]
    first = np.r_[True, differs]
    group = np.cumsum(first) - 1
    rep_of = order[first][group]
    others = ~first
    return ids[order[others]], ids[rep_of[others]], order[first]


def _close_in_buckets(
    bucket: np.ndarray, codes: np.ndarray, radius: int
) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(i, j)``, ``i < j``, of rows of the same bucket within ``radius`` bits
    (``bucket``: non-decreasing bucket numbers of the rows)."""
    n = len(codes)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    counts = np.diff(np.r_[starts, n])
    ends = np.repeat(starts + counts, counts)
    found_q, found_h = [], []
    big = np.flatnonzero(counts > BRUTE_FORCE_UP_TO)
    for b in big:
        start, count = starts[b], counts[b]
        q, h, _ = HammingIndex(codes[start : start + count], radius).search(
            codes[start : start + count]
        )
        keep = q < h
        found_q.append(q[keep] + start)
        found_h.append(h[keep] + start)
    small_rows = np.repeat(counts <= BRUTE_FORCE_UP_TO, counts)
    active = np.flatnonzero(small_rows & (np.arange(n) + 1 < ends))
    k = 1
    while len(active):
        other = active + k
        close = np.bitwise_count(codes[active] ^ codes[other]) <= radius
        found_q.append(active[close])
        found_h.append(other[close])
        k += 1
        active = active[active + k < ends[active]]
    if not found_q:
        return _empty(), _empty()
    return np.concatenate(found_q), np.concatenate(found_h)


def local_forest(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(member, root)`` links with the components of the links ``a``-``b``: each member
    linked to the smallest id of its component (roots not listed)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if len(a) == 0:
        return _empty(), _empty()
    nodes, index = np.unique(np.r_[a, b], return_inverse=True)
    n = len(nodes)
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (index[: len(a)], index[len(a) :])), (n, n))
    _, label = connected_components(graph, directed=False)
    # nodes are sorted, so the first node of each label is its smallest
    _, first = np.unique(label, return_index=True)
    roots = nodes[first[label]]
    members = nodes != roots
    return nodes[members], roots[members]


def _empty() -> np.ndarray:
    return np.empty(0, dtype=np.int64)
