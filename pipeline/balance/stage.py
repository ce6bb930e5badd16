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

Two passes: ``count`` counts each unit's matches per query (a side table per unit, merged
by the launcher into ``count.query_counts.parquet``: at most one row per query, so bounded
by the query list, never by the input); the keep pass reads those counts once per worker
and decides each unit's records. It also counts what it kept per query, and the stage
writes ``query_counts.parquet`` (query_id, query, count_before, count_after; only queries
that matched something) and head/tail figures in its stats, for the build report.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from openwit import fs
from openwit.config import BuildConfig
from openwit.funnel import Rejection
from openwit.outputs import StageTotals, UnitOutput, parquet_bytes, rejections_table
from openwit.schemas import candidate_schema
from openwit.stage import Stage, StageContext, StageResult, cut_row_group
from openwit.unit_transform import TableCore, run_units
from openwit.units import count_units

STAGE = "balance"
OUTPUT_SCHEMA = candidate_schema(STAGE)
QUERY_COUNTS_FILE = "query_counts.parquet"
COUNT_PASS = "count"
COUNTS = "counts"  # a unit's matches per query (count pass) or kept per query (keep pass)
MERGED_COUNTS_FILE = f"{COUNT_PASS}.query_counts.parquet"

QUERY_COUNTS_SCHEMA = pa.schema(
    [
        pa.field("query_id", pa.int32()),
        pa.field("query", pa.string()),
        pa.field("count_before", pa.int64()),
        pa.field("count_after", pa.int64()),
    ]
)
UNIT_COUNTS_SCHEMA = pa.schema([pa.field("query_id", pa.int32()), pa.field("count", pa.int64())])


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


def over_cap(
    cap: int, seed: int, counts: Mapping[int, int], uid: str, query_ids: Sequence[int]
) -> Rejection | None:
    """The balance decision for one pair: None to keep it, or its ``over_query_cap``."""
    probability = keep_probability(query_ids, counts, cap)
    if probability >= 1.0 or uniform_draw(uid, seed) < probability:
        return None
    return Rejection(uid, STAGE, "over_query_cap", f"p_keep={probability:.4g}")


def query_counts(table: pa.Table) -> pa.Table:
    """Matches per query among a table's records (``query_id``, ``count``)."""
    ids = pc.list_flatten(table.column("query_ids"))
    if len(ids) == 0:
        return UNIT_COUNTS_SCHEMA.empty_table()
    counts = pc.value_counts(ids)
    return pa.table(
        {"query_id": counts.field("values"), "count": counts.field("counts")}, UNIT_COUNTS_SCHEMA
    ).sort_by("query_id")


def count_unit(table: pa.Table) -> UnitOutput:
    """The count pass's core."""
    return UnitOutput(sides={COUNTS: query_counts(table)})


def count_core() -> TableCore:
    return TableCore(count_unit, columns=["query_ids"])


def balance_table(cap: int, seed: int, counts: Mapping[int, int], table: pa.Table) -> UnitOutput:
    """The keep pass's core: kept records and ``over_query_cap`` rejections, and the kept
    records' matches per query."""
    keep = []
    rejected = []
    uids, ids = table.column("uid").to_pylist(), table.column("query_ids").to_pylist()
    for uid, query_ids in zip(uids, ids):
        rejection = over_cap(cap, seed, counts, uid, query_ids)
        if rejection is not None:
            rejected.append(rejection)
        keep.append(rejection is None)
    kept = table.filter(pa.array(keep, pa.bool_()))
    return UnitOutput(kept, rejections_table(rejected), sides={COUNTS: query_counts(kept)})


def read_counts(url: str) -> dict[int, int]:
    with fs.open_input(url) as stream:
        table = pq.read_table(stream, columns=["query_id", "count_before"])
    return dict(zip(table.column("query_id").to_pylist(), table.column("count_before").to_pylist()))


def keep_core(cap: int, seed: int, counts_url: str) -> TableCore:
    """Builds the keep pass's core once per worker: reads the merged counts there."""
    return TableCore(functools.partial(balance_table, cap, seed, read_counts(counts_url)))


#: Unit count tables read before they are folded into the running sum: the merge holds the
#: sum (one row per matched query) and at most this many tables, however many units ran.
MERGE_BATCH = 32


def merge_counts(urls: Sequence[str]) -> dict[int, int]:
    """Sum per-unit count tables (each bounded by the query list) into one count per query.

    Summed in Arrow, a batch of tables at a time: the launcher merges these alone between
    two passes while the workers wait (a dict loop took ~0.5 s of a 3M build's balance
    stage, twice), and folding batches keeps its memory bounded by the query list where
    concatenating every unit's table grew with the input (10M candidates, 200 units: the
    launcher's peak 353 -> 448 MiB). From an object store a batch's tables are read side by
    side (:func:`openwit.fs.map_urls`): ~60,000 units at 3B candidates were read one by one,
    twice."""
    summed: pa.Table | None = None
    pending: list[pa.Table] = []

    def fold() -> pa.Table:
        parts = [summed, *pending] if summed is not None else pending
        grouped = pa.concat_tables(parts).group_by("query_id").aggregate([("count", "sum")])
        pending.clear()
        return pa.table(
            {"query_id": grouped.column("query_id"), "count": grouped.column("count_sum")},
            schema=UNIT_COUNTS_SCHEMA,
        )

    urls = list(urls)
    for start in range(0, len(urls), MERGE_BATCH):
        pending.extend(fs.map_urls(_unit_counts, urls[start : start + MERGE_BATCH]))
        summed = fold()
    if summed is None:
        return {}
    return dict(zip(summed.column("query_id").to_pylist(), summed.column("count").to_pylist()))


def _unit_counts(url: str) -> pa.Table:
    with fs.open_input(url) as stream:
        table = pq.read_table(stream, columns=["query_id", "count"])
    return table.cast(UNIT_COUNTS_SCHEMA)


def side_files(attempt: str, pass_name: str, side: str) -> list[str]:
    prefix = f"{pass_name}.{side}-" if pass_name else f"{side}-"
    return sorted(u for u in fs.list_files(attempt) if fs.basename(u).startswith(prefix))


class BalanceStage(Stage):
    name = STAGE
    version = 2
    config_keys = ("balance",)

    def output_schema(self, config: BuildConfig) -> pa.Schema:
        return OUTPUT_SCHEMA

    def run(self, ctx: StageContext) -> StageResult:
        groups, per_unit = ctx.plan_groups(
            ctx.input_files, self.unit_size(ctx.config), self.min_rows_per_unit
        )
        ctx.start_plan({"groups": [list(vars(g).values()) for g in groups], "unit": per_unit})
        cut = functools.partial(cut_row_group, per_unit)
        units = count_units(groups, per_unit)
        if groups:
            with ctx.new_pipeline(units) as pipeline:
                run_units(
                    pipeline,
                    "Count per query",
                    groups,
                    cut,
                    ctx.run_units_fn(count_core, None, COUNT_PASS),
                )
        before = merge_counts(side_files(ctx.attempt, COUNT_PASS, COUNTS))
        merged = fs.join(ctx.attempt, MERGED_COUNTS_FILE)
        ids = sorted(before)
        fs.write_bytes(
            merged,
            parquet_bytes(
                pa.table(
                    {
                        "query_id": pa.array(ids, pa.int32()),
                        "count_before": pa.array([before[i] for i in ids], pa.int64()),
                    }
                )
            ),
        )
        settings = ctx.config.balance
        if groups:
            core = functools.partial(keep_core, settings.max_per_query, settings.seed, merged)
            with ctx.new_pipeline(units) as pipeline:
                run_units(
                    pipeline, "Keep with p", groups, cut, ctx.run_units_fn(core, OUTPUT_SCHEMA)
                )
        return StageResult(units=units)

    def finalize(self, ctx: StageContext, totals: StageTotals) -> dict[str, Any]:
        before = read_counts(fs.join(ctx.attempt, MERGED_COUNTS_FILE))
        after = merge_counts(side_files(ctx.attempt, "", COUNTS))
        table = query_counts_table(before, after, ctx.config.queries)
        fs.write_bytes(fs.join(ctx.attempt, QUERY_COUNTS_FILE), parquet_bytes(table))
        return head_tail_stats(table, ctx.config.balance.max_per_query)


def query_counts_table(
    before: Mapping[int, int], after: Mapping[int, int], queries_path: str
) -> pa.Table:
    """``query_counts.parquet``: per matched query, sorted by id, with the query text."""
    from openwit.pipeline.match.matcher import read_queries

    try:
        queries = read_queries(queries_path)
    except (OSError, KeyError):  # the counts are still worth writing without the text
        queries = []
    ids = sorted(before)
    columns = {
        "query_id": ids,
        "query": [queries[i] if 0 <= i < len(queries) else None for i in ids],
        "count_before": [before[i] for i in ids],
        "count_after": [after.get(i, 0) for i in ids],
    }
    return pa.table(
        {
            name: pa.array(values, QUERY_COUNTS_SCHEMA.field(name).type)
            for name, values in columns.items()
        },
        schema=QUERY_COUNTS_SCHEMA,
    )


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
