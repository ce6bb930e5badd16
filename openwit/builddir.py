"""Reading a build directory: the one place that knows where a build keeps what.

Everything that reads a finished (or partial) build -- the build report, the dataset card,
the Airflow tasks, the audit, tests -- asks this module for paths and tables instead of
joining paths itself, so the layout (local directories today, committed attempts in a
bucket tomorrow) can change in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

from openwit.io import read_json

MANIFEST = "manifest.json"
FUNNEL = "funnel.json"
PART_GLOB = "part-*.parquet"
REJECTION_GLOB = "rejections-*.parquet"


class BuildDir:
    """A build directory, read-only."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"BuildDir({str(self.root)!r})"

    # -- the build's own records -------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """``manifest.json``; raises ``FileNotFoundError`` when the build never started."""
        return read_json(self.root / MANIFEST)

    def funnel(self) -> dict[str, Any]:
        """``funnel.json``: per stage ``{"in", "out", "rejected": {reason: n}}``."""
        return read_json(self.root / FUNNEL)

    def is_complete(self) -> bool:
        try:
            return bool(self.manifest().get("complete"))
        except (OSError, ValueError):
            return False

    def stage_complete(self, stage: str) -> bool:
        try:
            entry = self.manifest().get("stages", {}).get(stage) or {}
        except (OSError, ValueError):
            return False
        return entry.get("status") == "complete"

    # -- a stage's committed files -----------------------------------------------------------
    def stage_dir(self, stage: str) -> Path:
        return self.root / "stages" / stage

    def stage_files(self, stage: str, pattern: str = PART_GLOB) -> list[Path]:
        """Committed files of ``stage`` matching ``pattern`` (its records by default)."""
        return sorted(self.stage_dir(stage).glob(pattern))

    def input_files(self, stage: str) -> list[Path]:
        """The committed records ``stage`` read: the output of the stage before it (empty
        for the first stage, whose input is the config's ``inputs``)."""
        order = self.manifest().get("stage_order") or []
        if stage not in order or order.index(stage) == 0:
            return []
        return self.stage_files(order[order.index(stage) - 1])

    def rejection_files(self, stage: str | None = None) -> list[Path]:
        """Committed rejection files, of one stage or of all."""
        pattern = f"{stage}-*.parquet" if stage else "*.parquet"
        return sorted((self.root / "rejections").glob(pattern))

    def read_table(self, files: list[Path], columns: list[str] | None = None) -> Any:
        """The rows of ``files`` as one Arrow table (``columns`` only, if given)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = [pq.read_table(f, columns=columns) for f in files]
        if not tables:
            return None
        return pa.concat_tables(tables)

    # -- published outputs -------------------------------------------------------------------
    @property
    def shards_dir(self) -> Path:
        return self.root / "shards"

    def shard_sizes(self) -> dict[str, int]:
        """``shards/sizes.json``: samples per tar."""
        return read_json(self.shards_dir / "sizes.json")

    def shard_indexes(self) -> list[Path]:
        """The Parquet index beside each tar (``NNNNN.parquet``), in shard order."""
        return sorted(self.shards_dir.glob("[0-9]*.parquet"))

    def open_shard(self, tar_name: str) -> IO[bytes]:
        """A shard's tar (a name from :meth:`shard_sizes`), opened for reading."""
        return open(self.shards_dir / Path(tar_name).name, "rb")

    @property
    def report_dir(self) -> Path:
        return self.root / "report"
