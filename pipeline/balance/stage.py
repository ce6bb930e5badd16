"""Build stage ``balance``: cap the pairs per query at ``t = balance.max_per_query`` (CLIP: 20k).

MetaCLIP's balancing, made deterministic. ``count_q`` is the number of pairs matching query
``q`` over the whole input (a Beam combine); a pair is kept with probability

    p = 1 - prod over its queries q of (1 - min(1, t / count_q))

which is the chance that at least one of its queries would pick it if each query kept
``t`` of its ``count_q`` pairs at random (MetaCLIP draws once per query; one draw against
``p`` gives the same law). A pair with any query at or below the cap is always kept. The
draw is a hash of ``(seed, uid)``, not a random generator, so the same input and seed keep
the same pairs on every runner, worker count and rerun. Rejected pairs are
``over_query_cap``.

The stage writes ``query_counts.parquet`` beside its output (query_id, query,
count_before, count_after; only queries that matched something) and head/tail figures in
its stats, for the build report.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa

from openwit.beam import REJECTED, write_parquet
from openwit.config import BuildConfig
from openwit.funnel import Rejection
from openwit.io import atomic_path
from openwit.schemas import REJECTION_SCHEMA, candidate_schema
from openwit.stage import BeamStage, StageContext, StageResult

STAGE = "balance"
QUERY_COUNTS_FILE = "query_counts.parquet"
_COUNTS_PREFIX = "query-counts-shard"

QUERY_COUNTS_SCHEMA = pa.schema(
    [
        pa.field("query_id", pa.int32()),
        pa.field("query", pa.string()),
        pa.field("count_before", pa.int64()),
        pa.field("count_after", pa.int64()),
    ]
)
_SHARD_SCHEMA = pa.schema([f for f in QUERY_COUNTS_SCHEMA if f.name != "query"])


def keep_probability(query_ids: Sequence[int], counts: Mapping[int, int], cap: int) -> float:
    """``1 - prod(1 - min(1, cap / count_q))`` over the pair's queries (in the given order,
    which is sorted, so the float result is the same everywhere)."""
    drop = 1.0
    for query_id in query_ids:
        count = counts.get(query_id, 0)
        if count <= cap:
            return 1.0
        drop *= 1.0 - cap / count
    return 1.0 - drop if query_ids else 1.0


def uniform_draw(uid: str, seed: int) -> float:
    """A number in [0, 1) fixed by ``(seed, uid)``: the first 53 bits of a BLAKE2b hash."""
    digest = hashlib.blake2b(f"{seed}\t{uid}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 11) / float(1 << 53)


def balance_record(
    cap: int, seed: int, counts: Mapping[int, int], record: dict[str, Any]
) -> Iterator[dict[str, Any] | Rejection]:
    """The balance core: keep the record, or reject it as ``over_query_cap``."""
    probability = keep_probability(record["query_ids"], counts, cap)
    if probability >= 1.0 or uniform_draw(record["uid"], seed) < probability:
        yield record
    else:
        yield Rejection(record["uid"], STAGE, "over_query_cap", f"p_keep={probability:.4g}")


def query_ones(record: dict[str, Any]) -> Iterator[tuple[int, int]]:
    for query_id in record["query_ids"]:
        yield query_id, 1


class BalanceDoFn(beam.DoFn):
    def __init__(self, cap: int, seed: int) -> None:
        self.cap, self.seed = cap, seed

    def process(self, record: dict[str, Any], counts: Mapping[int, int]) -> Any:
        for item in balance_record(self.cap, self.seed, counts, record):
            if isinstance(item, Rejection):
                yield beam.pvalue.TaggedOutput(REJECTED, item.as_record())
            else:
                yield item


def count_rows(item: tuple[int, dict[str, list[int]]]) -> dict[str, int]:
    query_id, grouped = item
    return {
        "query_id": query_id,
        "count_before": sum(grouped["before"]),
        "count_after": sum(grouped["after"]),
    }


class BalanceStage(BeamStage):
    name = STAGE
    version = 1
    config_keys = ("balance",)

    def output_schema(self, config: BuildConfig) -> pa.Schema:
        return candidate_schema("balance")

    def expand_all(self, records: Any, cap: int, seed: int) -> tuple[Any, Any, Any]:
        """``(kept, rejected, per-query count rows)``."""
        before = (
            records
            | "Query ones" >> beam.FlatMap(query_ones)
            | "Count per query" >> beam.CombinePerKey(sum)
        )
        decided = records | "Keep with p" >> beam.ParDo(
            BalanceDoFn(cap, seed), beam.pvalue.AsDict(before)
        ).with_outputs(REJECTED, main="kept")
        after = (
            decided.kept
            | "Kept query ones" >> beam.FlatMap(query_ones)
            | "Count kept per query" >> beam.CombinePerKey(sum)
        )
        rows = (
            {"before": before, "after": after}
            | "Join counts" >> beam.CoGroupByKey()
            | "Count rows" >> beam.Map(count_rows)
        )
        return decided.kept, decided[REJECTED], rows

    def expand(self, records: Any, ctx: StageContext) -> tuple[Any, Any]:
        settings = ctx.config.balance
        kept, rejected, _ = self.expand_all(records, settings.max_per_query, settings.seed)
        return kept, rejected

    def run(self, ctx: StageContext) -> StageResult:
        settings = ctx.config.balance
        with ctx.new_pipeline() as pipeline:
            records = self.read(pipeline, ctx)
            kept, rejected, rows = self.expand_all(records, settings.max_per_query, settings.seed)
            write_parquet(kept, ctx.output_prefix, self.output_schema(ctx.config), "Write kept")
            write_parquet(rejected, ctx.rejections_prefix, REJECTION_SCHEMA, "Write rejected")
            write_parquet(rows, str(ctx.work_dir / _COUNTS_PREFIX), _SHARD_SCHEMA, "Write counts")
        table = collect_query_counts(ctx.work_dir, ctx.config.queries)
        return StageResult(stats=head_tail_stats(table, settings.max_per_query))


def collect_query_counts(work_dir: Path, queries_path: str) -> pa.Table:
    """Merge the count shards into one ``query_counts.parquet`` (sorted by query id, with
    the query text) and remove the shards."""
    import pyarrow.parquet as pq

    from openwit.pipeline.match.matcher import read_queries

    shards = sorted(work_dir.glob(f"{_COUNTS_PREFIX}-*.parquet"))
    rows = [row for shard in shards for row in pq.read_table(shard).to_pylist()]
    rows.sort(key=lambda row: row["query_id"])
    try:
        queries = read_queries(queries_path)
    except (OSError, KeyError):  # the counts are still worth writing without the text
        queries = []
    for row in rows:
        index = row["query_id"]
        row["query"] = queries[index] if 0 <= index < len(queries) else None
    table = pa.Table.from_pylist(rows, schema=QUERY_COUNTS_SCHEMA)
    with atomic_path(work_dir / QUERY_COUNTS_FILE) as tmp:
        pq.write_table(table, tmp)
    for shard in shards:
        shard.unlink()
    return table


def head_tail_stats(table: pa.Table, cap: int) -> dict[str, Any]:
    """Small figures of the per-query distribution before and after balancing."""
    before = table.column("count_before").to_pylist()
    after = table.column("count_after").to_pylist()
    head = [i for i, count in enumerate(before) if count > cap]
    matches_before, matches_after = sum(before), sum(after)
    top = sorted(range(len(before)), key=lambda i: (-before[i], i))[:10]
    queries = table.column("query").to_pylist()
    return {
        "max_per_query": cap,
        "queries_matched": len(before),
        "queries_over_cap": len(head),
        "matches_before": matches_before,
        "matches_after": matches_after,
        "head_share_before": _share(sum(before[i] for i in head), matches_before),
        "head_share_after": _share(sum(after[i] for i in head), matches_after),
        "max_count_before": max(before, default=0),
        "max_count_after": max(after, default=0),
        "top_queries": [[queries[i], before[i], after[i]] for i in top],
    }


def _share(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0
