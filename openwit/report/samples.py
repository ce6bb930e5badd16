"""Sample thumbnails for the build report, drawn deterministically from the shards.

The samples are evenly spaced over the dataset's sample keys (the keys run from 0 in shard
order), so the same build always shows the same images, every shard contributes in
proportion to its size, and only the tars holding a chosen key are read. The stored JPEG
bytes are copied beside the page (they are at most ``image.resize_max_side`` pixels).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from itertools import accumulate
from pathlib import Path
from typing import Any

from openwit.builddir import BuildDir
from openwit.io import atomic_write_bytes

SAMPLES = 24
FOLDER = "samples"


def chosen_positions(total: int, count: int = SAMPLES) -> list[int]:
    """``count`` positions spread evenly over ``range(total)`` (all of them when fewer)."""
    if total <= count:
        return list(range(total))
    return [int((i + 0.5) * total / count) for i in range(count)]


def write_samples(build: BuildDir, out: Path, count: int = SAMPLES) -> list[dict[str, Any]]:
    """Copy the chosen samples' images into ``out/samples``; returns their records
    (``key``, ``shard``, ``caption``, ``thumb`` relative to ``out``)."""
    sizes = build.shard_sizes()
    names = sorted(sizes)
    ends = list(accumulate(sizes[n] for n in names))
    wanted: dict[str, set[int]] = {}
    for position in chosen_positions(ends[-1] if ends else 0, count):
        shard = bisect_right(ends, position)
        offset = position - (ends[shard - 1] if shard else 0)
        wanted.setdefault(names[shard], set()).add(offset)
    folder = out / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for name in names:
        if name in wanted:
            samples += _read_samples(build, name, wanted[name], folder)
    return samples


def _members(handle: Any) -> Iterator[tuple[str, int, int]]:
    """``(name, data offset, size)`` of each member of a ustar shard, reading only the
    headers (it seeks past the data): the samples shown sit anywhere in 10,000-sample
    shards, and ``tarfile`` would parse every header before them (~40 µs each)."""
    position = 0
    while True:
        handle.seek(position)
        header = handle.read(512)
        if len(header) < 512 or not header.strip(b"\0"):
            return
        name = header[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
        size = int(header[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
        yield name, position + 512, size
        position += 512 + -(-size // 512) * 512


def _read_samples(build: BuildDir, name: str, offsets: set[int], folder: Path) -> list[dict]:
    """The samples at ``offsets`` (0 = the tar's first sample) of shard ``name``."""
    found: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    with build.open_shard(name) as handle:
        for member, start, size in _members(handle):
            key, _, suffix = member.rpartition("/")[2].partition(".")
            if not order or order[-1] != key:
                order.append(key)
                if len(order) - 1 > max(offsets):
                    break
            if len(order) - 1 not in offsets or suffix not in ("jpg", "webp", "txt"):
                continue
            handle.seek(start)
            data = handle.read(size)
            record = found.setdefault(key, {"key": key, "shard": name})
            if suffix == "txt":
                record["caption"] = data.decode("utf-8", "replace")
            else:
                thumb = f"{FOLDER}/{key}.{suffix}"
                atomic_write_bytes(folder / f"{key}.{suffix}", data, skip_if_same=True)
                record["thumb"] = thumb
    return [found[k] for k in order if k in found]
