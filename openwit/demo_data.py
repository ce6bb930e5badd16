"""The demo's small world: photo-like images of coloured shapes, their captions, an eval set.

Everything the demo needs is generated here, deterministically from a seed, offline:

- ``write_images``: JPEGs of one coloured shape on a textured background, with captions
  ("a red circle on a grey background"), the kind of pairs a crawl holds.
- ``write_eval_set``: an image folder in the contract's layout (``ROOT/<class>/<file>``,
  ``classnames.txt``, ``templates.txt``), one class per shape.
- ``plant_eval_copies``: a few eval images, transformed as a crawl would (recompressed,
  rescaled), copied into the image folder so the overlap audit has something to find.
- ``ImageServer``: a static HTTP server on 127.0.0.1 serving a folder, for the downloader.

The vocabulary (colours, shapes, backgrounds) is what the demo's Wikipedia sample and
queries are built around, so captions match queries the way real ones do.
"""

from __future__ import annotations

import functools
import http.server
import io
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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
CAPTION_TEMPLATES: tuple[str, ...] = (
    "a {colour} {shape} on a {background} background",
    "photo of a {colour} {shape}",
    "a large {colour} {shape} painted on a {background} wall",
    "close-up of a {colour} {shape} sign",
    "the {colour} {shape} in the middle of the picture",
)
EVAL_TEMPLATES: tuple[str, ...] = ("a photo of a {}.", "a {} shape.", "a picture of a {}.")


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
    base = np.array(BACKGROUNDS[background], dtype=np.float32)
    # A few random low-frequency waves: photos differ in their coarse light and shade,
    # which is what perceptual hashes see; a flat backdrop would make every picture of the
    # same shape hash alike.
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    field = np.zeros((height, width), dtype=np.float32)
    for _ in range(4):
        fx, fy = rng.uniform(-3.5, 3.5), rng.uniform(-3.5, 3.5)
        phase = rng.uniform(0, 2 * np.pi)
        field += np.cos(2 * np.pi * (fx * xs / width + fy * ys / height) + phase)
    shade = (18 * field)[:, :, None]
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0, 12, (height, width, 3))
    pixels = np.clip(base + shade + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    r = rng.uniform(0.22, 0.36) * min(size)
    cx = rng.uniform(r + 4, width - r - 4)
    cy = rng.uniform(r + 4, height - r - 4)
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
    image = image.filter(ImageFilter.GaussianBlur(0.8))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=rng.randint(80, 92))
    return buffer.getvalue()


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
        caption = rng.choice(CAPTION_TEMPLATES).format(
            colour=colour, shape=shape, background=background
        )
        path = folder / f"{index:05d}.jpg"
        path.write_bytes(render(colour, shape, background, rng, _sizes(rng)))
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
            (folder / f"{shape}-{index:03d}.jpg").write_bytes(data)
    # One name per class folder, in the sorted folder order EvalSet gives labels in.
    (root / "classnames.txt").write_text("\n".join(sorted(SHAPES)) + "\n")
    (root / "templates.txt").write_text("\n".join(EVAL_TEMPLATES) + "\n")
    return root


def plant_eval_copies(eval_root: Path, dest: Path, count: int, seed: int = 2) -> list[DemoImage]:
    """Copy ``count`` eval images into ``dest/img``, recompressed and rescaled like a crawl.

    Returns them as captioned images (named ``eval-copy-NN.jpg``) for the pool.
    """
    from PIL import Image

    rng = random.Random(seed)
    candidates = sorted(p for p in eval_root.glob("*/*.jpg"))
    chosen = rng.sample(candidates, min(count, len(candidates)))
    folder = dest / "img"
    folder.mkdir(parents=True, exist_ok=True)
    planted = []
    for index, source in enumerate(chosen):
        with Image.open(source) as image:
            scale = rng.uniform(1.1, 1.4)
            resized = image.convert("RGB").resize(
                (int(image.width * scale), int(image.height * scale)), Image.Resampling.BICUBIC
            )
        path = folder / f"eval-copy-{index:02d}.jpg"
        resized.save(path, "JPEG", quality=rng.randint(70, 85))
        shape = source.parent.name
        caption = f"a {shape} I found on the internet"
        planted.append(DemoImage(path, "", shape, "", caption))
    return planted


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder's files without logging every request."""

    protocol_version = "HTTP/1.1"
    # Sent at once, as keep-alive servers send (nginx, Apache): with Nagle's algorithm the
    # body waits for the client's delayed ACK of the head, ~40 ms on a reused connection.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        pass


class BacklogServer(http.server.ThreadingHTTPServer):
    # The stdlib's listen backlog of 5 makes a burst of downloader threads wait 1 s for SYN
    # retransmits; a real image host accepts far more.
    request_queue_size = 1024
    daemon_threads = True


class ImageServer:
    """Serves a folder over HTTP on 127.0.0.1 (a free port) from a background thread."""

    def __init__(self, root: Path) -> None:
        handler = functools.partial(QuietHandler, directory=str(root))
        self.httpd = BacklogServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> ImageServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def iter_vocabulary() -> Iterator[str]:
    """Every word the demo's captions use, for building a matching query list."""
    yield from COLOURS
    yield from SHAPES
    yield from BACKGROUNDS
