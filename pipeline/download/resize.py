"""Downloaded bytes -> the stored image: decode safely, convert to RGB, resize, encode.

Two resizers with the same resize-mode semantics (img2dataset's ``resize_mode``,
``image_size``, ``resize_only_if_bigger``; output sizes are identical, which a test checks):

- ``pillow`` (default): decodes a JPEG at reduced size when the result is going to be
  smaller anyway (``Image.draft``: libjpeg scales by 1/2, 1/4 or 1/8 while decoding, so a
  1600x1200 photo bound for 256 px is decoded at 400x300), then resizes with a box filter
  (area averaging, img2dataset's ``area`` default for shrinking; Lanczos when enlarging).
  It also applies the EXIF orientation, which img2dataset ignores.
- ``img2dataset``: img2dataset's own ``Resizer`` (OpenCV), for exact parity.

Both first read the header only, with Pillow restricted to common web formats (no EPS,
whose plugin runs Ghostscript), and refuse images above ``max_pixels`` before decoding a
single pixel: a 50 kB PNG can claim 30,000 x 30,000 pixels (a decompression bomb).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from dataclasses import dataclass
from typing import Any

from openwit.config import ImageConfig
from openwit.funnel import Rejected

#: Formats the decoder accepts: what browsers show as images on the web.
WEB_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # MPO opens as JPEG
#: EXIF orientations that swap width and height.
_TRANSPOSED = frozenset({5, 6, 7, 8})
_WHITE = (255, 255, 255)
#: EXIF orientation -> the ``Image.Transpose`` member that undoes it.
_ORIENT = {
    2: "FLIP_LEFT_RIGHT",
    3: "ROTATE_180",
    4: "FLIP_TOP_BOTTOM",
    5: "TRANSPOSE",
    6: "ROTATE_270",
    7: "TRANSVERSE",
    8: "ROTATE_90",
}


class ImageRejected(Rejected):
    """The bytes do not make a usable image; ``reason`` is the rejection reason."""


@dataclass(frozen=True)
class StoredImage:
    data: bytes
    width: int
    height: int
    original_width: int
    original_height: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def columns(self) -> dict[str, Any]:
        """The candidate columns the download stage sets from the stored image."""
        return {
            "width": self.width,
            "height": self.height,
            "original_width": self.original_width,
            "original_height": self.original_height,
            "sha256": self.sha256,
            "image": self.data,
        }


@dataclass(frozen=True)
class Geometry:
    """What to do to an image of a given size: resize, then crop or pad (all optional)."""

    resize: tuple[int, int] | None  # (width, height) after resizing
    crop: tuple[int, int, int, int] | None  # box in the resized image
    pad: tuple[int, int] | None  # canvas (width, height), image centred on white
    enlarge: bool = False


def geometry(width: int, height: int, size: int, mode: str, only_if_bigger: bool) -> Geometry:
    """img2dataset's resize rules, size for size (albumentations' rounding included)."""
    if mode in ("keep_ratio", "center_crop"):
        shrink = min(width, height) > size
        if only_if_bigger and not shrink:
            return Geometry(None, None, None)
        scale = size / min(width, height)
        new = (max(1, round(width * scale)), max(1, round(height * scale)))
        crop = None
        if mode == "center_crop":
            left, top = (new[0] - size) // 2, (new[1] - size) // 2
            crop = (left, top, left + size, top + size)
        return Geometry(new, crop, None, enlarge=not shrink)
    if mode in ("keep_ratio_largest", "border"):
        shrink = max(width, height) > size
        if only_if_bigger and not shrink:
            return Geometry(None, None, None)
        scale = size / max(width, height)
        new = (max(1, round(width * scale)), max(1, round(height * scale)))
        pad = (max(size, new[0]), max(size, new[1])) if mode == "border" else None
        return Geometry(new, None, pad, enlarge=not shrink)
    if mode == "no":
        return Geometry(None, None, None)
    raise ValueError(f"unknown resize mode {mode!r}")


def open_checked(data: bytes, max_pixels: int) -> Any:
    """Read the header of ``data`` (Pillow, web formats only) and refuse decompression bombs."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data), formats=WEB_FORMATS)
    except UnidentifiedImageError:
        raise ImageRejected("not_an_image", f"not a {'/'.join(WEB_FORMATS)} image") from None
    except Image.DecompressionBombError as exc:
        raise ImageRejected("decompression_bomb", str(exc)[:300]) from None
    except Exception as exc:
        raise ImageRejected("decode_error", f"{type(exc).__name__}: {exc}"[:300]) from None
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageRejected("decode_error", f"image claims {width}x{height} pixels")
    if width * height > max_pixels:
        raise ImageRejected("decompression_bomb", f"{width}x{height} is over {max_pixels:,} pixels")
    return image


def _orientation(image: Any) -> int:
    try:
        return int(image.getexif().get(0x0112, 1))
    except Exception:
        return 1  # broken EXIF is no reason to drop an image


def _to_rgb(image: Any) -> Any:
    """RGB, with transparency composited over white (as img2dataset does)."""
    from PIL import Image

    if image.mode == "RGB":
        return image
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, _WHITE)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = image.point(lambda v: v / 256).convert("L")
    elif image.mode == "F":
        image = float_to_grey(image)
    return image.convert("RGB")


def float_to_grey(image: Any) -> Any:
    """A 32-bit float image (``F``: scientific TIFFs, elevation maps) as 8-bit grey, its
    finite range stretched over 0-255 (NaN and -inf as the lowest value, +inf as the
    highest). Pillow's own conversion clips to 0-255, which turns the usual 0-1 floats all
    black. A flat image keeps its level, read as a 0-1 float."""
    import numpy as np
    from PIL import Image

    values = np.asarray(image, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        raise ImageRejected("decode_error", "a float image without one finite pixel")
    low, high = float(values[finite].min()), float(values[finite].max())
    values = np.nan_to_num(values, nan=low, posinf=high, neginf=low)
    if high > low:
        scaled = (values - low) * (255.0 / (high - low))
    else:
        scaled = np.full(values.shape, min(max(low, 0.0), 1.0) * 255.0)
    return Image.fromarray(np.rint(scaled).astype(np.uint8), "L")


def encode(image: Any, encode_format: str, quality: int) -> bytes:
    buffer = io.BytesIO()
    if encode_format == "webp":
        image.save(buffer, "WEBP", quality=quality, method=4)
    else:
        image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


class PillowResizer:
    """The default resizer: reduced-size JPEG decoding, box filter, EXIF orientation."""

    def __init__(self, image: ImageConfig) -> None:
        self.config = image

    def __call__(self, data: bytes) -> StoredImage:
        from PIL import Image

        s = self.config
        image = open_checked(data, s.max_pixels)
        orientation = _orientation(image)
        width, height = image.size
        if orientation in _TRANSPOSED:
            width, height = height, width
        plan = geometry(width, height, s.resize_max_side, s.resize_mode, s.resize_only_if_bigger)
        try:
            if plan.resize and not plan.enlarge and image.format in ("JPEG", "MPO"):
                want = plan.resize if orientation not in _TRANSPOSED else plan.resize[::-1]
                image.draft("RGB", want)  # libjpeg decodes at 1/2, 1/4 or 1/8 scale
            image.load()
            image = _to_rgb(image)
            if orientation in _ORIENT:
                image = image.transpose(Image.Transpose[_ORIENT[orientation]])
            if plan.resize and plan.resize != image.size:
                kind = Image.Resampling.LANCZOS if plan.enlarge else Image.Resampling.BOX
                image = image.resize(plan.resize, kind)
            if plan.crop:
                image = image.crop(plan.crop)
            if plan.pad:
                canvas = Image.new("RGB", plan.pad, _WHITE)
                x = (plan.pad[0] - image.width) // 2
                y = (plan.pad[1] - image.height) // 2
                canvas.paste(image, (x, y))
                image = canvas
            stored = encode(image, s.encode_format, s.encode_quality)
        except ImageRejected:
            raise
        except Image.DecompressionBombError as exc:
            raise ImageRejected("decompression_bomb", str(exc)[:300]) from None
        except Exception as exc:  # truncated data, corrupt streams, broken palettes
            raise ImageRejected("decode_error", f"{type(exc).__name__}: {exc}"[:300]) from None
        return StoredImage(stored, image.width, image.height, width, height)


class _Silent(contextlib.AbstractContextManager):
    """Stands in for img2dataset's ``SuppressStdoutStderr`` (see :class:`Img2datasetResizer`)."""

    def __exit__(self, *exc: object) -> None:
        return None


class Img2datasetResizer:
    """img2dataset's own ``Resizer`` (OpenCV), behind the same header checks.

    Its ``SuppressStdoutStderr`` points file descriptors 1 and 2 of the whole process at
    /dev/null during every resize. With threads that races: one thread saves the
    descriptors another has just nulled and restores those, leaving stdout silenced for
    good. It only hides OpenCV warnings, so it is replaced by a no-op here.
    """

    def __init__(self, image: ImageConfig) -> None:
        # img2dataset imports albumentations, which asks PyPI for updates unless told not to.
        os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
        import img2dataset.resizer as i2d

        i2d.SuppressStdoutStderr = _Silent  # the process-wide redirection races threads
        self.config = image
        self.resizer = i2d.Resizer(
            image_size=image.resize_max_side,
            resize_mode=image.resize_mode,
            resize_only_if_bigger=image.resize_only_if_bigger,
            encode_quality=image.encode_quality,
            encode_format=image.encode_format,
        )

    def __call__(self, data: bytes) -> StoredImage:
        with open_checked(data, self.config.max_pixels) as image:
            if image.mode == "F":  # OpenCV would clip it to 0/1 as well: hand it 8 bits
                data = _float_as_png(image)
        stored, width, height, original_width, original_height, error = self.resizer(
            io.BytesIO(data)
        )
        if error is not None or stored is None:
            raise ImageRejected("decode_error", str(error)[:300])
        return StoredImage(stored, width, height, original_width, original_height)


def _float_as_png(image: Any) -> bytes:
    try:
        grey = float_to_grey(image)
    except ImageRejected:
        raise
    except Exception as exc:
        raise ImageRejected("decode_error", f"{type(exc).__name__}: {exc}"[:300]) from None
    buffer = io.BytesIO()
    grey.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def make_resizer(image: ImageConfig) -> PillowResizer | Img2datasetResizer:
    """The resizer the config's ``image`` section names (``image.resizer``)."""
    if image.resizer == "img2dataset":
        return Img2datasetResizer(image)
    return PillowResizer(image)
