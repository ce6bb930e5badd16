"""Duplicate groups: the rule that keeps one record per group, and the bands (no Beam).

A record is identified by its *rank key*, :func:`rank_key`: the uid, then the input file and
offset, so two records with the same uid (the same pair read twice) are still told apart.
In every group the record with the smallest rank key is kept -- the same answer on every
runner, in every order.

Near duplicates are found bucket by bucket: with ``radius + 1`` bands of the 64-bit pHash,
two hashes within ``radius`` bits agree exactly on at least one band (pigeonhole), so the
stage groups records by ``(band, band value)`` and searches each bucket
(:mod:`openwit.dedup.near`). :func:`components` is the plain union-find over string keys:
the reference the stage's distributed components are tested against.
"""

from __future__ import annotations

from collections.abc import Iterable

from openwit.dedup.hamming import BITS


def rank_key(record: dict) -> str:
    """The key that orders records inside a duplicate group (smallest is kept)."""
    offset = record.get("source_offset")
    offset_text = f"{offset:020d}" if isinstance(offset, int) and offset >= 0 else ""
    return f"{record['uid']}\x1f{record.get('source') or ''}\x1f{offset_text}"


def uid_of(key: str) -> str:
    return key.split("\x1f", 1)[0]


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


def components(links: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Member -> kept root (smallest key of its connected component), roots excluded."""
    union = UnionFind()
    for a, b in links:
        union.union(a, b)
    return {member: root for root, keys in union.groups().items() for member in keys[1:]}
