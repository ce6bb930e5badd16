"""Reading a build directory: the one place that knows where a build keeps what.

Everything that reads a finished (or partial) build -- the build report, the dataset card,
the Airflow tasks, the audit, tests -- asks this module for paths and tables instead of
joining paths itself, so the layout (local directories today, committed attempts in a
bucket tomorrow) can change in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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

    def shards_uri(self) -> str:
        """The shard folder as a URI (``file:///…``): how schedulers name the published data."""
        return self.shards_dir.resolve().as_uri()

    def shard_sizes(self) -> dict[str, int]:
        """``shards/sizes.json``: samples per tar."""
        return read_json(self.shards_dir / "sizes.json")

    def shard_tars(self) -> list[str]:
        """Names of the shard tars present (``00000.tar`` ...), sorted."""
        return sorted(p.name for p in self.shards_dir.glob("*.tar"))

    def shard_index_rows(self, tar: str) -> int | None:
        """Rows of the Parquet index beside shard ``tar`` (from its footer); None if absent."""
        from openwit.funnel import count_rows

        index = self.shards_dir / f"{Path(tar).stem}.parquet"
        return count_rows([index]) if index.is_file() else None

    def stage_entry(self, stage: str) -> dict[str, Any]:
        """The manifest's record of ``stage`` (status, fingerprint, started, seconds, funnel,
        stats); empty when the build never reached it."""
        try:
            return dict(self.manifest().get("stages", {}).get(stage) or {})
        except (OSError, ValueError):
            return {}

    @property
    def report_dir(self) -> Path:
        return self.root / "report"
