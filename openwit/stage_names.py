"""The build's stage names, in the order they run (import-light: no pyarrow).

Kept apart from :mod:`openwit.schemas` so that code that only needs the names -- the Airflow
DAG files, which the scheduler parses often and must parse fast -- does not import Arrow.
"""

from __future__ import annotations

#: Build stages, in the order they run. ``--until`` takes one of these names.
BUILD_STAGES: tuple[str, ...] = (
    "ingest",
    "text",
    "match",
    "balance",
    "download",
    "image",
    "dedup",
    "shard",
)


def stage_index(stage: str) -> int:
    """Position of ``stage`` in :data:`BUILD_STAGES`; ``KeyError`` names the valid stages."""
    try:
        return BUILD_STAGES.index(stage)
    except ValueError:
        raise KeyError(f"unknown stage {stage!r}; stages are: {', '.join(BUILD_STAGES)}") from None
