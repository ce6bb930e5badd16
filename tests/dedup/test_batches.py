"""Payloads of dedup's shuffles: what is packed comes back, whatever the strings."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from openwit.dedup.batches import PartitionBuffers, concat, pack, unit_of, unpack

texts = st.lists(st.text(max_size=12), max_size=20)
hex_texts = st.lists(st.binary(min_size=16, max_size=16).map(bytes.hex), min_size=1, max_size=9)


@settings(deadline=None)
@given(texts, hex_texts, st.lists(st.integers(0, 2**64 - 1), max_size=20))
def test_columns_come_back_as_they_were_packed(strings, hexes, numbers):
    columns = {
        "text": pa.array(strings, pa.string()),
        "hex": pa.array(hexes, pa.string()),
        "hash": np.asarray(numbers, np.uint64),
        "id": np.arange(len(numbers), dtype=np.int64),
        "sliced": pa.array(hexes, pa.string()).slice(1),
    }
    back = unpack(pack(columns))
    assert back["text"].to_pylist() == strings
    assert back["hex"].to_pylist() == hexes
    assert back["sliced"].to_pylist() == hexes[1:]
    assert back["hash"].dtype == np.uint64 and back["hash"].tolist() == numbers
    assert back["id"].dtype == np.int64 and back["id"].tolist() == list(range(len(numbers)))


def test_hex_strings_and_small_ids_travel_in_half_the_bytes():
    uids = pa.array([f"{i:032x}" for i in range(1000)])
    plain = pa.array([f"{i:032x}".upper() for i in range(1000)])  # not lowercase: as is
    ids = np.arange(1000, dtype=np.int64)
    assert len(pack({"uid": uids})) < 16 * 1000 + 100
    assert len(pack({"uid": plain})) > 32 * 1000
    assert len(pack({"id": ids})) < 4 * 1000 + 100


def test_buffers_send_one_payload_per_partition_and_count_the_bytes():
    buffers = PartitionBuffers(flush_rows=10**9)
    out = list(buffers.add(np.asarray([2, 0, 2]), {"x": np.asarray([1, 2, 3])}))
    out += list(buffers.add(np.asarray([0]), {"x": np.asarray([4])}))
    assert out == []  # nothing before the bundle ends
    flushed = list(buffers.flush())
    assert [(p, unpack(b)["x"].tolist()) for p, b in flushed] == [(0, [2, 4]), (2, [1, 3])]
    assert buffers.bytes_emitted == sum(len(b) + 8 for _, b in flushed)
    assert concat(b for _, b in flushed)["x"].tolist() == [2, 4, 1, 3]


def test_buffers_flush_early_when_they_hold_many_rows():
    buffers = PartitionBuffers(flush_rows=3)
    assert list(buffers.add(np.asarray([1, 1]), {"x": np.asarray([1, 2])})) == []
    early = list(buffers.add(np.asarray([1, 1]), {"x": np.asarray([3, 4])}))
    assert [unpack(b)["x"].tolist() for _, b in early] == [[1, 2, 3, 4]]


def test_ids_map_back_to_their_units():
    starts = np.asarray([0, 5, 5, 12])  # unit 1 is empty
    assert unit_of(np.asarray([0, 4, 5, 11]), starts).tolist() == [0, 0, 2, 2]


def test_spilled_payloads_are_read_back_from_their_file(tmp_path):
    buffers = PartitionBuffers(spill_to=str(tmp_path), name="t")
    list(buffers.add(np.asarray([1, 0, 1]), {"x": np.asarray([1, 2, 3])}))
    flushed = list(buffers.flush())
    assert [p for p, _ in flushed] == [0, 1]
    assert all(isinstance(d, tuple) and d[0].startswith(str(tmp_path)) for _, d in flushed)
    assert len(list(tmp_path.iterdir())) == 1  # one file per flush
    assert concat(d for _, d in flushed)["x"].tolist() == [2, 1, 3]
    assert concat([flushed[1][1]])["x"].tolist() == [1, 3]
    big = PartitionBuffers(spill_to=str(tmp_path), name="big")
    list(big.add(np.zeros(10_000, np.int64), {"x": np.arange(10_000) * 2**40}))
    list(big.flush())
    assert big.runner_bytes < big.bytes_emitted / 100  # the runner carries where, not what
