"""Exact-duplicate groups, the keep rule per group, and one unit's decisions (no Beam).

Groups are found on compact integers and settled on the records' own strings:

- exact duplicates are grouped by the first 64 bits of the sha256 (:func:`sha_prefixes`);
  a group's members are later split by their full sha256, so a prefix shared by two
  different images (one pair in ~10^19) costs nothing but a comparison;
- near-duplicate groups come from the connected components (:mod:`openwit.dedup.components`).

Either way a group is ``(label, member ids)``. :func:`settle` then looks at the members'
rank keys (:func:`openwit.dedup.groups.rank_key`: uid, input file, offset) -- fetched from
their units only for records that are in a group -- and keeps the smallest, exactly as
before. :func:`unit_decisions` merges what a unit's records were rejected for.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from openwit.dedup.groups import rank_key

#: When one record has several reasons, the first in this order is the one recorded.
REASON_ORDER = ("eval_overlap", "exact_duplicate", "near_duplicate")
EVAL, EXACT, NEAR = range(len(REASON_ORDER))
DETAILS = {EXACT: "same sha256 as uid {}", NEAR: "near duplicate of uid {}"}
DECISION_SCHEMA = pa.schema(
    [pa.field("row", pa.int32()), pa.field("reason", pa.string()), pa.field("detail", pa.string())]
)

_HEX = np.full(256, 255, dtype=np.uint8)
_HEX[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10)
_HEX[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16)
_HEX[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)


def sha_prefixes(values: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, prefix)``: the rows with a sha256 (not null, not empty) and the first 64
    bits of it.

    Hex digests are read as numbers, vectorised; any other string is hashed (blake2b), so
    equal strings still get equal prefixes."""
    import pyarrow.compute as pc

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], pa.string())
    values = values.cast(pa.string())
    valid = pc.fill_null(pc.greater(pc.binary_length(values), 0), False)
    rows = np.flatnonzero(valid.to_numpy(zero_copy_only=False))
    heads = pc.utf8_slice_codeunits(values.filter(valid), 0, 16)
    n = len(heads)
    if n and pc.all(pc.equal(pc.binary_length(heads), 16)).as_py():
        offset = heads.offset
        start = np.frombuffer(heads.buffers()[1], np.int32)[offset]
        data = np.frombuffer(heads.buffers()[2], np.uint8)[start : start + 16 * n]
    else:
        data = np.frombuffer(
            b"".join(s.encode()[:16].ljust(16, b"\xff") for s in heads.to_pylist()), np.uint8
        )
    nibbles = _HEX[data.reshape(n, 16)]
    prefix = np.zeros(n, dtype=np.uint64)
    for column in range(16):
        prefix = (prefix << np.uint64(4)) | nibbles[:, column].astype(np.uint64)
    odd = np.flatnonzero((nibbles == 255).any(axis=1))
    if len(odd):
        strings = values.filter(valid).take(pa.array(odd)).to_pylist()
        for i, string in zip(odd, strings):
            digest = hashlib.blake2b(string.encode(), digest_size=8).digest()
            prefix[i] = np.uint64(int.from_bytes(digest, "big"))
    return rows, prefix


def prefix_groups(prefix: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(label, member)`` for every record whose prefix another record shares; the label
    of a group is its smallest id."""
    if len(prefix) < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    order = np.lexsort((ids, prefix))
    prefix, ids = prefix[order], np.asarray(ids, dtype=np.int64)[order]
    starts = np.flatnonzero(np.r_[True, prefix[1:] != prefix[:-1]])
    counts = np.diff(np.r_[starts, len(prefix)])
    in_group = np.repeat(counts >= 2, counts)
    labels = np.repeat(ids[starts], counts)
    return labels[in_group], ids[in_group]


@dataclass
class Members:
    """Records of groups with what the keep rule needs: ``kind`` (EXACT or NEAR), the
    group ``label``, the record ``id``, its rank-key parts and (exact groups) sha256."""

    kind: np.ndarray
    label: np.ndarray
    id: np.ndarray
    uid: list[str]
    source: list[str]
    offset: list[int | None]
    sha256: list[str | None]

    def rank_keys(self) -> list[str]:
        return [
            rank_key({"uid": u, "source": s, "source_offset": o})
            for u, s, o in zip(self.uid, self.source, self.offset)
        ]


def settle(members: Members) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(id, reason, kept uid)`` of the records each group rejects: all but the smallest
    rank key of each group (exact groups: of each group of equal full sha256)."""
    keys = members.rank_keys()
    order = np.lexsort((members.label, members.kind))
    kind, label = members.kind[order], members.label[order]
    bounds = np.flatnonzero(np.r_[True, (kind[1:] != kind[:-1]) | (label[1:] != label[:-1]), True])
    out_id, out_reason, out_uid = [], [], []
    for start, stop in itertools.pairwise(bounds):
        rows = order[start:stop].tolist()
        group_kind = int(kind[start])
        if group_kind == EXACT:
            by_sha: dict[str | None, list[int]] = {}
            for row in rows:
                by_sha.setdefault(members.sha256[row], []).append(row)
            groups: Iterable[list[int]] = by_sha.values()
        else:
            groups = [rows]
        for group in groups:
            if len(group) < 2:
                continue
            kept = min(group, key=lambda row: (keys[row], members.id[row]))
            for row in group:
                if row != kept:
                    out_id.append(int(members.id[row]))
                    out_reason.append(group_kind)
                    out_uid.append(members.uid[kept])
    return np.asarray(out_id, np.int64), np.asarray(out_reason, np.uint8), out_uid


def unit_decisions(rows: np.ndarray, reasons: np.ndarray, arguments: Sequence[str]) -> pa.Table:
    """One unit's decisions (a row may come with several reasons: the first of
    :data:`REASON_ORDER` wins); ``arguments`` is the eval detail or the kept uid."""
    chosen: dict[int, tuple[int, str]] = {}
    for row, reason, argument in zip(rows.tolist(), reasons.tolist(), arguments):
        if row not in chosen or reason < chosen[row][0]:
            chosen[row] = (reason, argument)
    ordered = sorted(chosen.items())
    return pa.table(
        {
            "row": pa.array([row for row, _ in ordered], pa.int32()),
            "reason": pa.array([REASON_ORDER[r] for _, (r, _) in ordered], pa.string()),
            "detail": pa.array(
                [DETAILS[r].format(a) if r in DETAILS else a for _, (r, a) in ordered], pa.string()
            ),
        },
        schema=DECISION_SCHEMA,
    )
