"""Small shard sets in the contract's format, from the demo world (coloured shapes).

For the demo and the tests when no build has produced shards: ``NNNNN.tar`` with
``KEY.jpg``, ``KEY.txt``, ``KEY.json`` per sample (KEY 9 digits), and ``sizes.json``,
written with webdataset's TarWriter. (The build's shard writer also writes a Parquet index
beside each tar; training does not read it, so it is left out here.)
"""

from __future__ import annotations

import json
from pathlib import Path

from openwit.demo_data import DemoImage, write_images
from openwit.io import atomic_path, atomic_write_json


def write_shards(images: list[DemoImage], out: Path, per_shard: int) -> Path:
    """Write ``images`` (with their captions) as shards of ``per_shard`` samples into ``out``."""
    import webdataset as wds

    out.mkdir(parents=True, exist_ok=True)
    sizes: dict[str, int] = {}
    for shard_index, start in enumerate(range(0, len(images), per_shard)):
        name = f"{shard_index:05d}.tar"
        chunk = images[start : start + per_shard]
        with atomic_path(out / name) as tmp:
            with wds.TarWriter(str(tmp)) as writer:
                for offset, image in enumerate(chunk):
                    key = f"{start + offset:09d}"
                    meta = {"key": key, "caption": image.caption, "shape": image.shape}
                    writer.write(
                        {
                            "__key__": key,
                            "jpg": image.path.read_bytes(),
                            "txt": image.caption,
                            "json": json.dumps(meta),
                        }
                    )
        sizes[name] = len(chunk)
    atomic_write_json(out / "sizes.json", sizes)
    return out


def write_demo_shards(out: Path, count: int, per_shard: int, seed: int = 0) -> Path:
    """Render ``count`` demo images under ``out/images`` and shard them into ``out/shards``."""
    images = write_images(out / "images", count, seed=seed)
    return write_shards(images, out / "shards", per_shard)
