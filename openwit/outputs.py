"""What a stage's core returns for one work unit, and how the framework writes and counts it.

A core turns a unit's input into a :class:`UnitOutput`: the kept records (for the next
stage), the rejections, named side tables, small stats, and -- for a stage whose input is
not the previous stage's records -- how many records it read. :func:`write_unit` writes
them into the stage's attempt directory under the unit's number, side tables and
rejections first and the ``done`` marker last, so a unit is complete exactly when its
marker exists; a retried unit writes the same files again. The runner never reads the data
to count it: :func:`collect_totals` sums the markers.

Files of unit ``U`` of a pass named ``P`` (the last pass of a stage has the empty name)::

    [P.]part-U.parquet        kept records (absent when none were kept)
    [P.]rejections-U.parquet  rejections (absent when none)
    [P.]SIDE-U.parquet        side tables (SIDE is the stage's name for them)
    [P.]done-U.json           {"in", "out", "rejected": {reason: n}, "stats", "files"}
"""

from __future__ import annotations

import io
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from openwit import fs
from openwit.funnel import Rejection
from openwit.schemas import REJECTION_SCHEMA
from openwit.units import WorkUnit

PART = "part"
#: Rows per row group of a stage's files, at most. A unit's reader reads whole row groups
#: (about 2.5x a group's Arrow size while decoding), so an ingest bucket of 100,000 pairs
#: written as one group cost each text worker 40 MB beyond what its 50,000-row unit needs.
#: A group larger than this is written as even parts (100,000 rows: 2 of 50,000). The
#: default unit is 50,000 rows, so units are not cut smaller.
MAX_ROWS_PER_ROW_GROUP = 50_000
REJECTIONS = "rejections"
DONE = "done"
_DONE_NAME = re.compile(r"(?:^|/)(?:[a-z0-9_]+\.)?done-\d+\.json$")


@dataclass
class UnitOutput:
    """One unit's results. ``sides`` values are a table, or a list of tables written as
    separate row groups of one file. ``published`` lists files the core wrote outside the
    attempt directory (shards), relative to the build directory, with their sizes.
    ``n_out`` counts kept records the core published itself (``kept`` is then None)."""

    kept: pa.Table | None = None
    rejected: pa.Table | None = None
    sides: dict[str, pa.Table | list[pa.Table]] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)
    n_in: int | None = None
    n_out: int | None = None
    published: dict[str, int] = field(default_factory=dict)


def rejections_table(rejections: Sequence[Rejection | Mapping[str, Any]]) -> pa.Table:
    rows = [r.as_record() if isinstance(r, Rejection) else r for r in rejections]
    return pa.Table.from_pylist(rows, schema=REJECTION_SCHEMA)


def reasons_of(table: pa.Table | None) -> dict[str, int]:
    if table is None or table.num_rows == 0:
        return {}
    counts = pc.value_counts(table.column("reason"))
    return {str(item["values"]): int(item["counts"]) for item in counts.to_pylist()}


def unit_file(attempt: str, pass_name: str, kind: str, unit: WorkUnit | int, ext: str) -> str:
    index = unit if isinstance(unit, int) else unit.index
    prefix = f"{pass_name}." if pass_name else ""
    return fs.join(attempt, f"{prefix}{kind}-{index:08d}.{ext}")


def done_marker(attempt: str, pass_name: str, unit: WorkUnit | int) -> str:
    return unit_file(attempt, pass_name, DONE, unit, "json")


def statistics_columns(schema: pa.Schema) -> list[str]:
    """The columns whose min and max a footer keeps: the uid (ingest's buckets pick row
    groups by it) and the fixed-width columns. Not the other strings and bytes: a caption's
    or a url's min and max cost more footer than they are worth, and every reader of a row
    group parses the footer again (pass 2 of ingest reads 200 files' footers a bucket)."""
    return [
        f.name
        for f in schema
        if f.name == "uid" or not (pa.types.is_string(f.type) or pa.types.is_binary(f.type))
    ]


def parquet_bytes(table: pa.Table | list[pa.Table], schema: pa.Schema | None = None) -> bytes:
    """A table (or row groups) as Parquet: zstd, except columns of image bytes (JPEG and
    WebP do not compress; zstd on them would only cost CPU)."""
    groups = table if isinstance(table, list) else [table]
    if schema is not None:
        groups = [g.select(schema.names).cast(schema) for g in groups]
    schema = groups[0].schema
    compression = {f.name: "none" if f.name == "image" else "zstd" for f in schema}
    sink = io.BytesIO()
    with pq.ParquetWriter(
        sink, schema, compression=compression, write_statistics=statistics_columns(schema)
    ) as writer:
        for group in groups:
            pieces = max(1, math.ceil(group.num_rows / MAX_ROWS_PER_ROW_GROUP))
            writer.write_table(group, row_group_size=max(1, math.ceil(group.num_rows / pieces)))
    return sink.getvalue()


def write_unit(
    attempt: str,
    pass_name: str,
    unit: WorkUnit,
    output: UnitOutput,
    schema: pa.Schema | None,
) -> dict[str, Any]:
    """Write one unit's files (marker last); returns the marker's content."""
    files: dict[str, int] = {}

    def put(kind: str, table: pa.Table | list[pa.Table], table_schema: pa.Schema | None) -> None:
        url = unit_file(attempt, pass_name, kind, unit, "parquet")
        data = parquet_bytes(table, table_schema)
        fs.write_bytes(url, data)
        files[fs.basename(url)] = len(data)

    for name, table in sorted(output.sides.items()):
        if _rows(table):
            put(name, table, None)
    if output.rejected is not None and output.rejected.num_rows:
        put(REJECTIONS, output.rejected, REJECTION_SCHEMA)
    n_out = output.n_out
    if output.kept is not None:
        n_out = output.kept.num_rows
        if n_out:
            put(PART, output.kept, schema)
    marker = {
        "unit": unit.index,
        "in": output.n_in,
        "out": n_out or 0,
        "rejected": reasons_of(output.rejected),
        "stats": output.stats,
        "files": files,
        "published": output.published,
    }
    fs.write_json(done_marker(attempt, pass_name, unit), marker, skip_if_same=False)
    return marker


def _rows(table: pa.Table | list[pa.Table]) -> int:
    groups = table if isinstance(table, list) else [table]
    return sum(g.num_rows for g in groups)


@dataclass
class StageTotals:
    """The sum of a stage's unit markers."""

    units: int = 0
    n_in: int | None = None
    n_out: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    stats: dict[str, float] = field(default_factory=dict)
    published: dict[str, int] = field(default_factory=dict)

    def add(self, marker: Mapping[str, Any], final: bool) -> None:
        self.units += 1
        if marker.get("in") is not None:
            self.n_in = (self.n_in or 0) + int(marker["in"])
        if final:
            self.n_out += int(marker.get("out") or 0)
        self.rejected.update(marker.get("rejected") or {})
        for key, value in (marker.get("stats") or {}).items():
            self.stats[key] = round(self.stats.get(key, 0) + value, 6)
        self.published.update(marker.get("published") or {})


def is_done_marker(url: str) -> bool:
    return bool(_DONE_NAME.search(url))


def read_markers(urls: Iterable[str]) -> list[tuple[str, dict[str, Any]]]:
    """``(url, content)`` of done markers, read side by side when remote."""
    urls = sorted(urls)
    return list(zip(urls, fs.map_urls(fs.read_json, urls)))


def collect_totals(listing: Iterable[str]) -> StageTotals:
    """Sum every pass's done markers among the listed files of an attempt: ``in`` wherever a
    pass declares it, ``out`` from the last pass (unprefixed names), all rejections."""
    totals = StageTotals()
    for url, marker in read_markers(u for u in listing if is_done_marker(u)):
        final = fs.basename(url).startswith(f"{DONE}-")
        totals.add(marker, final)
    return totals
