"""Photo-like JPEGs for the download benchmarks: crops of smooth noise textures, tinted and
shaded in a random direction, with a few filled ellipses and boxes; generated once per
folder and cached. Each photo's coarse layout differs (the shading and the shapes), so no
two are near duplicates by pHash: a build keeps all of them, as it would distinct photos."""

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
        angle = rng.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        ramp = np.cos(angle) * xs / width + np.sin(angle) * ys / height
        shade = (0.6 + 0.5 * (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6))[..., None]
        pixels = (texture[y : y + height, x : x + width] * tint * shade).clip(0, 255)
        image = Image.fromarray(pixels.astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(rng.randint(2, 4)):
            r = rng.uniform(0.08, 0.3) * min(width, height)
            cx, cy = rng.uniform(r, width - r), rng.uniform(r, height - r)
            colour = tuple(rng.randrange(256) for _ in range(3))
            box = (cx - r, cy - r, cx + r, cy + r)
            (draw.ellipse if rng.random() < 0.6 else draw.rectangle)(box, fill=colour)
        image.save(path, "JPEG", quality=rng.randint(80, 92))
    done.write_text("ok")
    return paths
