"""Writing one webdataset shard: ``NNNNN.tar``, its Parquet index and its stats, atomically.

A shard is complete when its tar and its index exist and the index records the digest of
the samples it was written from; the index is written last, so a shard killed halfway is
never taken for complete. Tar member names are built only from the 9-digit key and a
fixed extension, and checked against a pattern before they are written: nothing from a
URL or a caption reaches a member name. Tar headers carry fixed times and owners, so the
same samples give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from openwit.io import atomic_path, atomic_write_json
from openwit.schemas import candidate_schema

SHARD_DIGITS = 5
_BLOCK = 512
_RECORD = 20 * _BLOCK  # tar's record size: archives end on a multiple of it
#: mode 0444, uid 0, gid 0, size (filled per member), mtime 0
_FIXED_FIELDS = b"0000444\x00" + b"0000000\x00" * 2 + b"\x00" * 12 + b"00000000000\x00"
#: The per-shard index: every candidate column except the image bytes (they are in the tar).
INDEX_SCHEMA = pa.schema([f for f in candidate_schema("shard") if f.name != "image"])
DIGEST_KEY = b"openwit.shard_digest"
MEMBER_NAME = re.compile(r"^[0-9]{9}\.(jpg|webp|png|txt|json)$")
SHARD_FILE = re.compile(r"^([0-9]{5,})\.(tar|parquet)$|^([0-9]{5,})_stats\.json$")


class UnsafeMemberName(ValueError):
    pass


@dataclass(frozen=True)
class ShardInfo:
    index: int
    samples: int
    tar_bytes: int
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


def read_digest(index_path: Path) -> str | None:
    try:
        metadata = pq.read_schema(index_path).metadata or {}
    except (OSError, pa.ArrowInvalid):
        return None
    value = metadata.get(DIGEST_KEY)
    return value.decode() if value else None


def shard_complete(shards_dir: Path, index: int, digest: str) -> bool:
    name = shard_name(index)
    tar_ok = (shards_dir / f"{name}.tar").is_file()
    return tar_ok and read_digest(shards_dir / f"{name}.parquet") == digest


def _header_template() -> tuple[bytes, int]:
    header = bytearray(_BLOCK)
    header[100:148] = _FIXED_FIELDS
    header[148:156] = b"        "  # the checksum counts its own field as spaces
    header[156] = ord("0")  # regular file
    header[257:265] = b"ustar\x0000"
    return bytes(header), sum(header)


def ustar_header(name: str, size: int) -> bytes:
    """A 512-byte USTAR header for a regular file, as ``tarfile`` writes it with our fixed
    fields (mode 0444, owner 0, mtime 0); built from a template, ~20x cheaper."""
    if not MEMBER_NAME.match(name):
        raise UnsafeMemberName(f"refusing tar member name {name!r}")
    encoded, size_field = name.encode("ascii"), b"%011o\x00" % size
    header = bytearray(_TEMPLATE)
    header[0 : len(encoded)] = encoded
    header[124:136] = size_field
    checksum = _TEMPLATE_SUM + sum(encoded) + sum(size_field)
    header[148:155] = b"%06o\x00" % checksum
    return bytes(header)


_TEMPLATE, _TEMPLATE_SUM = _header_template()


def write_tar(path: Path, members: Iterable[tuple[str, bytes]]) -> int:
    """Write a tar of ``(name, bytes)`` members atomically; returns its size in bytes.

    The output is byte for byte what ``tarfile`` writes in USTAR format (a test checks).
    """
    offset = 0
    with atomic_path(path) as tmp:
        with open(tmp, "wb", buffering=1 << 20) as handle:
            for name, data in members:
                handle.write(ustar_header(name, len(data)))
                handle.write(data)
                padding = -len(data) % _BLOCK
                handle.write(b"\x00" * padding)
                offset += _BLOCK + len(data) + padding
            end = 2 * _BLOCK  # end-of-archive marker, then fill the last record
            end += -(offset + end) % _RECORD
            handle.write(b"\x00" * end)
            offset += end
    return offset


def _members(records: list[dict[str, Any]]) -> Iterable[tuple[str, bytes]]:
    for record in records:
        key, data = record["key"], record["image"]
        yield member_name(key, image_extension(data) or "jpg"), data
        yield member_name(key, "txt"), (record.get("text") or "").encode("utf-8")
        meta = json.dumps(sample_metadata(record), ensure_ascii=False, sort_keys=True)
        yield member_name(key, "json"), meta.encode("utf-8")


def write_shard(shards_dir: Path, index: int, records: list[dict[str, Any]]) -> ShardInfo:
    """Write shard ``index`` from ``records`` (sorted, keys set) unless it is already complete."""
    name = shard_name(index)
    digest = shard_digest(records)
    if shard_complete(shards_dir, index, digest):
        size = (shards_dir / f"{name}.tar").stat().st_size
        return ShardInfo(index, len(records), size, written=False)
    tar_bytes = write_tar(shards_dir / f"{name}.tar", _members(records))
    widths = [r.get("width") or 0 for r in records]
    heights = [r.get("height") or 0 for r in records]
    stats = {
        "shard": name,
        "count": len(records),
        "tar_bytes": tar_bytes,
        "image_bytes": sum(len(r["image"]) for r in records),
        "mean_width": round(sum(widths) / len(records), 1) if records else 0,
        "mean_height": round(sum(heights) / len(records), 1) if records else 0,
        "first_key": records[0]["key"] if records else None,
        "last_key": records[-1]["key"] if records else None,
        "digest": digest,
    }
    atomic_write_json(shards_dir / f"{name}_stats.json", stats, skip_if_same=False)
    rows = [{k: v for k, v in r.items() if k != "image"} for r in records]
    table = pa.Table.from_pylist(rows, schema=INDEX_SCHEMA)
    table = table.replace_schema_metadata({DIGEST_KEY: digest.encode()})
    with atomic_path(shards_dir / f"{name}.parquet") as tmp:  # last: marks the shard complete
        pq.write_table(table, tmp, compression="zstd")
    return ShardInfo(index, len(records), tar_bytes, written=True)


def shard_files(shards_dir: Path) -> dict[int, list[Path]]:
    """Finished shard files in ``shards_dir`` by shard index (tar, index, stats)."""
    found: dict[int, list[Path]] = {}
    for path in shards_dir.iterdir() if shards_dir.is_dir() else ():
        match = SHARD_FILE.match(path.name)
        if match:
            index = int(match.group(1) or match.group(3))
            found.setdefault(index, []).append(path)
    return found
