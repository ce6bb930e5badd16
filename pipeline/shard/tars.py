"""Writing one webdataset shard: ``NNNNN.tar`` and its Parquet index, each atomically.

The index is written after the tar and records the digest of the samples it was written
from, so a rerun can tell a complete shard from a stale one (and keep it). Tar member names
are built only from the 9-digit key and a fixed extension, and checked against a pattern
before they are written: nothing from a URL or a caption reaches a member name. Tar headers
carry fixed times and owners, so the same samples give the same bytes. Paths are URLs
(:mod:`openwit.fs`): a shard directory may be in a bucket.

The tar is Python's ``tarfile`` writing a stream (USTAR headers: mode 0444, owner 0, empty
owner names, mtime 0). A hand-written USTAR writer was ~4x as fast, but that saved ~3% of
the build's CPU per sample (docs/decisions.md; ``bench/bench_libs_tar.py``).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from openwit import fs
from openwit.schemas import candidate_schema

SHARD_DIGITS = 5
#: The per-shard index: every candidate column (the image bytes are in the tar).
INDEX_SCHEMA = candidate_schema("shard")
DIGEST_KEY = b"openwit.shard_digest"
MEMBER_NAME = re.compile(r"^[0-9]{9}\.(jpg|webp|png|txt|json)$")
SHARD_FILE = re.compile(r"^([0-9]{5,})\.(tar|parquet)$")


class UnsafeMemberName(ValueError):
    pass


@dataclass(frozen=True)
class ShardInfo:
    index: int
    samples: int
    tar_bytes: int
    index_bytes: int
    written: bool  # False when a complete shard was found and kept


def shard_name(index: int) -> str:
    return f"{index:0{SHARD_DIGITS}d}"


def image_extension(data: bytes | None) -> str | None:
    """The file extension of encoded image bytes, from their magic number."""
    if not data:
        return None
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    return None


def member_name(key: str, extension: str) -> str:
    name = f"{key}.{extension}"
    if not MEMBER_NAME.match(name):
        raise UnsafeMemberName(f"refusing tar member name {name!r}")
    return name


def sample_order(record: dict[str, Any]) -> tuple[str, str, int]:
    """The total order of samples: by uid (ties, from repeated input rows, by origin)."""
    return (record["uid"], record.get("source") or "", record.get("source_offset") or 0)


def shard_digest(records: Iterable[dict[str, Any]]) -> str:
    """Identifies the samples of a shard (in order), to tell a complete shard from a stale one."""
    digest = hashlib.sha256()
    for record in records:
        uid, source, offset = sample_order(record)
        digest.update(f"{uid}\t{source}\t{offset}\t{record.get('sha256')}\n".encode())
    return digest.hexdigest()


def sample_metadata(record: dict[str, Any]) -> dict[str, Any]:
    """KEY.json: img2dataset's fields, plus uid and the perceptual hashes (hex)."""
    meta = {
        "key": record["key"],
        "uid": record["uid"],
        "url": record["url"],
        "caption": record.get("text") or "",
        "width": record.get("width"),
        "height": record.get("height"),
        "original_width": record.get("original_width"),
        "original_height": record.get("original_height"),
        "sha256": record.get("sha256"),
    }
    for name in ("phash", "dhash"):
        if record.get(name) is not None:
            meta[name] = f"{record[name]:016x}"
    return meta


def read_digest(index_url: str) -> str | None:
    try:
        with fs.open_input(index_url) as stream:
            metadata = pq.read_schema(stream).metadata or {}
    except (OSError, pa.ArrowInvalid):
        return None
    value = metadata.get(DIGEST_KEY)
    return value.decode() if value else None


def shard_urls(shards_dir: str, index: int) -> tuple[str, str]:
    name = shard_name(index)
    return fs.join(shards_dir, f"{name}.tar"), fs.join(shards_dir, f"{name}.parquet")


class _Counted:
    """A write-only stream that counts the bytes written through it."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return self.stream.write(data)


def write_tar(stream: IO[bytes], members: Iterable[tuple[str, bytes]]) -> int:
    """Write a tar of ``(name, bytes)`` members to ``stream``; returns its size in bytes.

    Every name is checked against :data:`MEMBER_NAME` before anything of its member is
    written; headers are fixed (mode 0444, owner 0, mtime 0), so equal members give equal
    bytes.
    """
    counted = _Counted(stream)
    with tarfile.open(fileobj=counted, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            if not MEMBER_NAME.match(name):
                raise UnsafeMemberName(f"refusing tar member name {name!r}")
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o444, 0
            info.uname = info.gname = ""  # uid and gid are 0 already
            tar.addfile(info, io.BytesIO(data))
    return counted.size


def _members(records: list[dict[str, Any]]) -> Iterable[tuple[str, bytes]]:
    for record in records:
        key, data = record["key"], record["image"]
        yield member_name(key, image_extension(data) or "jpg"), data
        yield member_name(key, "txt"), (record.get("text") or "").encode("utf-8")
        meta = json.dumps(sample_metadata(record), ensure_ascii=False, sort_keys=True)
        yield member_name(key, "json"), meta.encode("utf-8")


def write_shard(
    shards_dir: str, index: int, records: list[dict[str, Any]], sizes: dict[str, int]
) -> ShardInfo:
    """Write shard ``index`` from ``records`` (ordered, keys set) unless the files there are
    already this shard's (``sizes``: the files now in ``shards_dir``, by URL)."""
    tar_url, index_url = shard_urls(shards_dir, index)
    digest = shard_digest(records)
    if tar_url in sizes and index_url in sizes and read_digest(index_url) == digest:
        return ShardInfo(index, len(records), sizes[tar_url], sizes[index_url], written=False)
    with fs.open_output(tar_url) as stream:
        tar_bytes = write_tar(stream, _members(records))
    names = set(INDEX_SCHEMA.names)  # a schema's .names is a new list at every call
    rows = [{k: v for k, v in r.items() if k in names} for r in records]
    table = pa.Table.from_pylist(rows, schema=INDEX_SCHEMA)
    table = table.replace_schema_metadata({DIGEST_KEY: digest.encode()})
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    fs.write_bytes(index_url, sink.getvalue())  # last: the shard is complete
    return ShardInfo(index, len(records), tar_bytes, len(sink.getvalue()), written=True)


def shard_files(listing: Iterable[str]) -> dict[int, list[str]]:
    """Shard files among ``listing`` (URLs) by shard index (tar and index)."""
    found: dict[int, list[str]] = {}
    for url in listing:
        match = SHARD_FILE.match(fs.basename(url))
        if match:
            found.setdefault(int(match.group(1)), []).append(url)
    return found
