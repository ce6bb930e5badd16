"""Terminal tables of the query builder: the build summary and ``openwit queries show``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openwit.console import print_table, stdout
from openwit.errors import UserError
from openwit.queries.build import QueryBuildResult
from openwit.schemas import QUERY_SCHEMA, QUERY_SOURCES


def print_build_summary(result: QueryBuildResult) -> None:
    rows = [
        [
            s.source,
            s.candidates,
            s.duplicates,
            s.invalid,
            s.capped,
            s.kept,
            "" if s.min_count is None else s.min_count,
            "" if s.max_count is None else s.max_count,
        ]
        for s in result.sources
    ]
    total = sum(s.kept for s in result.sources)
    rows.append(["total", sum(s.candidates for s in result.sources), "", "", "", total, "", ""])
    print_table(
        "openwit queries build",
        ["source", "candidates", "duplicates", "invalid", "capped", "kept", "min", "max"],
        rows,
    )
    print_table("inputs", ["what", "count"], [[k, v] for k, v in result.inputs.items()])
    for note in result.notes:
        stdout.print(f"note: {note}", highlight=False)
    stdout.print(f"wrote {result.rows:,} queries to {result.out}", highlight=False)


def read_query_table(path: str | Path) -> Any:
    """A ``queries.parquet`` as an Arrow table; exit 2 when it is not one."""
    import pyarrow.parquet as pq

    from openwit import fs

    path = str(path)  # a path or a URL
    if not fs.is_file(path):
        raise UserError(f"query list not found: {path}")
    try:
        with fs.open_input(path) as stream:
            table = pq.read_table(stream)
    except Exception as exc:
        raise UserError(f"{path}: not a Parquet file ({exc})") from None
    if not table.schema.equals(QUERY_SCHEMA):
        raise UserError(f"{path}: not a query list (columns {', '.join(table.column_names)})")
    return table


def show_queries(path: str | Path, limit: int = 10, source: str | None = None) -> None:
    """Per-source counts and the first ``limit`` queries of each source, with their ids."""
    if source is not None and source not in QUERY_SOURCES:
        raise UserError(f"unknown source {source!r}; sources are: {', '.join(QUERY_SOURCES)}")
    table = read_query_table(path)
    records = table.to_pylist()
    by_source: dict[str, list[tuple[int, dict[str, Any]]]] = {s: [] for s in QUERY_SOURCES}
    for index, record in enumerate(records):
        by_source.setdefault(record["source"], []).append((index, record))
    summary = []
    for name, items in by_source.items():
        counts = [r["count"] for _, r in items]
        first = f"{items[0][0]:,}-{items[-1][0]:,}" if items else ""
        summary.append([name, len(items), first, min(counts, default=""), max(counts, default="")])
    print_table(
        f"{path}: {len(records):,} queries",
        ["source", "queries", "ids", "min count", "max count"],
        summary,
    )
    for name in [source] if source else QUERY_SOURCES:
        items = by_source.get(name, [])[:limit]
        if items:
            print_table(
                f"{name}: first {len(items)}",
                ["id", "query", "count", "score"],
                [[i, r["query"], r["count"], r["score"]] for i, r in items],
            )
