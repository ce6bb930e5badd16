"""Pool readers: Parquet, JSONL and CSV/TSV files of (url, text) rows, local or fsspec.

A record is one row: a Parquet row, a non-blank JSONL line, a CSV data row (the header is
not a record). ``source_offset`` is the row's index in its file. The url and text columns
are configurable (img2dataset's ``url``/``caption`` by default); a missing column is a
config error found before the build starts (:func:`check_columns`).
"""

from __future__ import annotations

import csv
import io
import json
import lzma
import zlib
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

from openwit.errors import ConfigError
from openwit.funnel import Rejection

from .pairs import make_pair, reject

Item = dict[str, Any] | Rejection

#: Parquet rows read per batch (bounded memory whatever the row-group size).
PARQUET_BATCH_ROWS = 8192
#: CSV fields longer than this are a malformed row, not a crash (csv's default is 128 KiB).
CSV_MAX_FIELD_CHARS = 1_000_000
#: A UTF-8 byte order mark, which editors on Windows put at the start of text files.
BOM = b"\xef\xbb\xbf"


def _damage_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError, EOFError, zlib.error, lzma.LZMAError]
    try:
        import zstandard

        errors.append(zstandard.ZstdError)
    except ImportError:  # fsspec reads .zst only with zstandard (or Python 3.14's zstd)
        pass
    return tuple(errors)


#: What reading a damaged file raises part-way: a truncated gzip, bz2, xz or zstd stream
#: (``EOFError``), a file named ``.gz`` that is not gzip (``BadGzipFile``, an OSError),
#: corrupt compressed data. The rest of the file becomes one ``unreadable_input``
#: rejection, as in a damaged crawl file: the rows before it are kept.
DAMAGED_INPUT = _damage_errors()


def unreadable(source: str, offset: int, exc: BaseException) -> Rejection:
    return reject("unreadable_input", source, offset, f"{type(exc).__name__}: {exc}")


def _pair_from_values(url: Any, text: Any, source: str, offset: int) -> Item:
    if url is not None and not isinstance(url, str):
        return reject("malformed_record", source, offset, f"url is {type(url).__name__}")
    if text is not None and not isinstance(text, str):
        return reject("malformed_record", source, offset, f"text is {type(text).__name__}")
    return make_pair(url, text, source, offset)


def read_parquet_rows(
    stream: BinaryIO,
    source: str,
    url_column: str,
    text_column: str,
    row_groups: Sequence[int],
    stats: dict[str, int],
) -> Iterator[Item]:
    """Rows of the given row groups of a Parquet file."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(stream)
    metadata = parquet.metadata
    starts = [0]
    for index in range(metadata.num_row_groups):
        starts.append(starts[-1] + metadata.row_group(index).num_rows)
    for group in row_groups:
        offset = starts[group]
        batches = parquet.iter_batches(
            batch_size=PARQUET_BATCH_ROWS, row_groups=[group], columns=[url_column, text_column]
        )
        for batch in batches:
            urls = batch.column(url_column).to_pylist()
            texts = batch.column(text_column).to_pylist()
            for url, text in zip(urls, texts):
                yield _pair_from_values(url, text, source, offset)
                offset += 1
        stats["rows"] = stats.get("rows", 0) + metadata.row_group(group).num_rows


def read_jsonl(
    stream: BinaryIO, source: str, url_column: str, text_column: str, stats: dict[str, int]
) -> Iterator[Item]:
    """Non-blank lines of a JSONL file, each a JSON object (a BOM before the first is
    skipped)."""
    offset = 0
    try:
        for index, raw in enumerate(stream):
            if index == 0:
                raw = raw.removeprefix(BOM)
            if not raw.strip():
                continue
            line = raw.decode("utf-8", "replace")
            try:
                item = json.loads(line)
            except ValueError as exc:
                yield reject("malformed_record", source, offset, f"invalid JSON: {exc}")
            else:
                if isinstance(item, dict):
                    url, text = item.get(url_column), item.get(text_column)
                    yield _pair_from_values(url, text, source, offset)
                else:
                    yield reject("malformed_record", source, offset, "line is not a JSON object")
            offset += 1
    except DAMAGED_INPUT as exc:
        yield unreadable(source, offset, exc)
    stats["rows"] = stats.get("rows", 0) + offset


def _csv_reader(stream: BinaryIO, delimiter: str) -> Any:
    csv.field_size_limit(CSV_MAX_FIELD_CHARS)
    # utf-8-sig: a BOM at the start is skipped, not read into the first column's name
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline="")
    return csv.reader(text, delimiter=delimiter)


def read_csv(
    stream: BinaryIO,
    source: str,
    url_column: str,
    text_column: str,
    delimiter: str,
    stats: dict[str, int],
) -> Iterator[Item]:
    """Data rows of a CSV/TSV file with a header row naming the columns."""
    reader = _csv_reader(stream, delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    except DAMAGED_INPUT as exc:
        yield unreadable(source, 0, exc)
        return
    url_index, text_index = header.index(url_column), header.index(text_column)
    offset = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. a field over the size limit; the reader goes on
            yield reject("malformed_record", source, offset, f"CSV: {exc}")
            offset += 1
            continue
        except DAMAGED_INPUT as exc:
            yield unreadable(source, offset, exc)
            break
        if not row:
            continue  # a blank line is not a row
        url = row[url_index] if url_index < len(row) else None
        text = row[text_index] if text_index < len(row) else None
        yield make_pair(url, text, source, offset)
        offset += 1
    stats["rows"] = stats.get("rows", 0) + offset


def check_columns(
    columns: Sequence[str], url_column: str, text_column: str, source: str, where: str
) -> None:
    missing = [c for c in (url_column, text_column) if c not in columns]
    if missing:
        shown = ", ".join(repr(c) for c in columns[:20])
        raise ConfigError(
            f"{where}: column {missing[0]!r} not in {source} (columns: {shown}); "
            f"set url_column/text_column"
        )


def check_parquet_columns(
    schema: Any, url_column: str, text_column: str, source: str, where: str
) -> None:
    """The url and text columns of a Parquet pool exist (as top-level columns: a nested
    column's leaves, such as a list's ``element``, are not columns) and hold text."""
    import pyarrow as pa

    check_columns(schema.names, url_column, text_column, source, where)
    for name in dict.fromkeys((url_column, text_column)):
        kind = schema.field(name).type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if not (
            pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)
        ):
            raise ConfigError(
                f"{where}: column {name!r} of {source} is {kind}, not text; "
                "set url_column/text_column to a string column"
            )


def csv_header(stream: BinaryIO, delimiter: str) -> list[str]:
    """The header row; empty for an empty file, or one too damaged to read (the reader
    then rejects it as ``unreadable_input``)."""
    try:
        return next(_csv_reader(stream, delimiter))
    except (StopIteration, *DAMAGED_INPUT):
        return []
