"""Arrow schemas of the records that flow between stages, defined once (CONTRACTS.md).

A candidate pair grows column by column as the build runs: each column names the stage that
sets it, and :func:`candidate_schema` gives the schema of a stage's output.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache

import pyarrow as pa

# Re-exported: the stage names are part of the schemas' vocabulary (set_by).
from openwit.stage_names import BUILD_STAGES, stage_index  # noqa: F401

UID_LENGTH = 32
KEY_DIGITS = 9


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    set_by: str  # the build stage that adds this column
    doc: str
    dropped_by: str | None = None  # the build stage whose output no longer has it


CANDIDATE_COLUMNS: tuple[Column, ...] = (
    Column("uid", pa.string(), "ingest", "hex sha256 of url + TAB + text, first 32 chars"),
    Column("url", pa.string(), "ingest", "absolute image URL"),
    Column("text", pa.string(), "ingest", "caption / alt text"),
    Column("source", pa.string(), "ingest", "input file the record came from"),
    Column("source_offset", pa.int64(), "ingest", "record index inside that file"),
    Column("lang", pa.string(), "text", "detected language code"),
    Column("lang_score", pa.float32(), "text", "language-ID confidence"),
    Column("query_ids", pa.list_(pa.int32()), "match", "row numbers in queries.parquet"),
    Column("width", pa.int32(), "download", "stored image width"),
    Column("height", pa.int32(), "download", "stored image height"),
    Column("original_width", pa.int32(), "download", "width before resizing"),
    Column("original_height", pa.int32(), "download", "height before resizing"),
    Column("sha256", pa.string(), "download", "hex sha256 of the stored image bytes"),
    Column("image", pa.binary(), "download", "stored image bytes", dropped_by="image"),
    Column("phash", pa.uint64(), "download", "imagehash pHash, 8x8, of the stored bytes"),
    Column("dhash", pa.uint64(), "download", "imagehash dHash, 8x8, of the stored bytes"),
    Column(
        "image_file",
        pa.string(),
        "image",
        "the download stage's part file that holds the stored bytes",
        dropped_by="shard",
    ),
    Column("image_row", pa.int32(), "image", "the row of the bytes in that file", "shard"),
    Column("key", pa.string(), "shard", "9-digit zero-padded sample key"),
)

REJECTION_SCHEMA = pa.schema(
    [
        pa.field("uid", pa.string()),
        pa.field("stage", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("detail", pa.string()),
    ]
)

QUERY_SCHEMA = pa.schema(
    [
        pa.field("query", pa.string()),
        pa.field("source", pa.string()),  # unigram | bigram | title | wordnet
        pa.field("count", pa.int64()),
        pa.field("score", pa.float64()),
    ]
)

QUERY_SOURCES: tuple[str, ...] = ("unigram", "bigram", "title", "wordnet")


@cache
def candidate_schema(through_stage: str) -> pa.Schema:
    """Schema of a candidate record after ``through_stage`` has run."""
    last = stage_index(through_stage)
    return pa.schema(
        [
            pa.field(c.name, c.type)
            for c in CANDIDATE_COLUMNS
            if stage_index(c.set_by) <= last
            and (c.dropped_by is None or last < stage_index(c.dropped_by))
        ]
    )


def uid_for(url: str, text: str) -> str:
    """The record id of a pair: hex sha256 of ``url + "\\t" + text``, first 32 chars."""
    digest = hashlib.sha256(f"{url}\t{text}".encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:UID_LENGTH]


def sample_key(index: int) -> str:
    """The webdataset key of the ``index``-th sample of a build."""
    if not 0 <= index < 10**KEY_DIGITS:
        raise ValueError(f"sample index {index} does not fit {KEY_DIGITS} digits")
    return f"{index:0{KEY_DIGITS}d}"
