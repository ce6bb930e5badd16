"""Small builders for the trainer's tests: shards from raw samples, test images."""

from __future__ import annotations

import io
import json
import random
import shutil
from pathlib import Path

from openwit.demo.world import render


def copy_shards(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest)
    return dest


def jpeg_bytes(colour: str = "red", shape: str = "circle", size: int = 64) -> bytes:
    return render(colour, shape, "grey", random.Random(0), (size, size))


def png_bytes(size: int = 40) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (10, 200, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def write_tar(path: Path, samples: list[dict]) -> Path:
    """A shard from raw sample dicts (``__key__``, ``jpg``, ``txt``, ...)."""
    import webdataset as wds

    with wds.TarWriter(str(path)) as writer:
        for sample in samples:
            writer.write(sample)
    return path


def write_sizes(folder: Path, sizes: dict[str, int]) -> None:
    (folder / "sizes.json").write_text(json.dumps(sizes))
