"""Build stage ``image``: size checks, then the perceptual hashes the dedup stage compares.

The checks use the *original* size (``original_width``/``original_height``, set by the
download stage before resizing), as DataComp filters: an image whose shorter side is below
``image.min_side`` (200 px) or whose sides differ by more than ``image.max_aspect`` (3:1)
is rejected; so are stored bytes that are not a JPEG, WebP or PNG (``unknown_image_format``,
``missing_image``) or do not decode (``decode_error``). The hashes are taken from the stored
bytes, the pixels that end up in the shards: pHash and dHash from imagehash (8x8) as
unsigned 64-bit integers, computed by :func:`openwit.hashes.images.bytes_hashes_or_errors`,
the hashing the dedup stage and the overlap audit share.

The stage's output is metadata only: the bytes stay in the download stage's part files,
and each record carries where (``image_file``, relative to the build directory, and
``image_row``), for the shard stage, the one reader that needs them again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from openwit import fs
from openwit.config import BuildConfig
from openwit.funnel import Rejection
from openwit.hashes.images import bytes_hashes_or_errors
from openwit.hashes.resample import single_threaded_blas
from openwit.outputs import UnitOutput, rejections_table
from openwit.pipeline.shard.tars import image_extension
from openwit.resources import Resources
from openwit.schemas import candidate_schema
from openwit.stage import Stage, StageContext
from openwit.units import UnitReader, WorkUnit

STAGE = "image"
OUTPUT_SCHEMA = candidate_schema(STAGE)


def size_rejection(min_side: int, max_aspect: float, record: dict[str, Any]) -> Rejection | None:
    """Why a downloaded record fails the size checks (on its original size), or None."""
    uid = record["uid"]
    width, height = record["original_width"], record["original_height"]
    if min(width, height) < min_side:
        return Rejection(uid, STAGE, "image_too_small", f"{width}x{height}, min side {min_side}")
    if max(width, height) > max_aspect * min(width, height):
        aspect = max(width, height) / min(width, height)
        return Rejection(uid, STAGE, "bad_aspect_ratio", f"{width}x{height} is {aspect:.2f}:1")
    return None


def bytes_rejection(uid: str, data: bytes | None) -> Rejection | None:
    """Why stored bytes cannot become a sample's image (none, or not JPEG/WebP/PNG)."""
    if not data:
        return Rejection(uid, STAGE, "missing_image", "")
    if image_extension(data) is None:
        return Rejection(uid, STAGE, "unknown_image_format", data[:8].hex())
    return None


class ImageCore:
    """Checks and hashes a unit of downloaded records; hashes in ``threads`` threads."""

    in_flight = 0

    def __init__(self, min_side: int, max_aspect: float, build_dir: str, threads: int) -> None:
        single_threaded_blas()  # the hashes' small matrix products, one thread per core
        self.min_side, self.max_aspect = min_side, max_aspect
        self.build_dir = build_dir.rstrip("/")
        self.threads = threads
        self.pool = ThreadPoolExecutor(threads) if threads > 1 else None
        self.reader = UnitReader()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()

    def hashes(self, images: Sequence[bytes]) -> list[tuple[int, int] | str]:
        if self.pool is None or len(images) < 2:
            return bytes_hashes_or_errors(images)
        size = -(-len(images) // self.threads)
        chunks = [images[i : i + size] for i in range(0, len(images), size)]
        return [h for part in self.pool.map(bytes_hashes_or_errors, chunks) for h in part]

    def start(self, unit: WorkUnit) -> Callable[[], UnitOutput]:
        output = self.check(unit)
        return lambda: output

    def check(self, unit: WorkUnit) -> UnitOutput:
        (piece,) = unit.slices  # a unit lies inside one row group of one file
        table = self.reader.table(unit)
        first_row = self.reader.row_offset(piece.path, piece.row_group) + piece.start
        columns = ("uid", "original_width", "original_height")
        meta = table.select(columns).to_pylist()
        images = table.column("image").to_pylist()
        rejected: list[Rejection] = []
        verdicts: list[Rejection | None] = []
        for record, data in zip(meta, images):
            try:
                problem = size_rejection(self.min_side, self.max_aspect, record)
                problem = problem or bytes_rejection(record["uid"], data)
            except Exception as exc:  # a malformed record: counted, never a crash
                problem = Rejection.stage_error(record.get("uid", ""), STAGE, exc)
            verdicts.append(problem)
        to_hash = [i for i, v in enumerate(verdicts) if v is None]
        phash: list[int] = []
        dhash: list[int] = []
        keep = [False] * len(verdicts)
        for index, result in zip(to_hash, self.hashes([images[i] for i in to_hash])):
            if isinstance(result, str):
                verdicts[index] = Rejection(meta[index]["uid"], STAGE, "decode_error", result[:300])
            else:
                keep[index] = True
                phash.append(result[0])
                dhash.append(result[1])
        rejected = [v for v in verdicts if v is not None]
        rows = [first_row + i for i, k in enumerate(keep) if k]
        kept = table.filter(pa.array(keep, pa.bool_())).drop_columns(["image"])
        kept = kept.append_column("phash", pa.array(phash, pa.uint64()))
        kept = kept.append_column("dhash", pa.array(dhash, pa.uint64()))
        file = piece.path[len(self.build_dir) + 1 :]
        kept = kept.append_column("image_file", pa.array([file] * len(rows), pa.string()))
        kept = kept.append_column("image_row", pa.array(rows, pa.int32()))
        return UnitOutput(kept.select(OUTPUT_SCHEMA.names), rejections_table(rejected))


class ImageStage(Stage):
    """Size checks on the original image; pHash and dHash of the stored one."""

    name = STAGE
    version = 2
    #: Records per work unit: a few seconds of hashing, enough units to spread.
    rows_per_unit = 500

    def fingerprint(self, config: BuildConfig) -> dict[str, Any]:
        image = config.image
        return {
            "version": self.version,
            "config": {"image": {"min_side": image.min_side, "max_aspect": image.max_aspect}},
        }

    def output_schema(self, config: BuildConfig) -> pa.Schema:
        return OUTPUT_SCHEMA

    def make_core(self, ctx: StageContext, resources: Resources) -> Callable[[], ImageCore]:
        image = ctx.config.image
        if not ctx.input_files[0].startswith(ctx.build_dir):
            raise ValueError("the image stage reads the download stage of its own build")
        return functools.partial(
            _image_core, image.min_side, image.max_aspect, ctx.build_dir, resources
        )


def _image_core(
    min_side: int, max_aspect: float, build_dir: str, resources: Resources
) -> ImageCore:
    return ImageCore(min_side, max_aspect, fs.join(build_dir), resources.cpu_threads())
