"""Batches of numpy arrays as the elements dedup's shuffles carry, and where they go.

Beam's per-element cost (a few microseconds and tens of bytes of framing) is more than the
work dedup does per record, so its shuffles move *batches*: one element is ``(partition,
payload)`` where the payload packs a few named numpy arrays (thousands of records) into
bytes. :class:`PartitionBuffers` collects a bundle's rows per destination partition and
emits one payload per partition when the bundle ends (or when it holds
:data:`FLUSH_ROWS` rows), so a shuffle carries about ``bundles x partitions`` elements
whatever the number of records.

A record is named by its *id*: its row number in the stage's input (units in order, rows
in order), so ``ids`` are dense ``0..n-1`` and the unit of an id is a binary search in the
units' first rows. Ids travel as ``uint32`` while the input has fewer than 2**32 records.
"""

from __future__ import annotations

import itertools
import json
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping

import numpy as np

#: Rows a bundle buffers (over all partitions) before it emits them.
FLUSH_ROWS = 1_000_000
_HEADER = struct.Struct("<I")
_MIX = np.uint64(0x9E3779B97F4A7C15)  # 2**64 / golden ratio: Fibonacci hashing


def pack(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Named 1-d arrays as one bytes payload (a small JSON header, then the raw buffers).

    64-bit integer arrays whose values fit are sent as ``uint32`` (ids below 4 billion
    records) and read back in their own type."""
    columns, buffers = [], []
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        wire = narrow(array)
        columns.append([name, wire.dtype.str, len(array), array.dtype.str])
        buffers.append(wire.tobytes())
    header = json.dumps(columns, separators=(",", ":")).encode()
    return b"".join([_HEADER.pack(len(header)), header, *buffers])


def unpack(payload: bytes) -> dict[str, np.ndarray]:
    """The arrays of :func:`pack`, in the types they were packed in (read-only views of
    the payload where they were sent as they are)."""
    (size,) = _HEADER.unpack_from(payload)
    columns = json.loads(payload[_HEADER.size : _HEADER.size + size])
    offset = _HEADER.size + size
    arrays = {}
    for name, wire, length, dtype in columns:
        wire = np.dtype(wire)
        array = np.frombuffer(payload, wire, length, offset)
        arrays[name] = array if wire.str == dtype else array.astype(dtype)
        offset += wire.itemsize * length
    return arrays


def narrow(array: np.ndarray) -> np.ndarray:
    if array.dtype.kind not in "iu" or array.dtype.itemsize <= 4 or len(array) == 0:
        return array
    if array.dtype.kind == "i" and array.min() < 0:
        return array
    return array.astype(np.uint32) if array.max() < 2**32 else array


def concat(payloads: Iterable[bytes]) -> dict[str, np.ndarray]:
    """The arrays of several payloads of one kind, concatenated (empty: no payloads)."""
    parts = [unpack(p) for p in payloads]
    if not parts:
        return {}
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def mix(values: np.ndarray, salt: int = 0) -> np.ndarray:
    """A well-spread uint64 hash of integer values (so ids or band values that share low
    bits still spread over the partitions)."""
    values = np.asarray(values).astype(np.uint64) ^ np.uint64(salt)
    with np.errstate(over="ignore"):
        mixed = values * _MIX
    return mixed ^ (mixed >> np.uint64(29))


def partition_of(values: np.ndarray, partitions: int, salt: int = 0) -> np.ndarray:
    return (mix(values, salt) % np.uint64(partitions)).astype(np.int64)


def unit_of(ids: np.ndarray, unit_starts: np.ndarray) -> np.ndarray:
    """The unit of each id (``unit_starts[u]`` is unit ``u``'s first id)."""
    return np.searchsorted(unit_starts, ids, side="right") - 1


def split_by(keys: np.ndarray, arrays: Mapping[str, np.ndarray]) -> Iterator[tuple[int, dict]]:
    """``(key, rows of arrays with that key)`` for each distinct key, rows in their order."""
    if len(keys) == 0:
        return
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    bounds = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1], True])
    for start, stop in itertools.pairwise(bounds):
        rows = order[start:stop]
        yield int(sorted_keys[start]), {name: a[rows] for name, a in arrays.items()}


class PartitionBuffers:
    """A bundle's outgoing rows, per destination partition, emitted as one payload each.

    ``add`` takes a partition per row; ``flush`` (at the bundle's end, or by ``add`` when
    :data:`FLUSH_ROWS` rows wait) yields ``(partition, payload)`` in partition order and
    counts the bytes it emits (the shuffle's size, reported by the stage). ``extras``
    gives arrays sent whole with every payload, such as the strings that codes in the
    rows refer to.
    """

    def __init__(
        self,
        flush_rows: int = FLUSH_ROWS,
        extras: Callable[[], dict[str, np.ndarray]] | None = None,
    ) -> None:
        self.flush_rows = flush_rows
        self.extras = extras  # arrays sent whole with every payload (a dictionary of codes)
        self.parts: dict[int, list[dict[str, np.ndarray]]] = {}
        self.rows = 0
        self.bytes_emitted = 0
        self.elements_emitted = 0

    def add(
        self, partitions: np.ndarray, arrays: Mapping[str, np.ndarray]
    ) -> Iterator[tuple[int, bytes]]:
        for partition, rows in split_by(partitions, arrays):
            self.parts.setdefault(partition, []).append(rows)
        self.rows += len(partitions)
        if self.rows >= self.flush_rows:
            yield from self.flush()

    def add_to(self, partition: int, arrays: Mapping[str, np.ndarray]) -> Iterator:
        n = len(next(iter(arrays.values())))
        yield from self.add(np.full(n, partition, dtype=np.int64), arrays)

    def flush(self) -> Iterator[tuple[int, bytes]]:
        parts, self.parts, self.rows = self.parts, {}, 0
        for partition in sorted(parts):
            pieces = parts[partition]
            arrays = {name: np.concatenate([p[name] for p in pieces]) for name in pieces[0]}
            if self.extras is not None:
                arrays.update(self.extras())
            payload = pack(arrays)
            self.bytes_emitted += len(payload) + 8  # and the partition number
            self.elements_emitted += 1
            yield partition, payload


def text_array(strings: Iterable[str]) -> np.ndarray:
    """Strings as a fixed-width bytes array (UTF-8), to travel in a payload."""
    encoded = [s.encode() for s in strings]
    return np.array(encoded, dtype=np.bytes_) if encoded else np.empty(0, dtype="S1")


def texts(array: np.ndarray) -> list[str]:
    return [b.decode() for b in array.tolist()]
