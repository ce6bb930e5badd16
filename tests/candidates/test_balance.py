"""Balancing: the keep law, its statistics, and the same pairs on every runner and rerun."""

from __future__ import annotations

import math
import random
import threading
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from openwit.config import BuildConfig
from openwit.pipeline.balance.stage import (
    MERGE_BATCH,
    QUERY_COUNTS_FILE,
    UNIT_COUNTS_SCHEMA,
    BalanceStage,
    keep_probability,
    merge_counts,
    over_cap,
    uniform_draw,
)
from openwit.schemas import QUERY_SCHEMA, candidate_schema, uid_for
from tests.harness import run_stage


def test_keep_probability():
    counts = {0: 100_000, 1: 50, 2: 40_000}
    assert keep_probability([0], counts, 20_000) == pytest.approx(0.2)
    assert keep_probability([0, 2], counts, 20_000) == pytest.approx(1 - 0.8 * 0.5)
    assert keep_probability([0, 1], counts, 20_000) == 1.0  # a rare query keeps the pair
    assert keep_probability([2], counts, 40_000) == 1.0  # at the cap exactly: kept
    assert keep_probability([], counts, 20_000) == 1.0


def test_uniform_draw_is_fixed_by_uid_and_seed_and_spread_over_0_1():
    assert uniform_draw("abc", 0) == uniform_draw("abc", 0)
    assert uniform_draw("abc", 0) != uniform_draw("abc", 1)
    draws = [uniform_draw(f"{i:032x}", 7) for i in range(20_000)]
    assert all(0.0 <= d < 1.0 for d in draws)
    deciles = Counter(int(d * 10) for d in draws)
    assert all(1800 < deciles[k] < 2200 for k in range(10))


def pairs(n: int, query_ids: list[int], prefix: str) -> list[dict]:
    return [
        {"uid": uid_for(f"https://{prefix}.example/{i}.jpg", prefix), "query_ids": query_ids}
        for i in range(n)
    ]


def test_a_query_with_100k_pairs_keeps_about_20k_and_rare_queries_keep_all():
    hot = pairs(100_000, [0], "hot")
    with_rare = pairs(500, [0, 1], "rare")  # also matched by a query with 500 pairs
    counts = {0: 100_500, 1: 500}
    kept = Counter()
    for record in hot + with_rare:
        rejection = over_cap(20_000, 0, counts, record["uid"], record["query_ids"])
        if rejection is None:
            kept[tuple(record["query_ids"])] += 1
        else:
            assert rejection.reason == "over_query_cap"
    n, p = 100_000, 20_000 / 100_500
    spread = 6 * math.sqrt(n * p * (1 - p))  # six standard deviations of a binomial
    assert abs(kept[(0,)] - n * p) < spread
    assert kept[(0, 1)] == 500


def write_match_output(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "uid": r["uid"],
            "url": f"https://x.example/{r['uid']}.jpg",
            "text": "a caption",
            "source": "pool.jsonl",
            "source_offset": i,
            "lang": "en",
            "lang_score": 0.9,
            "query_ids": r["query_ids"],
        }
        for i, r in enumerate(records)
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=candidate_schema("match")), path)
    return path


def run_balance(tmp_path: Path, name: str, inputs: list[Path], **beam_options) -> tuple:
    queries = tmp_path / "queries.parquet"
    if not queries.exists():
        rows = [{"query": f"q{i}", "source": "unigram", "count": 1, "score": 1.0} for i in range(4)]
        pq.write_table(pa.Table.from_pylist(rows, schema=QUERY_SCHEMA), queries)
    config = BuildConfig(
        queries=str(queries), balance={"max_per_query": 300, "seed": 3}, beam_options=beam_options
    )
    work = tmp_path / name
    _, _, stats = run_stage(BalanceStage(), config, inputs, work)
    kept = pq.read_table(sorted(work.glob("part-*.parquet"))).column("uid").to_pylist()
    rejected = pq.read_table(sorted(work.glob("rejections-*.parquet"))).to_pylist()
    counts = pq.read_table(work / QUERY_COUNTS_FILE).to_pylist()
    return kept, sorted((r["uid"], r["reason"]) for r in rejected), counts, stats


@pytest.mark.slow
def test_balance_stage_keeps_the_same_pairs_in_memory_multiprocessing_and_on_rerun(tmp_path):
    records = pairs(2_000, [0], "a") + pairs(400, [0, 1], "b") + pairs(100, [2], "c")
    random.Random(0).shuffle(records)
    inputs = [
        write_match_output(tmp_path / "in" / "part-0.parquet", records[:1200]),
        write_match_output(tmp_path / "in" / "part-1.parquet", records[1200:]),
    ]
    first = run_balance(tmp_path, "memory", inputs)
    again = run_balance(tmp_path, "rerun", inputs)
    multi = run_balance(
        tmp_path,
        "multi",
        inputs,
        direct_running_mode="multi_processing",
        direct_num_workers=2,
    )
    assert first[:3] == again[:3] == multi[:3]

    kept, rejected, counts, stats = first
    assert len(kept) + len(rejected) == 2_500
    assert {reason for _, reason in rejected} == {"over_query_cap"}
    by_query = {row["query_id"]: row for row in counts}
    assert by_query[0]["query"] == "q0"
    assert (by_query[0]["count_before"], by_query[1]["count_before"]) == (2_400, 400)
    assert by_query[2] == {"query_id": 2, "query": "q2", "count_before": 100, "count_after": 100}
    # Pairs of q0 alone are kept with p = 300/2400; pairs of q0 and q1 with
    # 1 - (1 - 300/2400)(1 - 300/400) = 0.78125 (six standard deviations allowed).
    assert abs(by_query[1]["count_after"] - 400 * 0.78125) < 50
    assert abs(by_query[0]["count_after"] - (2_000 * 0.125 + 400 * 0.78125)) < 105
    assert stats["queries_over_cap"] == 2 and stats["max_count_before"] == 2_400


def unit_count_tables(folder: str) -> tuple[list[str], dict[int, int]]:
    """Count tables of several merge batches and a partial last one, written under
    ``folder`` (a path or a bucket URL), and the sum they should merge to."""
    from openwit import fs
    from openwit.outputs import parquet_bytes

    rng = random.Random(7)
    expected: Counter[int] = Counter()
    urls = []
    for unit in range(2 * MERGE_BATCH + 5):
        ids = rng.sample(range(300), rng.randint(0, 40))
        counts = [rng.randint(1, 9) for _ in ids]
        expected.update(dict(zip(ids, counts)))
        table = pa.table({"query_id": ids, "count": counts}, schema=UNIT_COUNTS_SCHEMA)
        url = fs.join(folder, f"counts-{unit:05d}.parquet")
        fs.write_bytes(url, parquet_bytes(table))
        urls.append(url)
    return urls, dict(expected)


def test_unit_counts_merge_in_batches_to_the_sum_of_every_unit(tmp_path):
    urls, expected = unit_count_tables(str(tmp_path))
    assert merge_counts(urls) == expected
    assert merge_counts([]) == {}


def test_unit_counts_in_a_bucket_are_read_side_by_side_to_the_same_sum(monkeypatch):
    """From an object store the tables of a batch are read by several threads (a request's
    latency is the cost there); the sum is the same as reading them one by one."""
    from openwit import fs
    from tests.s3server import s3_server

    with s3_server() as server:
        for key, value in server.environment().items():
            monkeypatch.setenv(key, value)
        fs.configure({})
        urls, expected = unit_count_tables(server.bucket("balance-counts") + "/attempt")
        readers = []
        real = pq.read_table

        def read_table(*args, **kwargs):
            readers.append(threading.current_thread().name)
            return real(*args, **kwargs)

        monkeypatch.setattr(pq, "read_table", read_table)
        assert merge_counts(urls) == expected
        assert len(readers) == len(urls) and len(set(readers)) > 1
        assert threading.current_thread().name not in readers
