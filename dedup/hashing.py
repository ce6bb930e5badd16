"""Perceptual hashes as 64-bit integers: the one conversion every stage must share.

The ``phash`` and ``dhash`` columns of a candidate record (CONTRACTS.md) are imagehash's 8x8
hashes stored as ``uint64``. The image stage computes them, the dedup stage and the overlap
audit compare them, so all three use :func:`image_hashes` / :func:`hash_to_int` from here.

What is hashed: the image after :func:`trim_borders` cuts off uniform bars (letterboxing,
pillarboxing, a frame). A thumbnail fitted into a box of another shape then hashes like the
picture itself; an image without such bars is hashed unchanged. The detector measurements
behind this choice are in docs/dedup.md.

The conversion: imagehash gives an 8x8 boolean array; its bits are read row by row, the first
bit being the most significant. That is the integer imagehash's own hex string spells, so
``hash_to_int(h) == int(str(h), 16)`` and ``int_to_hash(v)`` gives back an ``ImageHash`` that
compares equal to ``h``. Hamming distance between two hashes is the popcount of the XOR of
their integers.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import imagehash
    from PIL import Image

HASH_BITS = 64


def hash_to_int(image_hash: imagehash.ImageHash) -> int:
    """An 8x8 imagehash as an unsigned 64-bit integer (row-major bits, first bit highest)."""
    bits = np.asarray(image_hash.hash, dtype=bool).reshape(-1)
    if bits.size != HASH_BITS:
        raise ValueError(f"expected a {HASH_BITS}-bit hash, got {bits.size} bits")
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def int_to_hash(value: int) -> imagehash.ImageHash:
    """The inverse of :func:`hash_to_int`."""
    import imagehash

    if not 0 <= value < 2**HASH_BITS:
        raise ValueError(f"not an unsigned {HASH_BITS}-bit value: {value}")
    raw = np.frombuffer(int(value).to_bytes(8, "big"), dtype=np.uint8)
    return imagehash.ImageHash(np.unpackbits(raw).astype(bool).reshape(8, 8))


def phash_int(image: Image.Image) -> int:
    """imagehash's pHash (8x8, its defaults) of a PIL image, as an integer."""
    import imagehash

    return hash_to_int(imagehash.phash(image))


def dhash_int(image: Image.Image) -> int:
    """imagehash's dHash (8x8, its defaults) of a PIL image, as an integer."""
    import imagehash

    return hash_to_int(imagehash.dhash(image))


#: Bars are found on a greyscale thumbnail of this size (box-filtered), so an original and
#: its downscaled, recompressed copy see the same bars: noise and resolution average out.
BAR_THUMBNAIL = 64
#: A thumbnail line (row or column) belongs to a bar when every pixel is within this many
#: grey levels of the outermost line's median.
BAR_TOLERANCE = 4
#: Never cut more than this share of the width or height from one side.
BAR_MAX_SHARE = 0.4


def _bar_width(lines: np.ndarray) -> int:
    """How many thumbnail lines, counted from the edge inward, belong to a uniform bar."""
    reference = np.median(lines[0])
    uniform = (np.abs(lines - reference) <= BAR_TOLERANCE).all(axis=1)
    width = int(np.argmin(uniform)) if not uniform.all() else len(uniform)
    return min(width, int(len(lines) * BAR_MAX_SHARE))


def border_box(image: Image.Image) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` of the image without its uniform bars."""
    from PIL import Image

    size = BAR_THUMBNAIL
    thumb = image.convert("L").resize((size, size), Image.Resampling.BOX)
    grey = np.asarray(thumb, dtype=np.float32)
    top = _bar_width(grey)
    bottom = size - _bar_width(grey[::-1])
    inner = grey[top:bottom]
    left = _bar_width(inner.T)
    right = size - _bar_width(inner.T[::-1])
    width, height = image.size
    return (
        round(left * width / size),
        round(top * height / size),
        round(right * width / size),
        round(bottom * height / size),
    )


def trim_borders(image: Image.Image) -> Image.Image:
    """``image`` without uniform bars on its sides (the same image when it has none)."""
    box = border_box(image)
    if box == (0, 0, *image.size):
        return image
    return image.crop(box)


def hash_pair(image: Image.Image) -> tuple[int, int]:
    """``(phash, dhash)`` of the image exactly as given (no trimming)."""
    return phash_int(image), dhash_int(image)


def image_hashes(image: Image.Image) -> tuple[int, int]:
    """``(phash, dhash)`` of a decoded image, exactly as the build stores them.

    The hashes are imagehash's, of the image with its uniform bars trimmed. imagehash
    converts to greyscale itself, so any PIL mode is fine. The build hashes the image as it
    is stored (after resizing), which is what the audit later reads from the shards.
    """
    # imagehash converts to greyscale itself; doing it once here serves the trim and both
    # hashes (the same pixels: cropping and converting commute).
    return hash_pair(trim_borders(image.convert("L")))


def bytes_hashes(data: bytes) -> tuple[int, int]:
    """``(phash, dhash)`` of encoded image bytes (a stored JPEG)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image_hashes(image)


def hamming(a: int, b: int) -> int:
    """Hamming distance between two 64-bit hash integers."""
    return (int(a) ^ int(b)).bit_count()


def as_uint64_array(values: object) -> np.ndarray:
    """Hash integers (a list, an Arrow column, an array) as a ``uint64`` numpy array."""
    if hasattr(values, "to_numpy"):
        values = values.to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.uint64)
