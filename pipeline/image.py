"""Build stage ``image``: size checks, then the perceptual hashes the dedup stage compares.

The checks use the *original* size (``original_width``/``original_height``, set by the
download stage before resizing), as DataComp filters: an image whose shorter side is below
``image.min_side`` (200 px) or whose sides differ by more than ``image.max_aspect`` (3:1)
is rejected. The hashes are taken from the stored bytes, the pixels that end up in the
shards: pHash and dHash from imagehash (8x8) as unsigned 64-bit integers, computed by
:func:`openwit.dedup.hashing.bytes_hashes`, the one hashing that the dedup stage and the
overlap audit share (uniform bars trimmed first; ``int(str(h), 16)`` of imagehash's hash;
Hamming distance ``(a ^ b).bit_count()``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from openwit.config import BuildConfig
from openwit.dedup.hashing import bytes_hashes
from openwit.funnel import Rejection
from openwit.schemas import candidate_schema
from openwit.stage import CoreStage

STAGE = "image"


def check_image(
    min_side: int, max_aspect: float, record: dict[str, Any]
) -> Iterator[dict[str, Any] | Rejection]:
    """Keep a downloaded record that passes the size checks, with its hashes added."""
    uid = record["uid"]
    width, height = record["original_width"], record["original_height"]
    if min(width, height) < min_side:
        yield Rejection(uid, STAGE, "image_too_small", f"{width}x{height}, min side {min_side}")
        return
    if max(width, height) > max_aspect * min(width, height):
        aspect = max(width, height) / min(width, height)
        yield Rejection(uid, STAGE, "bad_aspect_ratio", f"{width}x{height} is {aspect:.2f}:1")
        return
    try:
        phash, dhash = bytes_hashes(record["image"])
    except Exception as exc:  # the download stage wrote these bytes; still never crash
        yield Rejection(uid, STAGE, "decode_error", f"{type(exc).__name__}: {exc}"[:300])
        return
    yield {**record, "phash": phash, "dhash": dhash}


def image_core(min_side: int, max_aspect: float):
    return functools.partial(check_image, min_side, max_aspect)


class ImageStage(CoreStage):
    """Size checks on the original image; pHash and dHash of the stored one."""

    name = STAGE
    version = 1

    def fingerprint(self, config: BuildConfig) -> dict[str, Any]:
        image = config.image
        return {
            "version": self.version,
            "config": {"image": {"min_side": image.min_side, "max_aspect": image.max_aspect}},
        }

    def output_schema(self, config: BuildConfig) -> pa.Schema:
        return candidate_schema("image")

    def make_core(self, config: BuildConfig):
        return functools.partial(image_core, config.image.min_side, config.image.max_aspect)

    def expand(self, records: Any, ctx: Any) -> tuple[Any, Any]:
        from openwit.pipeline.parallel import apply_core_threaded

        # Hashing is Pillow work (decode, resize), which releases the GIL: a thread per core.
        return apply_core_threaded(records, self.name, self.make_core(ctx.config))
