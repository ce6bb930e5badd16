"""Small shard sets in the contract's format, from the demo world, without a build.

For the demo parts run on their own (their tests) and for the trainer's tests and
benchmarks: ``NNNNN.tar`` with ``KEY.jpg``, ``KEY.txt``, ``KEY.json`` per sample (KEY 9
digits), ``NNNNN.parquet`` beside each tar and ``sizes.json``, hashes computed as the build
computes them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from openwit.demo.world import DemoImage, write_images
from openwit.io import atomic_path, atomic_write_json

#: Where demo samples written without a build say they came from.
DEMO_URL = "http://demo.example/{}"


def image_samples(images: Sequence[DemoImage]) -> list[tuple[bytes, str, str]]:
    """``(jpeg bytes, caption, url)`` of demo images, for :func:`write_shards`."""
    return [(i.path.read_bytes(), i.caption, DEMO_URL.format(i.path.name)) for i in images]


def write_shards(
    samples: Sequence[tuple[bytes, str, str]], folder: Path, per_shard: int = 1000
) -> Path:
    """Webdataset shards of ``(jpeg bytes, caption, url)`` samples in ``folder``."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import webdataset as wds

    from openwit.hashes.images import bytes_hashes
    from openwit.schemas import sample_key, uid_for

    schema = pa.schema(
        [
            ("key", pa.string()),
            ("uid", pa.string()),
            ("url", pa.string()),
            ("text", pa.string()),
            ("sha256", pa.string()),
            ("phash", pa.uint64()),
            ("dhash", pa.uint64()),
        ]
    )
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for shard_index, start in enumerate(range(0, len(samples), per_shard)):
        rows = []
        name = f"{shard_index:05d}"
        with atomic_path(folder / f"{name}.tar") as tmp, wds.TarWriter(str(tmp)) as sink:
            for offset, (data, caption, url) in enumerate(samples[start : start + per_shard]):
                key = sample_key(start + offset)
                phash, dhash = bytes_hashes(data)
                row = {
                    "key": key,
                    "uid": uid_for(url, caption),
                    "url": url,
                    "text": caption,
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "phash": phash,
                    "dhash": dhash,
                }
                meta = {k: v for k, v in row.items() if k not in ("phash", "dhash")}
                sink.write({"__key__": key, "jpg": data, "txt": caption, "json": json.dumps(meta)})
                rows.append(row)
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / f"{name}.parquet")
        sizes[f"{name}.tar"] = len(rows)
    atomic_write_json(folder / "sizes.json", sizes)
    return folder


def write_demo_shards(out: Path, count: int, per_shard: int, seed: int = 0) -> Path:
    """Render ``count`` demo images under ``out/images`` and shard them into ``out/shards``."""
    images = write_images(out / "images", count, seed=seed)
    return write_shards(image_samples(images), out / "shards", per_shard)
