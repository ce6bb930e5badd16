"""Counting helpers the build report's facts share (all counting done in Arrow)."""

from __future__ import annotations

from typing import Any

#: How many head and tail queries, hosts, sizes the report lists.
TOP = 10


def value_counts(values: Any) -> dict[Any, int]:
    """Each value of an Arrow array and how often it occurs (counted in Arrow)."""
    import pyarrow.compute as pc

    counts = pc.value_counts(values)
    return dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()))


def strings(values: Any) -> Any:
    """``values`` (any iterable of str) as an Arrow string array, for ``is_in`` filters."""
    import pyarrow as pa

    return pa.array(list(values), pa.string())
