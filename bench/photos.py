"""Photo-like JPEGs for the download benchmarks: crops of smooth noise textures, tinted and
shaded, with a filled ellipse; generated once per folder and cached."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

TEXTURE_SIDE = 1700


def make_photos(folder: Path, count: int, sizes: Sequence[tuple[int, int]]) -> list[Path]:
    """``count`` distinct JPEGs of the given ``(width, height)`` sizes (each at most 1,700
    px a side), cached in ``folder``."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    done = folder / "complete"
    paths = [folder / f"{i:05d}.jpg" for i in range(count)]
    if done.is_file():
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    noise = np.random.default_rng(0)
    textures = []
    for _ in range(4):
        base = noise.normal(128, 40, (TEXTURE_SIDE, TEXTURE_SIDE, 3)).clip(0, 255)
        blurred = Image.fromarray(base.astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.2))
        textures.append(np.asarray(blurred))
    for path in paths:
        width, height = rng.choice(list(sizes))
        texture = rng.choice(textures)
        x, y = rng.randrange(0, TEXTURE_SIDE - width), rng.randrange(0, TEXTURE_SIDE - height)
        tint = np.array([rng.uniform(0.5, 1.2) for _ in range(3)], dtype=np.float32)
        shade = np.linspace(0.7, 1.1, width, dtype=np.float32)[None, :, None]
        pixels = (texture[y : y + height, x : x + width] * tint * shade).clip(0, 255)
        image = Image.fromarray(pixels.astype(np.uint8))
        r = rng.uniform(0.15, 0.35) * min(width, height)
        cx, cy = rng.uniform(r, width - r), rng.uniform(r, height - r)
        colour = tuple(rng.randrange(256) for _ in range(3))
        ImageDraw.Draw(image).ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
        image.save(path, "JPEG", quality=rng.randint(80, 92))
    done.write_text("ok")
    return paths
