"""The keep rule on grouped records, sha256 prefixes and a unit's decisions."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from openwit.dedup.groups import rank_key
from openwit.dedup.resolve import EXACT, NEAR, Members, prefix_groups, settle, sha_prefixes

member = st.fixed_dictionaries(
    {
        "uid": st.sampled_from(["a", "ab", "b", "a\x1fb", "é", "ba"]),
        "source": st.sampled_from(["", "x.jsonl", "x", "y.parquet"]),
        "source_offset": st.one_of(st.none(), st.integers(-1, 12)),
        "group": st.integers(0, 3),
        "sha256": st.sampled_from(["s1", "s2"]),
    }
)


@settings(deadline=None)
@given(st.lists(member, min_size=1, max_size=30), st.sampled_from([EXACT, NEAR]))
def test_each_group_keeps_its_smallest_rank_key(records, kind):
    n = len(records)
    members = Members(
        np.full(n, kind, np.uint8),
        np.asarray([r["group"] for r in records], np.int64),
        np.arange(n, dtype=np.int64),
        pa.array([r["uid"] for r in records]),
        pa.array([r["source"] for r in records]),
        np.asarray([-1 if r["source_offset"] is None else r["source_offset"] for r in records]),
        pa.array([r["sha256"] if kind == EXACT else "" for r in records]),
    )
    ids, reasons, kept = settle(members)
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault((r["group"], r["sha256"] if kind == EXACT else ""), []).append(i)
    want = {}
    for rows in groups.values():
        keep = min(rows, key=lambda i: (rank_key(records[i]), i))
        want.update({i: records[keep]["uid"] for i in rows if i != keep})
    assert dict(zip(ids.tolist(), kept.to_pylist())) == want
    assert set(reasons.tolist()) <= {kind}


def test_sha256_prefixes_group_equal_digests_and_any_other_string():
    digest = hashlib.sha256(b"x").hexdigest()
    values = pa.array([digest, None, "", digest.upper(), "not hex", digest, "not hex"])
    rows, prefix = sha_prefixes(values)
    assert rows.tolist() == [0, 3, 4, 5, 6]
    assert prefix[0] == prefix[1] == prefix[3] == int(digest[:16], 16)  # case does not matter
    assert prefix[2] == prefix[4] != prefix[0]
    label, members = prefix_groups(prefix, rows)
    assert sorted(zip(members.tolist(), label.tolist())) == [(0, 0), (3, 0), (4, 4), (5, 0), (6, 4)]
