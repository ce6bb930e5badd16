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
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from openwit.hashes.resample import lanczos_grey, lanczos_thumbnails, pillow_resize

if TYPE_CHECKING:
    import imagehash
    from PIL import Image

HASH_BITS = 64


def hash_to_int(image_hash: imagehash.ImageHash) -> int:
    """An 8x8 imagehash as an unsigned 64-bit integer (row-major bits, first bit highest)."""
    bits = np.asarray(image_hash.hash, dtype=bool)
    if bits.size != HASH_BITS:
        raise ValueError(f"expected a {HASH_BITS}-bit hash, got {bits.size} bits")
    return _bits_to_int(bits)


def int_to_hash(value: int) -> imagehash.ImageHash:
    """The inverse of :func:`hash_to_int`."""
    import imagehash

    if not 0 <= value < 2**HASH_BITS:
        raise ValueError(f"not an unsigned {HASH_BITS}-bit value: {value}")
    raw = np.frombuffer(int(value).to_bytes(8, "big"), dtype=np.uint8)
    return imagehash.ImageHash(np.unpackbits(raw).astype(bool).reshape(8, 8))


def _grey(image: Image.Image) -> np.ndarray:
    """The image's greyscale pixels (Pillow's ``convert("L")``) as a 2-d ``uint8`` array."""
    return np.asarray(image if image.mode == "L" else image.convert("L"))


def _bits_to_int(bits: np.ndarray) -> int:
    return int.from_bytes(np.packbits(bits.reshape(-1)).tobytes(), "big")


#: imagehash's thumbnails (width, height): pHash's 32x32, dHash's 9x8.
PHASH_THUMBNAIL = (32, 32)
DHASH_THUMBNAIL = (9, 8)


def _phash_of_thumbnail(small: np.ndarray) -> int:
    """pHash from its 32x32 thumbnail: the 2-d DCT-II, and the 8x8 lowest frequencies
    compared with their median."""
    import scipy.fftpack

    low = scipy.fftpack.dct(scipy.fftpack.dct(small, axis=0), axis=1)[:8, :8]
    ordered = sorted(low.reshape(-1).tolist())
    median = (ordered[31] + ordered[32]) / 2  # numpy.median's arithmetic for 64 values
    return _bits_to_int(low > median)


def _dhash_of_thumbnail(small: np.ndarray) -> int:
    """dHash from its 9x8 thumbnail: each pixel compared with its left neighbour."""
    return _bits_to_int(small[:, 1:] > small[:, :-1])


def _phash_pixels(grey: np.ndarray) -> int:
    """imagehash's pHash of greyscale pixels (a 32x32 Lanczos thumbnail first)."""
    return _phash_of_thumbnail(lanczos_grey(grey, *PHASH_THUMBNAIL))


def _dhash_pixels(grey: np.ndarray) -> int:
    """imagehash's dHash of greyscale pixels (a 9x8 Lanczos thumbnail first)."""
    return _dhash_of_thumbnail(lanczos_grey(grey, *DHASH_THUMBNAIL))


def _hash_pixels(grey: np.ndarray) -> tuple[int, int]:
    """``(phash, dhash)`` of greyscale pixels; both thumbnails from one row pass."""
    small, tiny = lanczos_thumbnails(grey, (PHASH_THUMBNAIL, DHASH_THUMBNAIL))
    return _phash_of_thumbnail(small), _dhash_of_thumbnail(tiny)


def phash_int(image: Image.Image) -> int:
    """imagehash's pHash (8x8, its defaults) of a PIL image, as an integer."""
    return _phash_pixels(_grey(image))


def dhash_int(image: Image.Image) -> int:
    """imagehash's dHash (8x8, its defaults) of a PIL image, as an integer."""
    return _dhash_pixels(_grey(image))


#: Bars are found on a greyscale thumbnail of this size (box-filtered), so an original and
#: its downscaled, recompressed copy see the same bars: noise and resolution average out.
BAR_THUMBNAIL = 64
#: A thumbnail line (row or column) belongs to a bar when every pixel is within this many
#: grey levels of the outermost line's median.
BAR_TOLERANCE = 4
#: Never cut more than this share of the width or height from one side.
BAR_MAX_SHARE = 0.4


def _median(values: list[int]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[middle])
    return (ordered[middle - 1] + ordered[middle]) / 2


def _bar_width(lows: list[int], highs: list[int], outermost: list[int]) -> int:
    """How many thumbnail lines, counted from the edge inward, belong to a uniform bar.

    ``lows[i]``/``highs[i]``: the darkest and brightest pixel of line ``i`` (edge first);
    ``outermost``: the pixels of line 0. A line is uniform when all its pixels lie within
    ``BAR_TOLERANCE`` of the median of the outermost line.
    """
    reference = _median(outermost)
    low, high = reference - BAR_TOLERANCE, reference + BAR_TOLERANCE
    limit = int(len(lows) * BAR_MAX_SHARE)
    width = 0
    while width < limit and lows[width] >= low and highs[width] <= high:
        width += 1
    return width


def _border_box(grey: np.ndarray) -> tuple[int, int, int, int]:
    size = BAR_THUMBNAIL
    thumb = pillow_resize(grey, size, size, box_filter=True)
    lows, highs = thumb.min(axis=1).tolist(), thumb.max(axis=1).tolist()
    top = _bar_width(lows, highs, thumb[0].tolist())
    bottom = size - _bar_width(lows[::-1], highs[::-1], thumb[-1].tolist())
    inner = thumb[top:bottom]
    lows, highs = inner.min(axis=0).tolist(), inner.max(axis=0).tolist()
    left = _bar_width(lows, highs, inner[:, 0].tolist())
    right = size - _bar_width(lows[::-1], highs[::-1], inner[:, -1].tolist())
    height, width = grey.shape
    return (
        round(left * width / size),
        round(top * height / size),
        round(right * width / size),
        round(bottom * height / size),
    )


def border_box(image: Image.Image) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` of the image without its uniform bars."""
    return _border_box(_grey(image))


def trim_borders(image: Image.Image) -> Image.Image:
    """``image`` without uniform bars on its sides (the same image when it has none)."""
    box = border_box(image)
    if box == (0, 0, *image.size):
        return image
    return image.crop(box)


def hash_pair(image: Image.Image) -> tuple[int, int]:
    """``(phash, dhash)`` of the image exactly as given (no trimming)."""
    return _hash_pixels(_grey(image))


def image_hashes(image: Image.Image) -> tuple[int, int]:
    """``(phash, dhash)`` of a decoded image, exactly as the build stores them.

    The hashes are imagehash's, of the image with its uniform bars trimmed. imagehash
    converts to greyscale itself, so any PIL mode is fine. The build hashes the image as it
    is stored (after resizing), which is what the audit later reads from the shards.
    """
    # One greyscale conversion serves the trim and both hashes (cropping and converting
    # commute); the crop of the pixel array is Pillow's crop.
    grey = _grey(image)
    left, top, right, bottom = _border_box(grey)
    return _hash_pixels(grey[top:bottom, left:right])


def bytes_hashes(data: bytes) -> tuple[int, int]:
    """``(phash, dhash)`` of encoded image bytes (a stored JPEG)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image_hashes(image)


def bytes_hashes_or_errors(images: Sequence[bytes]) -> list[tuple[int, int] | str]:
    """:func:`bytes_hashes` of each image, or ``"Type: message"`` where it raises.

    A batch for a worker process (:mod:`openwit.pipeline.image.hashpool`): one call per batch
    instead of one per image, and the errors as text, which always pickles.
    """
    results: list[tuple[int, int] | str] = []
    for data in images:
        try:
            results.append(bytes_hashes(data))
        except Exception as exc:
            results.append(f"{type(exc).__name__}: {exc}")
    return results


def hamming(a: int, b: int) -> int:
    """Hamming distance between two 64-bit hash integers."""
    return (int(a) ^ int(b)).bit_count()


def as_uint64_array(values: object) -> np.ndarray:
    """Hash integers (a list, an Arrow column, an array) as a ``uint64`` numpy array."""
    if hasattr(values, "to_numpy"):
        values = values.to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.uint64)
