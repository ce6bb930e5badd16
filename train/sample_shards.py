"""Small shard sets in the contract's format, from the demo world (coloured shapes).

For the demo and the tests when no build has produced shards: ``NNNNN.tar`` with
``KEY.jpg``, ``KEY.txt``, ``KEY.json`` per sample (KEY 9 digits), and ``sizes.json``,
written with webdataset's TarWriter. (The build's shard writer also writes a Parquet index
beside each tar; training does not read it, so it is left out here.)
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from openwit.demo_data import BACKGROUNDS, COLOURS, SHAPES, DemoImage, render, write_images
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


COLOUR_TEMPLATES = ("a {} shape.", "a photo of a {} thing.", "something {}.")


def write_colour_eval_set(root: Path, per_class: int, seed: int = 7) -> Path:
    """An eval image folder of the demo world with one class per colour (any shape, any
    background): what the tiny model learns first, so a short run shows zero-shot working."""
    rng = random.Random(seed)
    for colour in COLOURS:
        folder = root / colour
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            shape, background = rng.choice(SHAPES), rng.choice(list(BACKGROUNDS))
            data = render(colour, shape, background, rng, (128, 128))
            (folder / f"{colour}-{index:03d}.jpg").write_bytes(data)
    (root / "templates.txt").write_text("\n".join(COLOUR_TEMPLATES) + "\n")
    return root
