"""Reading a build directory: the one place that knows where a build keeps what.

Everything that reads a finished (or partial) build -- the next stage, the build report,
the dataset card, the Airflow tasks, the audit, tests -- asks this module for files and
tables instead of joining paths itself. A build directory is a URL (a local path,
``s3://bucket/build``, ``gs://...``); every path given out here is a URL string.

A stage's files live in the attempt the manifest names (``stages/<stage>/<attempt>/``,
listed with their sizes in the attempt's ``_commit.json``); files of other attempts are
never read. The shards are published in ``shards/`` (the layout open_clip reads).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import IO, Any

from openwit import fs

MANIFEST = "manifest.json"
FUNNEL = "funnel.json"
COMMIT_FILE = "_commit.json"
PART_GLOB = "part-*.parquet"
REJECTION_GLOB = "*rejections-*.parquet"


class BuildDir:
    """A build directory, read-only."""

    def __init__(self, root: Any) -> None:
        self.root = str(root).rstrip("/")

    def __repr__(self) -> str:
        return f"BuildDir({self.root!r})"

    def url(self, *parts: str) -> str:
        return fs.join(self.root, *parts)

    # -- the build's own records -------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """``manifest.json``; raises ``FileNotFoundError`` when the build never started."""
        return fs.read_json(self.url(MANIFEST))

    def funnel(self) -> dict[str, Any]:
        """``funnel.json``: per stage ``{"in", "out", "rejected": {reason: n}}``."""
        return fs.read_json(self.url(FUNNEL))

    def is_complete(self) -> bool:
        try:
            return bool(self.manifest().get("complete"))
        except (OSError, ValueError):
            return False

    def stage_entry(self, stage: str) -> dict[str, Any]:
        """The manifest's record of ``stage`` (status, attempt, fingerprint, seconds, funnel,
        stats); empty when the build never reached it."""
        try:
            return dict(self.manifest().get("stages", {}).get(stage) or {})
        except (OSError, ValueError):
            return {}

    def stage_complete(self, stage: str) -> bool:
        return self.stage_entry(stage).get("status") == "complete"

    # -- a stage's committed files -----------------------------------------------------------
    def committed_files(self, entry: dict[str, Any] | str) -> dict[str, int]:
        """URL -> size of every file a stage committed (``entry``: the stage's manifest
        entry, or its name); empty when the stage is not complete."""
        if isinstance(entry, str):
            entry = self.stage_entry(entry)
        if entry.get("status") != "complete" or "commit" not in entry:
            return {}
        listing: dict[str, int] = fs.read_json(self.url(entry["commit"]))
        return {self.url(rel): size for rel, size in listing.items()}

    def stage_files(self, stage: str, pattern: str = PART_GLOB) -> list[str]:
        """Committed files of ``stage`` whose names match ``pattern`` (its records by default)."""
        return sorted(
            url for url in self.committed_files(stage) if fnmatch.fnmatch(fs.basename(url), pattern)
        )

    def parts_of(self, entry: dict[str, Any]) -> list[str]:
        """The records a stage passed on: its last pass's part files, in unit order."""
        return sorted(
            url
            for url in self.committed_files(entry)
            if fnmatch.fnmatch(fs.basename(url), PART_GLOB)
        )

    def input_files(self, stage: str) -> list[str]:
        """The committed records ``stage`` read: the output of the stage before it (empty
        for the first stage, whose input is the config's ``inputs``)."""
        order = self.manifest().get("stage_order") or []
        if stage not in order or order.index(stage) == 0:
            return []
        return self.stage_files(order[order.index(stage) - 1])

    def rejection_files(self, stage: str | None = None) -> list[str]:
        """Committed rejection files, of one stage or of every stage (in stage order)."""
        if stage is not None:
            return self.stage_files(stage, REJECTION_GLOB)
        try:
            order = self.manifest().get("stage_order") or []
        except (OSError, ValueError):
            order = []
        return [url for name in order for url in self.stage_files(name, REJECTION_GLOB)]

    def read_table(self, files: Sequence[str], columns: list[str] | None = None) -> Any:
        """The rows of ``files`` as one Arrow table (``columns`` only), None for no files."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = []
        for url in files:
            with fs.open_input(url) as stream:
                tables.append(pq.read_table(stream, columns=columns))
        if not tables:
            return None
        return pa.concat_tables(tables, promote_options="default")

    # -- published outputs -------------------------------------------------------------------
    @property
    def shards_dir(self) -> str:
        return self.url("shards")

    def shards_uri(self) -> str:
        """The shard folder as a URI (``file:///…``, ``s3://…``): how schedulers name the
        published data."""
        return fs.as_uri(self.shards_dir)

    def shard_sizes(self) -> dict[str, int]:
        """``shards/sizes.json``: samples per tar."""
        return fs.read_json(fs.join(self.shards_dir, "sizes.json"))

    def shard_tars(self) -> list[str]:
        """Names of the shard tars present (``00000.tar`` ...), sorted."""
        listing = fs.list_files(self.shards_dir)
        return sorted(fs.basename(url) for url in listing if url.endswith(".tar"))

    def shard_index_rows(self, tar: str) -> int | None:
        """Rows of the Parquet index beside shard ``tar`` (from its footer); None if absent."""
        from openwit.units import parquet_metadata

        index = fs.join(self.shards_dir, tar.removesuffix(".tar") + ".parquet")
        try:
            return parquet_metadata(index).num_rows
        except FileNotFoundError:
            return None

    def shard_indexes(self) -> list[str]:
        """The Parquet index beside each tar (``NNNNN.parquet``), in shard order."""
        listing = fs.list_files(self.shards_dir)
        names = [u for u in listing if fnmatch.fnmatch(fs.basename(u), "[0-9]*.parquet")]
        return sorted(names)

    def open_shard(self, tar_name: str) -> IO[bytes]:
        """A shard's tar (a name from :meth:`shard_sizes`), opened for reading."""
        return fs.open_input(fs.join(self.shards_dir, fs.basename(tar_name)))

    @property
    def report_dir(self) -> str:
        return self.url("report")
