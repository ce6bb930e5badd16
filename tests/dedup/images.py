"""Real photographs for dedup tests (from scikit-image's bundled files) and crawl copies."""

from __future__ import annotations

import io
import json
from functools import cache
from pathlib import Path

from PIL import Image

from openwit.dedup import transforms as tf


@cache
def photo(name: str) -> Image.Image:
    """A photograph shipped inside scikit-image (no download), as RGB."""
    import skimage.data

    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB")


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def stored(image: Image.Image) -> bytes:
    """The bytes the build would store for a downloaded image."""
    return jpeg_bytes(tf.store(image))


def write_pool(folder: Path, items: list[tuple[str, bytes]]) -> Path:
    """Image files plus a JSONL list of ``{url, caption, file}`` for the toy image stage."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for index, (caption, data) in enumerate(items):
        path = folder / f"{index:04d}.jpg"
        path.write_bytes(data)
        url = f"http://images.example/{index:04d}.jpg"
        lines.append(json.dumps({"url": url, "caption": caption, "file": str(path)}))
    pool = folder / "pool.jsonl"
    pool.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return pool


def write_eval_set(root: Path, classes: dict[str, list[tuple[str, Image.Image]]]) -> Path:
    """An eval image folder ``root/<class>/<name>.png`` (lossless, as eval sets often are)."""
    for label, images in classes.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for name, image in images:
            image.save(root / label / f"{name}.png")
    return root
