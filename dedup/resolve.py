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
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

#: When one record has several reasons, the first in this order is the one recorded.
REASON_ORDER = ("eval_overlap", "exact_duplicate", "near_duplicate")
EVAL, EXACT, NEAR = range(len(REASON_ORDER))
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
    group ``label``, the record ``id``, its rank-key parts (``offset`` -1: none) and, in
    exact groups, its sha256 (empty in near groups)."""

    kind: np.ndarray
    label: np.ndarray
    id: np.ndarray
    uid: pa.Array
    source: pa.Array
    offset: np.ndarray
    sha256: pa.Array

    def rank_keys(self) -> pa.Array:
        """:func:`openwit.dedup.groups.rank_key` of each member, as Arrow strings (whose
        byte order is Python's string order)."""
        import pyarrow.compute as pc

        offset = pa.array(self.offset, pa.int64())
        digits = pc.utf8_lpad(pc.cast(offset, pa.string()), 20, "0")
        offset_text = pc.if_else(pc.less(offset, 0), "", digits)
        return pc.binary_join_element_wise(self.uid, self.source, offset_text, "\x1f")


def settle(members: Members) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """``(id, reason, kept uid)`` of the records each group rejects: all but the smallest
    rank key of each group (exact groups: of each group of equal full sha256)."""
    import pyarrow.compute as pc

    table = pa.table(
        {
            "kind": members.kind,
            "label": members.label,
            "sha256": members.sha256,
            "key": members.rank_keys(),
            "id": members.id,
        }
    )
    order = pc.sort_indices(table, [(name, "ascending") for name in table.column_names])
    order = order.to_numpy()
    kind, label = members.kind[order], members.label[order]
    sha = members.sha256.take(pa.array(order))
    new = np.r_[True, (kind[1:] != kind[:-1]) | (label[1:] != label[:-1])]
    if len(order) > 1:
        new[1:] |= pc.not_equal(sha[1:], sha[:-1]).to_numpy(zero_copy_only=False)
    kept = np.flatnonzero(new)[np.cumsum(new) - 1]  # the first of each row's group
    rejected = ~new
    kept_uid = members.uid.take(pa.array(order[kept[rejected]]))
    return members.id[order][rejected], kind[rejected].astype(np.uint8), kept_uid


#: What a decision's detail says before its argument (the eval detail is its argument).
DETAIL_PREFIX = ("", "same sha256 as uid ", "near duplicate of uid ")


def unit_decisions(rows: np.ndarray, reasons: np.ndarray, arguments: pa.Array) -> pa.Table:
    """One unit's decisions (a row may come with several reasons: the first of
    :data:`REASON_ORDER` wins); ``arguments`` is the eval detail or the kept uid."""
    import pyarrow.compute as pc

    rows, reasons = np.asarray(rows, np.int64), np.asarray(reasons, np.int64)
    order = np.lexsort((reasons, rows))
    first = np.r_[True, rows[order][1:] != rows[order][:-1]] if len(order) else order == 0
    pick = order[first]
    reason = reasons[pick]
    prefix = pa.array(np.asarray(DETAIL_PREFIX, dtype=object)[reason], pa.string())
    return pa.table(
        {
            "row": pa.array(rows[pick], pa.int32()),
            "reason": pa.array(np.asarray(REASON_ORDER, dtype=object)[reason], pa.string()),
            "detail": pc.binary_join_element_wise(prefix, arguments.take(pa.array(pick)), ""),
        },
        schema=DECISION_SCHEMA,
    )
