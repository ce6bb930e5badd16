"""Near-duplicate links inside one partition of band buckets (plain numpy, no Beam).

Two records are near duplicates when their pHashes are within ``radius`` bits and their
dHashes within ``dhash_radius`` bits (no dHash check when it is None). With ``radius + 1``
bands of the 64-bit pHash (:func:`openwit.dedup.groups.band_layout`), two pHashes within
``radius`` bits agree exactly on at least one band (pigeonhole), so each record is sent to
the bucket ``(band, band value)`` of every band and only records of a bucket are compared.
The stage sends the buckets to partitions by a hash of their key; :func:`near_links`
searches all the buckets of one partition, band by band, vectorised:

- one sort per band, by the pHash turned so that the band's bits come first: it lays out
  the buckets one after the other and puts equal hashes side by side;
- records with the same hashes are linked to the first of them and compared no more (a
  bucket of a million blank images costs linear time, not quadratic);
- buckets of up to :data:`BRUTE_FORCE_UP_TO` distinct hashes compare every pair: buckets
  of about the same size are the rows of one matrix, and the ``k``-th step compares
  every column with the one ``k`` places after it, so there are as many numpy steps as
  the largest bucket has rows, whatever the number of buckets;
- larger buckets (every bucket, past ~2M records: a radius-4 band is 12-13 bits) are cut
  into finer buckets by pieces of their other bits, all of them at once, and searched as
  small ones; only codes that still share a large finer bucket get a multi-index
  (:class:`openwit.dedup.hamming.HammingIndex`).

The links found are reduced to a forest -- each record of a local group linked to the
group's smallest id -- so what leaves a partition is at most one link per record.
"""

from __future__ import annotations

import numpy as np

from openwit.dedup.batches import mix
from openwit.dedup.groups import band_layout
from openwit.dedup.hamming import HammingIndex

#: Buckets up to this many distinct hashes are compared pair by pair.
BRUTE_FORCE_UP_TO = 256
#: Small buckets are compared as rows of matrices whose width is a multiple of this (or,
#: below it, a power of two).
MATRIX_GRAIN = 32
#: Large buckets are cut by pieces of their free bits, and finer buckets that are still
#: large by pieces of the bits left, this many levels deep; below that, a multi-index
#: each. Two levels keep the finer buckets small up to ~10B records (a radius-4 bucket
#: then holds ~1.2M pHashes, a first-level finer bucket ~1,200); a deeper cut would only
#: serve clusters of very similar pHashes, and each level copies their rows r+1 times.
PIECE_LEVELS = 2


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
    phash = np.asarray(phash, dtype=np.uint64)
    dhash = np.asarray(dhash, dtype=np.uint64)
    found_a, found_b = [], []
    by_band = np.argsort(band, kind="stable")
    bounds = np.searchsorted(band[by_band], np.arange(len(band_layout(radius)) + 1))
    for index, (shift, width) in enumerate(band_layout(radius)):
        rows = by_band[bounds[index] : bounds[index + 1]]
        if len(rows) < 2:
            continue
        a, b = _band_links(rows, phash, dhash, shift, width, radius, dhash_radius)
        found_a.append(ids[a])
        found_b.append(ids[b])
    if not found_a:
        return _empty(), _empty()
    return local_forest(np.concatenate(found_a), np.concatenate(found_b))


def _band_links(
    rows: np.ndarray,
    phash: np.ndarray,
    dhash: np.ndarray,
    shift: int,
    width: int,
    radius: int,
    dhash_radius: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Positions of linked copies among ``rows`` (the copies of one band)."""
    turn = 64 - shift - width
    codes = phash[rows]
    turned = codes
    if turn:
        turned = (codes << np.uint64(turn)) | (codes >> np.uint64(64 - turn))
    order = np.argsort(turned, kind="stable")
    same = turned[order][1:] == turned[order][:-1]
    if dhash_radius is not None and same.any():
        # equal pHashes (copies, mostly): ordered by dHash too, so equal pairs sit together
        runs = np.flatnonzero(np.r_[same, False] | np.r_[False, same])
        sub = order[runs]
        order[runs] = sub[np.lexsort((dhash[rows[sub]], turned[sub]))]
        same &= dhash[rows[order[1:]]] == dhash[rows[order[:-1]]]
    rows, turned = rows[order], turned[order]
    # equal hashes: each linked to the first of its run, which alone is compared further
    first = np.r_[True, ~same]
    run_first = np.flatnonzero(first)[np.cumsum(first) - 1]
    equal_a, equal_b = rows[~first], rows[run_first[~first]]
    reps = rows[first]
    values = turned[first] >> np.uint64(64 - width) if width < 64 else turned[first]
    # the turned codes: the bucket's bits on top, the bits left to compare below them
    # (distances do not change under a rotation)
    q, h = _close_in_buckets(values, turned[first], radius, 64 - width)
    a, b = reps[q], reps[h]
    if dhash_radius is not None and len(a):
        close = np.bitwise_count(dhash[a] ^ dhash[b]) <= dhash_radius
        a, b = a[close], b[close]
    return np.r_[equal_a, a], np.r_[equal_b, b]


def _close_in_buckets(
    values: np.ndarray,
    codes: np.ndarray,
    radius: int,
    free_bits: int | None = None,
    levels: int | None = None,
) -> tuple:
    """Positions ``(i, j)``, ``i < j``, of rows with the same bucket ``values`` (sorted)
    whose ``codes`` are within ``radius`` bits.

    ``free_bits``: the codes of a bucket agree on all but their lowest ``free_bits`` bits;
    then the large buckets are all searched together, split into finer buckets
    (:func:`_close_in_large_buckets`, ``levels`` deep: :data:`PIECE_LEVELS` unless given).
    None, too few bits to split, or no level left: each large bucket gets its own
    multi-index."""
    levels = PIECE_LEVELS if levels is None else levels
    n = len(codes)
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    counts = np.diff(np.r_[starts, n])
    found_q, found_h = [], []
    large = counts > BRUTE_FORCE_UP_TO
    if free_bits is not None and free_bits > radius and levels > 0 and large.any():
        firsts = starts[large]
        q, h = _close_in_large_buckets(firsts, counts[large], codes, radius, free_bits, levels)
        found_q.append(q)
        found_h.append(h)
    elif large.any():
        for b in np.flatnonzero(large).tolist():
            start, stop = starts[b], starts[b] + counts[b]
            q, h, _ = HammingIndex(codes[start:stop], radius).search(codes[start:stop])
            keep = q < h
            found_q.append(q[keep] + start)
            found_h.append(h[keep] + start)
    # Small buckets of about the same size as rows of one matrix, padded with values no
    # code is near (hits on them are dropped): step k compares columns j and j + k.
    small = (counts >= 2) & (counts <= BRUTE_FORCE_UP_TO)
    width = -(-counts // MATRIX_GRAIN) * MATRIX_GRAIN
    # buckets of a few rows (the finer buckets of large ones): a power of two wide, not
    # padded to the grain, or a bucket of 2 would cost (grain/2)**2 comparisons
    fewer = counts < MATRIX_GRAIN
    width[fewer] = 1 << np.ceil(np.log2(np.maximum(counts[fewer], 1))).astype(np.int64)
    for size in np.unique(width[small]).tolist():
        pick = np.flatnonzero(small & (width == size))
        first, count = starts[pick], counts[pick]
        slots = first[:, None] + np.arange(size)[None, :]
        real = np.arange(size)[None, :] < count[:, None]
        filler = mix(slots.ravel(), 0x5EED).reshape(slots.shape)
        matrix = np.where(real, codes[np.minimum(slots, n - 1)], filler)
        for step in range(1, int(count.max())):
            close = np.bitwise_count(matrix[:, :-step] ^ matrix[:, step:]) <= radius
            hits = np.flatnonzero(close)
            if len(hits):
                row, column = np.divmod(hits, size - step)
                ok = column + step < count[row]
                q = first[row[ok]] + column[ok]
                found_q.append(q)
                found_h.append(q + step)
    if not found_q:
        return _empty(), _empty()
    return np.concatenate(found_q), np.concatenate(found_h)


def _pieces(bits: int, count: int) -> list[tuple[int, int]]:
    """``(shift, width)`` of ``count`` contiguous pieces of the lowest ``bits`` bits, as
    even as can be (the widest first)."""
    widths = [bits // count + (1 if k < bits % count else 0) for k in range(count)]
    shifts = np.cumsum([0, *widths[::-1]])[:-1][::-1]
    return [(int(shift), width) for shift, width in zip(shifts, widths)]


def _without_piece(codes: np.ndarray, shift: int, width: int, free_bits: int) -> np.ndarray:
    """The lowest ``free_bits`` bits of ``codes`` without the piece ``(shift, width)``,
    packed into the lowest ``free_bits - width`` bits: for codes that agree on the piece
    and on every bit above ``free_bits``, distances do not change."""
    below = codes & np.uint64((1 << shift) - 1)
    above = (codes >> np.uint64(shift + width)) & np.uint64((1 << (free_bits - shift - width)) - 1)
    return below | (above << np.uint64(shift))


def _close_in_large_buckets(
    firsts: np.ndarray,
    counts: np.ndarray,
    codes: np.ndarray,
    radius: int,
    free_bits: int,
    levels: int,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_close_in_buckets` for the buckets of ``counts`` rows starting at ``firsts``,
    whose codes agree on all but their lowest ``free_bits`` bits.

    Two codes of a bucket within ``radius`` bits differ in at most ``radius`` of the free
    bits, so they agree on one of ``radius + 1`` pieces of them (pigeonhole again). Per
    piece, every large bucket is cut by the piece's value into finer buckets, and all of
    them go through the pairwise search at once: the work grows with the rows, not with
    the number of large buckets. (One multi-index per bucket cost ~5 ms of numpy calls
    each: a 10M-record build has 40,000 buckets of ~1,200 pHashes, 205 s of its dedup.)
    A pair found through an earlier piece is not reported again. Finer buckets that are
    still large (past ~1B records there are many) are cut the same way by pieces of the
    bits left, ``levels - 1`` more times; then a multi-index each."""
    rows = np.repeat(firsts - (np.cumsum(counts) - counts), counts) + np.arange(counts.sum())
    bucket = np.repeat(np.arange(len(counts), dtype=np.uint64), counts)
    mine = codes[rows]
    found_q, found_h = [], []
    pieces = _pieces(free_bits, radius + 1)
    for index, (shift, width) in enumerate(pieces):
        mask = np.uint64((1 << width) - 1)
        finer = (bucket << np.uint64(width)) | ((mine >> np.uint64(shift)) & mask)
        order = np.argsort(finer, kind="stable")
        rest = _without_piece(mine[order], shift, width, free_bits)
        q, h = _close_in_buckets(finer[order], rest, radius, free_bits - width, levels - 1)
        a, b = order[q], order[h]
        xor = mine[a] ^ mine[b]
        first_here = np.ones(len(a), dtype=bool)
        for earlier_shift, earlier_width in pieces[:index]:
            earlier = (xor >> np.uint64(earlier_shift)) & np.uint64((1 << earlier_width) - 1)
            first_here &= earlier != 0
        a, b = rows[a[first_here]], rows[b[first_here]]
        found_q.append(np.minimum(a, b))
        found_h.append(np.maximum(a, b))
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
    ones = np.ones(len(a), dtype=np.int8)
    graph = coo_matrix((ones, (index[: len(a)], index[len(a) :])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    # nodes are sorted, so the first node of each label is its smallest
    _, first = np.unique(label, return_index=True)
    roots = nodes[first[label]]
    members = nodes != roots
    return nodes[members], roots[members]


def _empty() -> np.ndarray:
    return np.empty(0, dtype=np.int64)
