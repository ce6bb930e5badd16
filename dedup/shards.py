"""Reading a shard directory as the audit needs it: hash columns, and a few images.

A shard directory (CONTRACTS.md) holds ``NNNNN.tar`` webdataset shards with ``KEY.jpg``
members and, beside each, ``NNNNN.parquet`` with one row per sample (``key``, ``uid``,
``url``, ``text``, ``sha256``, ``phash``, ``dhash``, ...). The audit streams the Parquet
hash columns (never the images) and opens tars only for the thumbnails of matched pairs.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa

from openwit.errors import UserError

REQUIRED_COLUMNS = ("key", "phash", "dhash")
OPTIONAL_COLUMNS = ("uid", "url", "text")
BATCH_ROWS = 65_536
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")


def shard_indexes(shards: Path) -> list[Path]:
    """The shard index files of a shard directory, sorted; a clear error when there are none."""
    if not shards.is_dir():
        raise UserError(f"--shards: no such directory: {shards}")
    files = sorted(p for p in shards.glob("*.parquet") if not p.name.startswith("."))
    if not files:
        raise UserError(f"--shards: no shard index (*.parquet) in {shards}")
    return files


def iter_batches(files: Iterable[Path]) -> Iterator[tuple[Path, pa.RecordBatch]]:
    """``(index file, batch)`` with the hash columns and whichever descriptive ones exist."""
    import pyarrow.parquet as pq

    for path in files:
        try:
            parquet = pq.ParquetFile(path)
        except (OSError, pa.ArrowInvalid) as exc:
            raise UserError(f"{path}: not a readable Parquet file ({exc})") from None
        names = set(parquet.schema_arrow.names)
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        if missing:
            raise UserError(f"{path}: shard index lacks column(s) {', '.join(missing)}")
        columns = [*REQUIRED_COLUMNS, *(c for c in OPTIONAL_COLUMNS if c in names)]
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns):
            yield path, batch


def count_rows(files: Iterable[Path]) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def read_images(tar_path: Path, keys: Iterable[str]) -> dict[str, bytes]:
    """The image bytes of ``keys`` from one webdataset tar (missing keys are left out).

    Members are matched by name and read into memory; nothing is extracted to disk, so
    member names from a foreign tar cannot write outside the report folder.
    """
    wanted = set(keys)
    found: dict[str, bytes] = {}
    if not tar_path.is_file() or not wanted:
        return found
    try:
        with tarfile.open(tar_path, "r:*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                stem, _, extension = member.name.rpartition(".")
                if stem in wanted and extension.lower() in IMAGE_EXTENSIONS and stem not in found:
                    handle = tar.extractfile(member)
                    if handle is not None:
                        found[stem] = handle.read()
                    if len(found) == len(wanted):
                        break
    except (OSError, tarfile.TarError):
        return found  # a broken tar costs thumbnails, never the audit
    return found
