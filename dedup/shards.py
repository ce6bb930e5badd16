"""Reading a shard directory as the audit needs it: hash columns, and a few images.

A shard directory (CONTRACTS.md) holds ``NNNNN.tar`` webdataset shards with ``KEY.jpg``
members and, beside each, ``NNNNN.parquet`` with one row per sample (``key``, ``uid``,
``url``, ``text``, ``sha256``, ``phash``, ``dhash``, ...). The audit streams the Parquet
hash columns (never the images) and opens tars only for the thumbnails of matched pairs.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa

from openwit import fs
from openwit.errors import UserError

REQUIRED_COLUMNS = ("key", "phash", "dhash")
OPTIONAL_COLUMNS = ("uid", "url", "text")
BATCH_ROWS = 65_536
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")


def shard_indexes(shards: str | Path) -> list[str]:
    """The shard index files of a shard directory (a path or a URL), sorted; a clear error
    when there are none."""
    shards = str(shards)
    if fs.is_local(shards):
        folder = fs.local_path(shards)
        if not folder.is_dir():
            raise UserError(f"--shards: no such directory: {shards}")
        files = [str(p) for p in folder.glob("*.parquet")]
    else:  # a bucket has no folders: a prefix without index files is reported as such
        files = fs.glob(fs.join(shards, "*.parquet"))
    files = sorted(f for f in files if not fs.basename(f).startswith("."))
    if not files:
        raise UserError(f"--shards: no shard index (*.parquet) in {shards}")
    return files


def shard_name(index_file: str) -> str:
    """A shard's name: its index file's name without ``.parquet`` (the tar's without ``.tar``)."""
    return fs.basename(index_file).removesuffix(".parquet")


@contextmanager
def _index_file(url: str) -> Iterator[Any]:
    """The ``ParquetFile`` of a shard index (a path or a URL), kept open for the block; one
    line (:class:`UserError`) when it cannot be read as Parquet."""
    import pyarrow.parquet as pq

    with ExitStack() as stack:
        try:
            source = (
                fs.local_path(url) if fs.is_local(url) else stack.enter_context(fs.open_input(url))
            )
            parquet = pq.ParquetFile(source)
        except (OSError, pa.ArrowInvalid) as exc:
            raise UserError(f"{url}: not a readable Parquet file ({exc})") from None
        yield parquet


def iter_batches(files: Iterable[str]) -> Iterator[tuple[str, pa.RecordBatch]]:
    """``(index file, batch)`` with the hash columns and whichever descriptive ones exist."""
    for url in files:
        with _index_file(url) as parquet:
            names = set(parquet.schema_arrow.names)
            missing = [c for c in REQUIRED_COLUMNS if c not in names]
            if missing:
                raise UserError(f"{url}: shard index lacks column(s) {', '.join(missing)}")
            columns = [*REQUIRED_COLUMNS, *(c for c in OPTIONAL_COLUMNS if c in names)]
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns):
                yield url, batch


def count_rows(files: Sequence[str]) -> int:
    """Samples in the shard indexes, from their footers (a bucket's read side by side)."""

    def rows(url: str) -> int:
        with _index_file(url) as parquet:
            return parquet.metadata.num_rows

    return sum(fs.map_urls(rows, list(files)))


def read_images(tar_url: str, keys: Iterable[str]) -> dict[str, bytes]:
    """The image bytes of ``keys`` from one webdataset tar (missing keys are left out).

    Members are matched by name and read into memory; nothing is extracted to disk, so
    member names from a foreign tar cannot write outside the report folder.
    """
    wanted = set(keys)
    found: dict[str, bytes] = {}
    if not wanted:
        return found
    try:
        with fs.open_input(tar_url) as stream, tarfile.open(fileobj=stream, mode="r:*") as tar:
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
        return found  # a missing or broken tar costs thumbnails, never the audit
    return found
