"""Duplicate groups and the rule that keeps one record per group (plain Python, no Beam).

The dedup stage (:mod:`openwit.dedup.stage`) wraps these functions; they are unit-tested on
their own. A record is identified by its *rank key*, :func:`rank_key`: the uid, then the
input file and offset, so two records with the same uid (the same pair read twice) are still
told apart. In every group the record with the smallest rank key is kept -- the same answer
on every runner, in every order.

Near duplicates are found bucket by bucket: with ``radius + 1`` bands of the 64-bit pHash,
two hashes within ``radius`` bits agree exactly on at least one band (pigeonhole), so the
stage groups records by ``(band, band value)`` and searches each bucket in memory. A bucket
reports a spanning forest of its duplicate pairs (each member linked to the smallest member
of its local group), which keeps the edges linear in the bucket size; the forests of all
buckets are merged by :func:`components`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from openwit.dedup.hamming import BITS, HammingIndex


def rank_key(record: dict) -> str:
    """The key that orders records inside a duplicate group (smallest is kept)."""
    offset = record.get("source_offset")
    offset_text = f"{offset:020d}" if isinstance(offset, int) and offset >= 0 else ""
    return f"{record['uid']}\x1f{record.get('source') or ''}\x1f{offset_text}"


def uid_of(key: str) -> str:
    return key.split("\x1f", 1)[0]


@dataclass(frozen=True)
class Slim:
    """What dedup needs of a record: its rank key and hashes (no image bytes)."""

    key: str
    sha256: str | None
    phash: int | None
    dhash: int | None


def exact_duplicates(keys: Iterable[str]) -> tuple[str, list[str]]:
    """``(kept, rejected)`` among records with the same sha256."""
    ordered = sorted(keys)
    return ordered[0], ordered[1:]


def band_layout(radius: int) -> list[tuple[int, int]]:
    """``(shift, width)`` of each of the ``radius + 1`` bands covering the 64 bits."""
    n_bands = radius + 1
    if n_bands > BITS:
        raise ValueError(f"radius {radius} leaves no band of the {BITS}-bit hash")
    base, extra = divmod(BITS, n_bands)
    widths = [base + (1 if i < extra else 0) for i in range(n_bands)]
    layout, top = [], BITS
    for width in widths:
        top -= width
        layout.append((top, width))
    return layout


def band_keys(phash: int, radius: int) -> list[tuple[int, int]]:
    """``(band index, band value)`` of a hash: the buckets it goes into."""
    return [
        (index, (int(phash) >> shift) & ((1 << width) - 1))
        for index, (shift, width) in enumerate(band_layout(radius))
    ]


class UnionFind:
    """Disjoint sets over string keys; the root of a set is its smallest key."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def root(self, key: str) -> str:
        # Iterative, with path compression: chains can be long in big groups.
        self.parent.setdefault(key, key)
        path = []
        while self.parent[key] != key:
            path.append(key)
            key = self.parent[key]
        for node in path:
            self.parent[node] = key
        return key

    def union(self, a: str, b: str) -> None:
        root_a, root_b = self.root(a), self.root(b)
        if root_a != root_b:
            low, high = sorted((root_a, root_b))
            self.parent[high] = low

    def groups(self) -> dict[str, list[str]]:
        """Root -> members (root first), for every set with more than one member."""
        members: dict[str, list[str]] = {}
        for key in list(self.parent):
            members.setdefault(self.root(key), []).append(key)
        return {root: sorted(keys) for root, keys in members.items() if len(keys) > 1}


def bucket_forest(
    items: Sequence[Slim], radius: int, dhash_radius: int | None
) -> list[tuple[str, str]]:
    """``(member, root)`` links that connect every near-duplicate group inside one bucket.

    Items with equal pHash are linked directly (a blank or repeated picture can fill a
    bucket with thousands of equal hashes; comparing them pairwise would be quadratic).
    """
    if len(items) < 2:
        return []
    by_hash: dict[int, list[Slim]] = {}
    for item in items:
        by_hash.setdefault(int(item.phash), []).append(item)  # type: ignore[arg-type]
    union = UnionFind()
    representatives: list[Slim] = []
    for same in by_hash.values():
        same.sort(key=lambda s: s.key)
        representatives.append(same[0])
        for other in same[1:]:
            if _dhash_close(same[0], other, dhash_radius):
                union.union(same[0].key, other.key)
            else:
                representatives.append(other)
    if len(representatives) > 1:
        codes = np.asarray([int(s.phash) for s in representatives], dtype=np.uint64)  # type: ignore[arg-type]
        queries, hits = _pairs_within(codes, radius)
        for q, h in zip(queries.tolist(), hits.tolist()):
            if q < h and _dhash_close(representatives[q], representatives[h], dhash_radius):
                union.union(representatives[q].key, representatives[h].key)
    return [(member, root) for root, keys in union.groups().items() for member in keys[1:]]


#: Buckets up to this size are compared pair by pair (one numpy operation); an index only
#: pays off above it. At 1M records most buckets hold a few hashes.
BRUTE_FORCE_UP_TO = 256


def _pairs_within(codes: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(i, j)`` of all code pairs within ``radius`` bits (both orders)."""
    if len(codes) <= BRUTE_FORCE_UP_TO:
        close = np.bitwise_count(codes[:, None] ^ codes[None, :]) <= radius
        return np.nonzero(close)
    queries, hits, _ = HammingIndex(codes, radius).search(codes)
    return queries, hits


def _dhash_close(a: Slim, b: Slim, dhash_radius: int | None) -> bool:
    if dhash_radius is None:
        return True
    if a.dhash is None or b.dhash is None:
        return False
    return (int(a.dhash) ^ int(b.dhash)).bit_count() <= dhash_radius


def components(links: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Member -> kept root (smallest key of its connected component), roots excluded."""
    union = UnionFind()
    for a, b in links:
        union.union(a, b)
    return {member: root for root, keys in union.groups().items() for member in keys[1:]}
