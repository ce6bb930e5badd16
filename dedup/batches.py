"""Batches of numpy arrays as the elements dedup's shuffles carry, and where they go.

Beam's per-element cost (a few microseconds and tens of bytes of framing) is more than the
work dedup does per record, so its shuffles move *batches*: one element is ``(partition,
payload)`` where the payload packs a few named numpy arrays (thousands of records) into
bytes. :class:`PartitionBuffers` collects a bundle's rows per destination partition and
emits one payload per partition when the bundle ends (or when it holds
:data:`FLUSH_ROWS` rows), so a shuffle carries about ``bundles x partitions`` elements
whatever the number of records. Where every worker can read the build directory, the
payloads are written to files instead and the elements say where they are (:data:`Payload`).

A record is named by its *id*: its row number in the stage's input (units in order, rows
in order), so ``ids`` are dense ``0..n-1`` and the unit of an id is a binary search in the
units' first rows. Ids travel as ``uint32`` while the input has fewer than 2**32 records.
"""

from __future__ import annotations

import itertools
import json
import struct
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa

from openwit import fs

#: Rows a bundle buffers (over all partitions) before it emits them.
FLUSH_ROWS = 1_000_000
_HEADER = struct.Struct("<I")
#: What a shuffle element carries: a payload, or where a spilled one is (url, offset, size).
Payload = bytes | tuple[str, int, int]
STRING = "arrow:string"
HEX = "hex"
_HEX_CHARS = np.frombuffer(b"0123456789abcdef", np.uint8)
_HEX_VALUE = np.full(256, 255, np.uint8)
_HEX_VALUE[_HEX_CHARS] = np.arange(16, dtype=np.uint8)
#: A column of a payload: numpy values, or Arrow strings.
Column = np.ndarray | pa.Array
_MIX = np.uint64(0x9E3779B97F4A7C15)  # 2**64 / golden ratio: Fibonacci hashing


def pack(arrays: Mapping[str, Column]) -> bytes:
    """Named columns as one bytes payload (a small JSON header, then the raw buffers).

    A column is a 1-d numpy array or an Arrow string array (sent as its offsets and
    bytes, so any string travels exactly; strings that are all lowercase hex of one length,
    as uids and sha256s are, as binary: half the bytes). 64-bit integer arrays whose values
    fit are sent as ``uint32`` (ids below 4 billion records) and read back in their own
    type."""
    columns, buffers = [], []
    for name, array in arrays.items():
        if isinstance(array, pa.Array):
            offsets, data = _string_buffers(array)
            digits = _hex_digits(offsets, data)
            if digits is not None:  # uids and sha256s: half the bytes as binary
                columns.append([name, HEX, len(array), digits.shape[1]])
                buffers.append(((digits[:, 0::2] << 4) | digits[:, 1::2]).tobytes())
                continue
            columns.append([name, STRING, len(array), len(data)])
            buffers += [offsets.tobytes(), data.tobytes()]
            continue
        array = np.ascontiguousarray(array)
        wire = narrow(array)
        columns.append([name, wire.dtype.str, len(array), array.dtype.str])
        buffers.append(wire.tobytes())
    header = json.dumps(columns, separators=(",", ":")).encode()
    return b"".join([_HEADER.pack(len(header)), header, *buffers])


def unpack(payload: bytes) -> dict[str, Column]:
    """The columns of :func:`pack`, in the types they were packed in (read-only views of
    the payload where they were sent as they are)."""
    (size,) = _HEADER.unpack_from(payload)
    columns = json.loads(payload[_HEADER.size : _HEADER.size + size])
    offset = _HEADER.size + size
    arrays: dict[str, Column] = {}
    for name, wire, length, extra in columns:
        if wire == HEX:
            raw = np.frombuffer(payload, np.uint8, length * extra // 2, offset)
            offset += raw.nbytes
            chars = np.stack([_HEX_CHARS[raw >> 4], _HEX_CHARS[raw & 15]], axis=-1)
            offsets = (np.arange(length + 1, dtype=np.int32) * extra).tobytes()
            buffers_ = [None, pa.py_buffer(offsets), pa.py_buffer(chars.tobytes())]
            arrays[name] = pa.Array.from_buffers(pa.string(), length, buffers_)
            continue
        if wire == STRING:
            offsets = np.frombuffer(payload, np.int32, length + 1, offset)
            offset += offsets.nbytes
            data = pa.py_buffer(payload)[offset : offset + extra]
            offset += extra
            arrays[name] = pa.Array.from_buffers(
                pa.string(), length, [None, pa.py_buffer(offsets), data]
            )
            continue
        wire = np.dtype(wire)
        array = np.frombuffer(payload, wire, length, offset)
        arrays[name] = array if wire.str == extra else array.astype(extra)
        offset += wire.itemsize * length
    return arrays


def _hex_digits(offsets: np.ndarray, data: np.ndarray) -> np.ndarray | None:
    """The digit values of strings that are all lowercase hex of one even length, as an
    ``(n, length)`` array; None for any other strings."""
    n = len(offsets) - 1
    if n == 0 or len(data) == 0 or len(data) % n or (len(data) // n) % 2:
        return None
    width = len(data) // n
    if not (np.diff(offsets) == width).all():
        return None
    digits = _HEX_VALUE[data]
    if digits.max() > 15:
        return None
    return digits.reshape(n, width)


def _string_buffers(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (from 0) and bytes of a string array without nulls."""
    array = array.cast(pa.string())
    if array.null_count:
        raise ValueError("string columns of a payload have no nulls")
    _, offsets, data = array.buffers()
    offsets = np.frombuffer(offsets, np.int32)[array.offset : array.offset + len(array) + 1]
    start, stop = int(offsets[0]), int(offsets[-1])
    data = np.frombuffer(data, np.uint8)[start:stop] if data is not None else np.empty(0, np.uint8)
    return offsets - offsets[0], data


def narrow(array: np.ndarray) -> np.ndarray:
    if array.dtype.kind not in "iu" or array.dtype.itemsize <= 4 or len(array) == 0:
        return array
    if array.dtype.kind == "i" and array.min() < 0:
        return array
    return array.astype(np.uint32) if array.max() < 2**32 else array


def concat(elements: Iterable[Payload]) -> dict[str, Column]:
    """The columns of several payloads of one kind, concatenated (empty: no payloads)."""
    return join_columns([unpack(p) for p in load(elements)])


def load(elements: Iterable[Payload]) -> list[bytes]:
    """Payloads, read from their files where they were spilled (each file opened once)."""
    out: list[bytes] = []
    spilled: dict[str, list[tuple[int, int]]] = {}
    for element in elements:
        if isinstance(element, bytes):
            out.append(element)
        else:
            url, offset, length = element
            spilled.setdefault(url, []).append((offset, length))
    for url, ranges in spilled.items():
        with fs.open_input(url) as stream:
            for offset, length in sorted(ranges):
                stream.seek(offset)
                out.append(stream.read(length))
    return out


def join_columns(parts: Sequence[Mapping[str, Column]]) -> dict[str, Column]:
    if not parts:
        return {}
    out: dict[str, Column] = {}
    for name in parts[0]:
        pieces = [p[name] for p in parts]
        if isinstance(pieces[0], pa.Array):
            out[name] = pa.concat_arrays(pieces) if len(pieces) > 1 else pieces[0]
        else:
            out[name] = np.concatenate(pieces)
    return out


def take(column: Column, rows: np.ndarray) -> Column:
    return column.take(pa.array(rows)) if isinstance(column, pa.Array) else column[rows]


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


def split_by(keys: np.ndarray, arrays: Mapping[str, Column]) -> Iterator[tuple[int, dict]]:
    """``(key, rows of arrays with that key)`` for each distinct key, rows in their order."""
    if len(keys) == 0:
        return
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    bounds = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1], True])
    for start, stop in itertools.pairwise(bounds):
        rows = order[start:stop]
        yield int(sorted_keys[start]), {name: take(a, rows) for name, a in arrays.items()}


class PartitionBuffers:
    """A bundle's outgoing rows, per destination partition, emitted as one payload each.

    ``add`` takes a partition per row; ``flush`` (at the bundle's end, or by ``add`` when
    :data:`FLUSH_ROWS` rows wait) yields ``(partition, payload)`` in partition order and
    counts the bytes it emits (the shuffle's size, reported by the stage). ``extras``
    gives arrays sent whole with every payload, such as the strings that codes in the
    rows refer to. With ``spill_to`` (a directory every worker can read), a flush writes
    its payloads into one file there and yields ``(partition, (url, offset, size))``
    instead: the runner moves a few bytes per payload (see :mod:`openwit.dedup.links`).
    """

    def __init__(
        self,
        flush_rows: int = FLUSH_ROWS,
        extras: Callable[[], dict[str, Column]] | None = None,
        spill_to: str | None = None,
        name: str = "shuffle",
    ) -> None:
        self.flush_rows = flush_rows
        self.extras = extras  # arrays sent whole with every payload (a dictionary of codes)
        self.spill_to, self.name = spill_to, name
        self.parts: dict[int, list[dict[str, Column]]] = {}
        self.rows = 0
        self.bytes_emitted = 0  # payload bytes, spilled or not
        self.runner_bytes = 0  # what the runner carries: payloads, or where they are
        self.elements_emitted = 0

    def add(
        self, partitions: np.ndarray, arrays: Mapping[str, Column]
    ) -> Iterator[tuple[int, Payload]]:
        for partition, rows in split_by(partitions, arrays):
            self.parts.setdefault(partition, []).append(rows)
        self.rows += len(partitions)
        if self.rows >= self.flush_rows:
            yield from self.flush()

    def flush(self) -> Iterator[tuple[int, Payload]]:
        parts, self.parts, self.rows = self.parts, {}, 0
        payloads = []
        for partition in sorted(parts):
            arrays = join_columns(parts[partition])
            if self.extras is not None:
                arrays.update(self.extras())
            payloads.append((partition, pack(arrays)))
            self.bytes_emitted += len(payloads[-1][1]) + 8  # and the partition number
            self.elements_emitted += 1
        if self.spill_to is None or not payloads:
            self.runner_bytes += sum(len(payload) + 8 for _, payload in payloads)
            yield from payloads
            return
        # One file per flush; the shuffle carries where each partition's bytes are.
        url = fs.join(self.spill_to, f"{self.name}-{uuid.uuid4().hex}.bin")
        fs.write_bytes(url, b"".join(payload for _, payload in payloads))
        offset = 0
        for partition, payload in payloads:
            yield partition, (url, offset, len(payload))
            offset += len(payload)
            self.runner_bytes += len(url) + 24


def text_array(strings: Iterable[str | None]) -> pa.Array:
    """Strings as a payload column (None becomes the empty string)."""
    return pa.array([s or "" for s in strings], pa.string())
