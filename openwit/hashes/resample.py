"""Pillow's resampling of 8-bit greyscale images, bit for bit, as two matrix products.

The hashes (:mod:`.hashing`) shrink every image three times with Pillow: a 64x64 box-filtered
thumbnail to find bars, 32x32 Lanczos for pHash, 9x8 Lanczos for dHash. Pillow's resampler
is a scalar C loop: on a 256x192 image the two Lanczos resizes take ~0.8 ms of the ~2.3 ms a
stored image costs to hash. The same arithmetic as a pair of float64 matrix products (BLAS)
takes ~0.05 ms, and gives the *same bytes*, so the hashes stay imagehash's own:

- Pillow computes, per output pixel, filter weights in double precision, normalises them to
  sum 1 and rounds them to integers of 22 fractional bits; each output is
  ``clip((sum(pixel * weight) + 2**21) >> 22, 0, 255)``, along rows and then columns (or
  the other way round: :func:`pass_order`), the intermediate rounded to 8 bits.
- The sums are integers below 2**37 (255 x 2**22 x at most a few hundred taps), which a
  float64 holds exactly whatever order BLAS adds them in; ``>> 22`` is ``floor(x / 2**22)``,
  also exact. The weights are computed here with the same double-precision expressions and
  Python's ``math.sin`` (the C library's ``sin``, as Pillow's).

:func:`lanczos_matches_pillow` compares both on fixed test images the first time
:func:`lanczos_grey` is used; if this Pillow build differs (a changed algorithm, a compiler
that fuses multiply-adds differently), every call goes to Pillow instead, with a warning.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

#: Fractional bits of Pillow's integer weights for 8-bit images (``PRECISION_BITS``).
PRECISION_BITS = 22
_ONE = float(1 << PRECISION_BITS)
_HALF = float(1 << (PRECISION_BITS - 1))
_WRAP = float(1 << 31)


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x = x * math.pi
    return math.sin(x) / x


def _lanczos(x: float) -> float:
    return _sinc(x) * _sinc(x / 3) if -3.0 <= x < 3.0 else 0.0


#: Pillow's Lanczos filter reaches this many input pixels (scaled) on each side.
LANCZOS_SUPPORT = 3.0


@dataclass(frozen=True)
class Kernel:
    """Pillow's integer weights for one ``in_size -> out_size`` pass, as a dense matrix.

    ``matrix[i, j]`` is the weight output pixel ``i`` gives input pixel ``j`` (zero outside
    the filter's window); only inputs ``first:last`` have any weight. ``may_wrap``: some
    weighted sum of 8-bit pixels can pass 2**31 (see :func:`_round`).
    """

    matrix: np.ndarray
    first: int
    last: int
    may_wrap: bool


#: Larger images go to Pillow: a dense float64 copy and dense weights would cost more
#: memory than they save time (stored images are 256 px, eval images 512 px at most).
MATRIX_MAX_SIDE = 1024


@functools.lru_cache(maxsize=256)  # at most 256 x 32 x 1024 x 8 bytes = 64 MiB
def lanczos_kernel(in_size: int, out_size: int) -> Kernel:
    """The weights Pillow's ``precompute_coeffs`` and ``normalize_coeffs_8bpc`` give, for the
    Lanczos filter. Cached: the sizes of stored images repeat."""
    scale = float(in_size) / out_size
    filter_scale = max(scale, 1.0)
    support = LANCZOS_SUPPORT * filter_scale
    inverse = 1.0 / filter_scale
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    for out in range(out_size):
        center = 0.0 + (out + 0.5) * scale
        first = max(int(center - support + 0.5), 0)  # int() truncates toward 0, as C does
        stop = min(int(center + support + 0.5), in_size)
        taps = [_lanczos((x - center + 0.5) * inverse) for x in range(first, stop)]
        total = 0.0
        for tap in taps:  # summed in order, as Pillow does
            total += tap
        if total != 0.0:
            taps = [tap / total for tap in taps]
        for offset, tap in enumerate(taps):
            scaled = tap * _ONE
            matrix[out, first + offset] = int(scaled - 0.5 if tap < 0 else scaled + 0.5)
    matrix.setflags(write=False)
    used = np.flatnonzero(matrix.any(axis=0))
    first, last = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 0)
    largest = float(np.abs(matrix).sum(axis=1).max()) * 255 + _HALF
    return Kernel(matrix, first, last, may_wrap=largest >= _WRAP)


def _round(sums: np.ndarray, may_wrap: bool) -> np.ndarray:
    """Pillow's rounding of weighted sums to 8-bit pixels.

    Pillow sums in a C ``int``: enlarging a 2-pixel-wide image with Lanczos gives weights
    large enough to wrap around 2**31, and the pixel is whatever the wrapped sum says.
    The sums here are exact, so wrapping them gives Pillow's value.
    """
    sums = sums + _HALF
    if may_wrap:
        sums = np.mod(sums + _WRAP, 2 * _WRAP) - _WRAP
    return np.clip(np.floor(sums * (1 / _ONE)), 0, 255)


def _vertical(values: np.ndarray, rows: Kernel) -> np.ndarray:
    """The column pass; ``values`` holds only the input rows ``rows.first:rows.last``."""
    return _round(rows.matrix[:, rows.first : rows.last] @ values, rows.may_wrap)


def _horizontal(values: np.ndarray, width: int) -> np.ndarray:
    if width == values.shape[1]:
        return values
    columns = lanczos_kernel(values.shape[1], width)
    return _round(values @ columns.matrix.T, columns.may_wrap)


def _both_passes(values: np.ndarray, width: int, height: int, order: str) -> np.ndarray:
    """Resize in a given order: ``"rows"`` (the row pass first, on only the rows the column
    pass reads) or ``"columns"`` (the column pass first)."""
    rows = lanczos_kernel(values.shape[0], height)
    values = values[rows.first : rows.last]
    if order == "columns":
        return _horizontal(_vertical(values, rows), width)
    return _vertical(_horizontal(values, width), rows)


@functools.lru_cache(maxsize=4096)
def pass_order(in_height: int, in_width: int, width: int, height: int) -> str | None:
    """Which pass Pillow runs first for this resize: ``"rows"``, ``"columns"``, or None when
    that cannot be told (then Pillow itself resizes images of this shape).

    The order changes the rounding of the intermediate image, so it must be Pillow's, and
    Pillow's choice depends on its version: 13 runs the column pass first when the height
    shrinks much more than the width, 12 only for images over 100 times taller than wide.
    Rather than copying one version's rule, each shape is tried once: a noise image
    resized both ways, compared with Pillow's bytes (the two orders give different bytes
    for almost every noise image; up to three probes, and a shape that none of them tells
    apart, or that neither order matches, goes to Pillow). Shapes
    repeat (stored images come in a few sizes), so the probe is paid once per shape.
    """
    rng = np.random.default_rng(in_height * 7919 + in_width)
    possible = {"rows", "columns"}
    for _ in range(3):  # an order is out once one probe tells it from Pillow's bytes
        probe = rng.integers(0, 256, (in_height, in_width)).astype(np.uint8)
        pillows = pillow_resize(probe, width, height)
        values = probe.astype(np.float64)
        for order in sorted(possible):
            if not np.array_equal(_both_passes(values, width, height, order), pillows):
                possible.discard(order)
        if len(possible) < 2:
            break
    return possible.pop() if len(possible) == 1 else None


def _lanczos_resample(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pillow's two passes in Pillow's order (:func:`pass_order`), as float64 values of
    its 8-bit result."""
    in_height, in_width = pixels.shape
    values = pixels.astype(np.float64)
    if height == in_height:
        return _horizontal(values, width)
    if width == in_width:  # one pass: no order to choose
        return _both_passes(values, width, height, "rows")
    order = pass_order(in_height, in_width, width, height)
    if order is None:
        return pillow_resize(pixels, width, height).astype(np.float64)
    return _both_passes(values, width, height, order)


def pillow_resize(
    pixels: np.ndarray, width: int, height: int, box_filter: bool = False
) -> np.ndarray:
    """Pillow's own resize of greyscale pixels (Lanczos, or the box filter)."""
    from PIL import Image

    method = Image.Resampling.BOX if box_filter else Image.Resampling.LANCZOS
    return np.asarray(Image.fromarray(pixels, "L").resize((width, height), method))


def lanczos_matches_pillow() -> bool:
    """Whether the matrix products give Pillow's bytes on this machine (fixed test cases:
    shrinking and enlarging; noise, gradients and a checkerboard, which clips)."""
    rng = np.random.default_rng(12345)
    cases = [
        ((192, 256), (32, 32)),
        ((300, 217), (9, 8)),
        ((50, 61), (64, 64)),
        ((7, 2), (32, 32)),
        ((250, 2), (9, 8)),
    ]
    for (h, w), (out_w, out_h) in cases:
        noise = rng.integers(0, 256, (h, w))
        gradient = np.cumsum(rng.integers(-9, 10, (h, w)), axis=1) % 256
        checkerboard = (np.indices((h, w)).sum(0) % 2) * 255
        for pixels in (noise, gradient, checkerboard):
            pixels = pixels.astype(np.uint8)
            mine = _lanczos_resample(pixels, out_w, out_h).astype(np.uint8)
            if not np.array_equal(mine, pillow_resize(pixels, out_w, out_h)):
                return False
    return True


_verified: bool | None = None
_verify_lock = threading.Lock()


def _fast_path_verified() -> bool:
    global _verified
    if _verified is None:
        with _verify_lock:
            if _verified is None:
                _verified = lanczos_matches_pillow()
                if not _verified:
                    log.warning("this Pillow resamples differently; hashing uses Pillow itself")
    return _verified


def _require_grey(pixels: np.ndarray) -> None:
    if pixels.ndim != 2 or pixels.dtype != np.uint8 or min(pixels.shape) < 1:
        raise ValueError(f"expected a non-empty 2-d uint8 array, got {pixels.dtype}{pixels.shape}")


def lanczos_grey(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """``Image.fromarray(pixels, "L").resize((width, height), Image.LANCZOS)`` as a
    ``uint8`` array: Pillow's bytes, computed with matrix products."""
    _require_grey(pixels)
    sides = (*pixels.shape, width, height)
    if max(sides) > MATRIX_MAX_SIDE or not _fast_path_verified():
        return pillow_resize(pixels, width, height)
    return _lanczos_resample(pixels, width, height).astype(np.uint8)


@functools.lru_cache(maxsize=256)
def _stacked_columns(in_width: int, widths: tuple[int, ...]) -> tuple[np.ndarray, bool]:
    """The row-pass weights of several widths side by side (``in_width x sum(widths)``),
    and whether any of them may wrap. Cached like the kernels themselves."""
    kernels = [lanczos_kernel(in_width, width) for width in widths]
    stacked = np.ascontiguousarray(np.vstack([k.matrix for k in kernels]).T)
    stacked.setflags(write=False)
    return stacked, any(k.may_wrap for k in kernels)


def lanczos_thumbnails(pixels: np.ndarray, sizes: tuple[tuple[int, int], ...]) -> list[np.ndarray]:
    """``[lanczos_grey(pixels, w, h) for w, h in sizes]``, with one row pass for them all.

    The hashes take two thumbnails of the same pixels (32x32 for pHash, 9x8 for dHash):
    one matrix product with the weights of both widths side by side reads the image once
    and costs less than two. Each output is still exactly Pillow's (the row pass of one
    width does not depend on the other's columns). Shapes the shared pass does not cover
    (same width, shapes that Pillow resizes column pass first, large sides) go one by one.
    """
    _require_grey(pixels)
    in_height, in_width = pixels.shape
    widths = tuple(width for width, _ in sizes)
    heights = [height for _, height in sizes]
    shared = (
        max(in_height, in_width, *widths, *heights) <= MATRIX_MAX_SIDE
        and in_width not in widths
        and in_height not in heights
        and _fast_path_verified()
        and all(pass_order(in_height, in_width, w, h) == "rows" for w, h in sizes)
    )
    if not shared:
        return [lanczos_grey(pixels, width, height) for width, height in sizes]
    row_kernels = [lanczos_kernel(in_height, height) for height in heights]
    first = min(k.first for k in row_kernels)
    last = max(k.last for k in row_kernels)
    columns, may_wrap = _stacked_columns(in_width, widths)
    rows = _round(pixels[first:last].astype(np.float64) @ columns, may_wrap)
    thumbnails = []
    offset = 0
    for width, kernel in zip(widths, row_kernels, strict=True):
        part = rows[kernel.first - first : kernel.last - first, offset : offset + width]
        thumbnails.append(_vertical(part, kernel).astype(np.uint8))
        offset += width
    return thumbnails


_blas_limited = False


def single_threaded_blas() -> None:
    """Limit BLAS to one thread in this process (once; a process-wide setting).

    The hashes' matrix products are small and the stages already run one hashing thread
    per core. OpenBLAS would start its own threads for each product on top; they spin
    while waiting and, measured, doubled the CPU time of the image stage.
    """
    global _blas_limited
    if not _blas_limited:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
        _blas_limited = True
