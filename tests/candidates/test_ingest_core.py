"""Ingest's pass-2 core against a brute-force reference."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.ingest.stage import OUTPUT_SCHEMA, unique_pairs

# Few uids and sources, so that most drawn tables have copies of a pair, often several.
copies = st.lists(
    st.tuples(
        st.sampled_from([f"{i:032x}" for i in (3, 7, 11, 250)]),
        st.sampled_from(["a.parquet", "b.warc.gz", "c.jsonl"]),
        st.integers(0, 20),
    ),
    max_size=40,
)


def as_table(rows: list[tuple[str, str, int]]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {"uid": uid, "url": f"https://x/{uid}", "text": "t", "source": s, "source_offset": o}
            for uid, s, o in rows
        ],
        schema=OUTPUT_SCHEMA,
    )


@settings(max_examples=200, deadline=None)
@given(copies)
def test_unique_pairs_keeps_the_first_copy_of_each_uid_and_names_it_in_each_rejection(rows):
    output = unique_pairs(as_table(rows))

    first: dict[str, tuple[str, int]] = {}
    for uid, source, offset in sorted(rows):
        first.setdefault(uid, (source, offset))
    kept = output.kept.select(["uid", "source", "source_offset"]).to_pylist()
    assert [(r["uid"], r["source"], r["source_offset"]) for r in kept] == [
        (uid, *first[uid]) for uid in sorted(first)
    ]
    rejected = output.rejected.to_pylist()
    assert len(rejected) + len(kept) == len(rows)
    # Every copy but the kept one is rejected, each naming the kept copy.
    expected_rejections = sorted(
        (uid, f"same url and text as {first[uid][0]}#{first[uid][1]}") for uid, _, _ in rows
    )
    for uid in first:
        expected_rejections.remove((uid, f"same url and text as {first[uid][0]}#{first[uid][1]}"))
    assert sorted((r["uid"], r["detail"]) for r in rejected) == expected_rejections
    assert {r["reason"] for r in rejected} <= {"duplicate_pair"}
