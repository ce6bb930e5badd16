"""The demo's small world: photo-like images of coloured shapes, their captions, eval sets.

Everything the demo needs is generated here, deterministically from a seed, offline:

- ``write_images``: JPEGs of one coloured shape on a textured background, with captions
  ("a red circle on a grey background"), the kind of pairs a crawl holds.
- ``write_eval_set``: an image folder in the contract's layout (``ROOT/<class>/<file>``,
  ``classnames.txt``, ``templates.txt``), one class per shape; ``write_colour_eval_set``
  the same world with one class per colour.

What the demo's web serves besides these images (eval copies, junk) and the server itself
are :mod:`openwit.demo.web`'s.

Files are written only when their bytes change: the build's ingest stage fingerprints its
input files by size and modification time, so rewriting equal bytes would rerun the build.

The vocabulary (colours, shapes, backgrounds) is what the demo's Wikipedia sample and
queries are built around, so captions match queries the way real ones do.
"""

from __future__ import annotations

import io
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from openwit.io import atomic_write_bytes, atomic_write_text

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40),
    "green": (44, 160, 44),
    "blue": (31, 119, 180),
    "yellow": (230, 200, 30),
    "purple": (148, 103, 189),
    "orange": (255, 127, 14),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring")
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "grey": (128, 128, 128),
    "white": (235, 235, 230),
    "black": (25, 25, 25),
    "wooden": (150, 105, 60),
}
#: Half the captions name colour and shape, half the shape alone. Without shape-only
#: captions, colour and background tell most pairs of a batch apart and the tiny model
#: barely learns shapes (docs/decisions.md, "The demo teaches").
CAPTION_TEMPLATES: tuple[str, ...] = (
    "a {colour} {shape} on a {background} background",
    "photo of a {colour} {shape}",
    "close-up of a {colour} {shape} sign",
    "the {colour} {shape} in the middle of the picture",
    "photo of a {shape}",
    "a picture of a {shape}",
    "a {shape} sign",
    "the {shape} in the middle of the picture",
)
#: Zero-shot prompts worded as the captions are (CLIP's prompt engineering, section 3.1.4).
EVAL_TEMPLATES: tuple[str, ...] = ("photo of a {}", "a picture of a {}", "a {} on a background")
COLOUR_TEMPLATES: tuple[str, ...] = ("a {} shape.", "a photo of a {} thing.", "something {}.")
SAME = {"skip_if_same": True}  # rewrite a file only when its bytes change (see above)


@dataclass(frozen=True)
class DemoImage:
    path: Path
    colour: str
    shape: str
    background: str
    caption: str


def _shape_points(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    import math

    if shape == "triangle":
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in (-1.571, 0.524, 2.618)]
    if shape == "star":
        points = []
        for i in range(10):
            radius = r if i % 2 == 0 else r * 0.45
            angle = -math.pi / 2 + i * math.pi / 5
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
        return points
    raise ValueError(shape)


def render(
    colour: str, shape: str, background: str, rng: random.Random, size: tuple[int, int]
) -> bytes:
    """A JPEG of one shape on a noisy, shaded background (photo-like, not flat)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    width, height = size
    # A few random low-frequency waves: photos differ in their coarse light and shade,
    # which is what perceptual hashes see; a flat backdrop would make every picture of the
    # same shape hash alike. They vary slowly, so they are computed on a coarse grid and
    # scaled up (a tenth of the cost of every pixel).
    coarse_w, coarse_h = max(2, width // 8), max(2, height // 8)
    ys, xs = np.mgrid[0:coarse_h, 0:coarse_w].astype(np.float32)
    field = np.zeros((coarse_h, coarse_w), dtype=np.float32)
    for _ in range(4):
        fx, fy = rng.uniform(-3.5, 3.5), rng.uniform(-3.5, 3.5)
        phase = rng.uniform(0, 2 * np.pi)
        field += np.cos(2 * np.pi * (fx * xs / coarse_w + fy * ys / coarse_h) + phase)
    shade = Image.fromarray(18 * field).resize((width, height), Image.Resampling.BILINEAR)
    base = np.array(BACKGROUNDS[background], dtype=np.float32)
    pixels = np.clip(base + np.asarray(shade)[:, :, None], 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    # Large and near the middle, as a product photo frames its subject: the demo's model
    # sees 32 x 32 pixels, in which a small shape anywhere is a few blurred patches.
    r = rng.uniform(0.30, 0.42) * min(size)
    cx = width / 2 + rng.uniform(-1, 1) * 0.08 * width
    cy = height / 2 + rng.uniform(-1, 1) * 0.08 * height
    fill = tuple(max(0, min(255, c + rng.randint(-20, 20))) for c in COLOURS[colour])
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "ring":
        draw.ellipse(box, outline=fill, width=max(6, int(r * 0.3)))
    elif shape == "cross":
        t = r * 0.35
        draw.rectangle((cx - r, cy - t, cx + r, cy + t), fill=fill)
        draw.rectangle((cx - t, cy - r, cx + t, cy + r), fill=fill)
    else:
        draw.polygon(_shape_points(shape, cx, cy, r), fill=fill)
    image = image.filter(ImageFilter.SMOOTH)  # soft edges, as a lens draws them
    # Sensor grain: small integers are several times cheaper to draw than normal floats.
    grain = np.random.default_rng(rng.getrandbits(32)).integers(
        -16, 17, (height, width, 3), dtype=np.int16
    )
    pixels = np.clip(np.asarray(image, dtype=np.int16) + grain, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=rng.randint(80, 92))
    return buffer.getvalue()


def caption_for(rng: random.Random, colour: str, shape: str, background: str) -> str:
    """A caption of the demo world (a template drawn by ``rng``), with "an" before a vowel."""
    text = rng.choice(CAPTION_TEMPLATES).format(colour=colour, shape=shape, background=background)
    return re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", text)


def _sizes(rng: random.Random) -> tuple[int, int]:
    return rng.choice([(320, 240), (300, 300), (400, 300), (480, 360), (360, 270)])


def write_images(root: Path, count: int, seed: int = 0) -> list[DemoImage]:
    """``count`` captioned images in ``root`` (``img/00000.jpg`` ...); returns their records."""
    rng = random.Random(seed)
    folder = root / "img"
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for index in range(count):
        colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
        background = rng.choice(list(BACKGROUNDS))
        caption = caption_for(rng, colour, shape, background)
        path = folder / f"{index:05d}.jpg"
        atomic_write_bytes(path, render(colour, shape, background, rng, _sizes(rng)), **SAME)
        images.append(DemoImage(path, colour, shape, background, caption))
    return images


def write_eval_set(root: Path, per_class: int, seed: int = 1) -> Path:
    """An eval image folder with one class per shape; returns ``root``."""
    rng = random.Random(seed)
    for shape in SHAPES:
        folder = root / shape
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            colour, background = rng.choice(list(COLOURS)), rng.choice(list(BACKGROUNDS))
            data = render(colour, shape, background, rng, (256, 256))
            atomic_write_bytes(folder / f"{shape}-{index:03d}.jpg", data, **SAME)
    # One name per class folder, in the sorted folder order EvalSet gives labels in.
    atomic_write_text(root / "classnames.txt", "\n".join(sorted(SHAPES)) + "\n", **SAME)
    atomic_write_text(root / "templates.txt", "\n".join(EVAL_TEMPLATES) + "\n", **SAME)
    return root


def write_colour_eval_set(root: Path, per_class: int, seed: int = 7) -> Path:
    """An eval image folder of the same world with one class per colour (any shape, any
    background); returns ``root``."""
    rng = random.Random(seed)
    for colour in COLOURS:
        folder = root / colour
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            shape, background = rng.choice(SHAPES), rng.choice(list(BACKGROUNDS))
            data = render(colour, shape, background, rng, (128, 128))
            atomic_write_bytes(folder / f"{colour}-{index:03d}.jpg", data, **SAME)
    atomic_write_text(root / "templates.txt", "\n".join(COLOUR_TEMPLATES) + "\n", **SAME)
    return root


def iter_vocabulary() -> Iterator[str]:
    """Every word the demo's captions use, for building a matching query list."""
    yield from COLOURS
    yield from SHAPES
    yield from BACKGROUNDS
