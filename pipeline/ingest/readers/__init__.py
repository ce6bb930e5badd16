"""Readers of the build's inputs: crawl files (WAT, WARC) and pools (Parquet, JSONL, CSV/TSV).

:func:`plan_read_units` splits the configured inputs into *read units* (a whole file, or some
row groups of a Parquet file) that workers read in parallel; :func:`read_unit` yields, for
each record of a unit, one candidate pair or one rejection. Formats come from the file name
(``.warc.wat.gz``, ``.warc.gz``, ``.parquet``, ``.jsonl``, ``.csv``, ``.tsv``, each
optionally compressed) unless the input sets ``format:``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from openwit.config import BuildConfig
from openwit.errors import ConfigError
from openwit.funnel import Rejection

#: Row groups of a Parquet pool read as one unit: enough rows to amortise the start, few
#: enough that a worker's pairs of one unit stay small (they are Python dicts until the unit
#: is written: 200,000 rows made a worker peak at 870 MB where 50,000 keep it near 580).
PARQUET_ROWS_PER_UNIT = 50_000

_COMPRESSION = re.compile(r"\.(gz|bz2|xz|zst|zstd|lz4)$", re.IGNORECASE)
_EXTENSIONS: tuple[tuple[str, str], ...] = (
    (".warc.wat", "wat"),
    (".wat", "wat"),
    (".warc", "warc"),
    (".arc", "warc"),
    (".parquet", "parquet"),
    (".pq", "parquet"),
    (".jsonl", "jsonl"),
    (".ndjson", "jsonl"),
    (".json", "jsonl"),
    (".csv", "csv"),
    (".tsv", "tsv"),
    (".tab", "tsv"),
)


@dataclass(frozen=True)
class ReadUnit:
    """One piece of input read by one worker: a file, or some row groups of a Parquet file."""

    path: str
    format: str
    url_column: str = "url"
    text_column: str = "caption"
    title_fallback: bool = True
    row_groups: tuple[int, ...] = ()  # parquet only: the row groups this unit reads
    part: int = 0  # index of this unit among the units of its file


def detect_format(path: str) -> str | None:
    """The input format a file name says, or None."""
    name = path.rsplit("/", 1)[-1].lower()
    name = _COMPRESSION.sub("", name)
    for suffix, fmt in _EXTENSIONS:
        if name.endswith(suffix):
            return fmt
    return None


def _open(path: str, compressed_by_name: bool = True) -> Any:
    """A binary file object for a local path or a URL (:mod:`openwit.fs`).

    Crawl files are handed to FastWARC undecompressed (it reads gzip members itself);
    pools are decompressed by name (``.jsonl.gz``).
    """
    from openwit import fs

    stream = fs.open_input(path)
    if not compressed_by_name:
        return stream
    from fsspec.compression import compr
    from fsspec.utils import infer_compression

    codec = infer_compression(path)
    if codec is None:
        return stream
    return _Decompressed(compr[codec](stream, mode="rb"), stream)


class _Decompressed:
    """A decompressing reader that also closes the stream under it."""

    def __init__(self, reader: Any, raw: Any) -> None:
        self._reader, self._raw = reader, raw

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)

    def __iter__(self) -> Any:
        return iter(self._reader)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._reader.close()
        finally:
            self._raw.close()


def plan_read_units(config: BuildConfig) -> list[ReadUnit]:
    """The read units of every configured input, in a stable order.

    Checks what can be checked before the build starts: a format for every file and, for
    pools, that the url and text columns exist. Raises :class:`ConfigError` naming the
    input otherwise.
    """
    from openwit.inputs import expand_input_paths

    units: list[ReadUnit] = []
    for index, (spec, paths) in enumerate(zip(config.inputs, expand_input_paths(config))):
        where = f"inputs[{index}]"
        for path in paths:
            fmt = spec.format or detect_format(path)
            if fmt is None:
                raise ConfigError(
                    f"{where}: cannot tell the format of {path} from its name; "
                    "set format: (wat, warc, parquet, jsonl, csv, tsv)"
                )
            base = ReadUnit(path, fmt, spec.url_column, spec.text_column, spec.title_fallback)
            if fmt == "parquet":
                units.extend(_parquet_units(base, where))
            else:
                if fmt in ("csv", "tsv"):
                    _check_csv_header(base, where)
                units.append(base)
    return units


def _parquet_units(base: ReadUnit, where: str) -> list[ReadUnit]:
    import pyarrow.parquet as pq

    from .pool import check_parquet_columns

    try:
        with _open(base.path, compressed_by_name=False) as handle:
            parquet = pq.ParquetFile(handle)
            metadata, schema = parquet.metadata, parquet.schema_arrow
    except Exception as exc:  # not a Parquet file at all
        raise ConfigError(f"{where}: cannot read {base.path} as Parquet: {exc}") from None
    check_parquet_columns(schema, base.url_column, base.text_column, base.path, where)
    units, group, rows = [], [], 0
    for index in range(metadata.num_row_groups):
        group.append(index)
        rows += metadata.row_group(index).num_rows
        if rows >= PARQUET_ROWS_PER_UNIT:
            units.append(tuple(group))
            group, rows = [], 0
    if group or not units:
        units.append(tuple(group))
    return [
        ReadUnit(**{**base.__dict__, "row_groups": groups, "part": part})
        for part, groups in enumerate(units)
    ]


def _check_csv_header(unit: ReadUnit, where: str) -> None:
    from .pool import check_columns, csv_header

    with _open(unit.path) as handle:
        header = csv_header(handle, "\t" if unit.format == "tsv" else ",")
    if header:
        check_columns(header, unit.url_column, unit.text_column, unit.path, where)


def read_unit(unit: ReadUnit, stats: dict[str, int]) -> Iterator[dict[str, Any] | Rejection]:
    """One item (pair or rejection) per record of ``unit``; scan counts go into ``stats``."""
    from . import pool, warc

    source = unit.path
    if unit.format in ("wat", "warc"):
        read = warc.read_wat if unit.format == "wat" else warc.read_warc
        with _open(unit.path, compressed_by_name=False) as handle:
            yield from read(handle, source, unit.title_fallback, stats)
    elif unit.format == "parquet":
        with _open(unit.path, compressed_by_name=False) as handle:
            yield from pool.read_parquet_rows(
                handle, source, unit.url_column, unit.text_column, unit.row_groups, stats
            )
    elif unit.format == "jsonl":
        with _open(unit.path) as handle:
            yield from pool.read_jsonl(handle, source, unit.url_column, unit.text_column, stats)
    elif unit.format in ("csv", "tsv"):
        delimiter = "\t" if unit.format == "tsv" else ","
        with _open(unit.path) as handle:
            yield from pool.read_csv(
                handle, source, unit.url_column, unit.text_column, delimiter, stats
            )
    else:  # the config validator only lets known formats through
        raise ValueError(f"unknown input format {unit.format!r}")
