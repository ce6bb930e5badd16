"""What a crawl does to a picture before it reaches a training set, as PIL functions.

Used to measure the duplicate detector (``bench.detector_quality``) and by the demo. Each
transform takes and returns an RGB ``PIL.Image`` and is deterministic. :func:`store` is what
the build does to every downloaded image afterwards (resize to the configured longest side,
re-encode as JPEG), so a transformed copy is always compared in its stored form.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

Transform = Callable[["Image.Image"], "Image.Image"]


def jpeg(quality: int) -> Transform:
    def apply(image: Image.Image) -> Image.Image:
        from PIL import Image

        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "JPEG", quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            return decoded.convert("RGB")

    return apply


def rescale(factor: float) -> Transform:
    def apply(image: Image.Image) -> Image.Image:
        from PIL import Image

        size = (max(8, round(image.width * factor)), max(8, round(image.height * factor)))
        return image.resize(size, Image.Resampling.BICUBIC)

    return apply


def grayscale(image: Image.Image) -> Image.Image:
    return image.convert("L").convert("RGB")


def hflip(image: Image.Image) -> Image.Image:
    from PIL import ImageOps

    return ImageOps.mirror(image)


def crop(left: float, top: float, right: float, bottom: float) -> Transform:
    """Cut the given fractions off each side."""

    def apply(image: Image.Image) -> Image.Image:
        w, h = image.size
        box = (round(w * left), round(h * top), round(w * (1 - right)), round(h * (1 - bottom)))
        return image.crop(box)

    return apply


def letterbox(extra: float, colour: tuple[int, int, int], vertical: bool = True) -> Transform:
    """Bars of ``colour`` above and below (or left and right): the canvas grows by ``extra``.

    This is what fitting a picture into a thumbnail box of another shape does.
    """

    def apply(image: Image.Image) -> Image.Image:
        from PIL import Image

        w, h = image.size
        size = (w, round(h * (1 + extra))) if vertical else (round(w * (1 + extra)), h)
        canvas = Image.new("RGB", size, colour)
        canvas.paste(image.convert("RGB"), ((size[0] - w) // 2, (size[1] - h) // 2))
        return canvas

    return apply


def watermark(text: str = "(c) stockphotos.example", opacity: int = 150) -> Transform:
    """Semi-transparent text across the lower part, as stock-photo sites stamp them."""

    def apply(image: Image.Image) -> Image.Image:
        from PIL import Image, ImageDraw, ImageFont

        base = image.convert("RGBA")
        layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        size = max(10, base.width // 12)
        font = ImageFont.load_default(size=size)
        x, y = base.width * 0.06, base.height * 0.72
        draw.text((x, y), text, font=font, fill=(255, 255, 255, opacity))
        draw.text((x + 2, y + 2), text, font=font, fill=(0, 0, 0, opacity // 2))
        return Image.alpha_composite(base, layer).convert("RGB")

    return apply


def compose(*steps: Transform) -> Transform:
    def apply(image: Image.Image) -> Image.Image:
        for step in steps:
            image = step(image)
        return image

    return apply


def store(image: Image.Image, max_side: int = 256, quality: int = 90) -> Image.Image:
    """What the build keeps: longest side at most ``max_side``, re-encoded as JPEG."""
    from PIL import Image

    image = image.convert("RGB")
    scale = max_side / max(image.size)
    if scale < 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BICUBIC)
    return jpeg(quality)(image)


#: The transforms of the detector-quality set, by name: what a crawl really produces.
CRAWL_TRANSFORMS: dict[str, Transform] = {
    "identity": lambda image: image,
    "jpeg_q30": jpeg(30),
    "jpeg_q60": jpeg(60),
    "rescale_0.5": rescale(0.5),
    "rescale_0.25": rescale(0.25),
    "grayscale": grayscale,
    "crop_5pct": crop(0.05, 0.05, 0.05, 0.05),
    "crop_10pct_corner": crop(0.10, 0.10, 0.0, 0.0),
    "letterbox_black": letterbox(0.3, (0, 0, 0)),
    "pillarbox_white": letterbox(0.3, (255, 255, 255), vertical=False),
    "watermark": watermark(),
    "hflip": hflip,
    "hflip_jpeg_q60": compose(hflip, jpeg(60)),
}
