"""Build stage ``image``: the size checks, on metadata.

The checks use the *original* size (``original_width``/``original_height``, set by the
download stage before resizing), as DataComp filters: an image whose shorter side is below
``image.min_side`` (200 px) or whose sides differ by more than ``image.max_aspect`` (3:1)
is rejected. The stage reads no image byte: the download stage stored them, with their
sha256 and perceptual hashes, and this stage passes on the metadata of the records that
pass with a pointer to their bytes (``image_file``, relative to the build directory, and
``image_row``), for the shard stage, the one reader that needs them again. A changed check
therefore reruns in seconds, without decoding an image.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from openwit import fs
from openwit.config import BuildConfig
from openwit.funnel import Rejection
from openwit.outputs import UnitOutput, rejections_table
from openwit.resources import Resources
from openwit.schemas import candidate_schema
from openwit.stage import Stage, StageContext
from openwit.unit_transform import UnitWork
from openwit.units import UnitReader, WorkUnit

STAGE = "image"
OUTPUT_SCHEMA = candidate_schema(STAGE)
#: The download stage's columns this stage reads: all but the bytes.
INPUT_COLUMNS = [c for c in candidate_schema("download").names if c != "image"]


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


class ImageCore(UnitWork):
    """Checks a unit of downloaded records (their metadata) and points at their bytes."""

    def __init__(self, min_side: int, max_aspect: float, build_dir: str) -> None:
        self.min_side, self.max_aspect = min_side, max_aspect
        self.build_dir = build_dir.rstrip("/")
        self.reader = UnitReader(INPUT_COLUMNS)

    def run(self, unit: WorkUnit) -> UnitOutput:
        (piece,) = unit.slices  # a unit lies inside one row group of one file
        table = self.reader.table(unit)
        first_row = self.reader.row_offset(piece.path, piece.row_group) + piece.start
        columns = ("uid", "original_width", "original_height")
        keep, rejected = [], []
        for record in table.select(columns).to_pylist():
            try:
                problem = size_rejection(self.min_side, self.max_aspect, record)
            except Exception as exc:  # a malformed record: counted, never a crash
                problem = Rejection.stage_error(record.get("uid", ""), STAGE, exc)
            keep.append(problem is None)
            if problem is not None:
                rejected.append(problem)
        rows = [first_row + i for i, kept in enumerate(keep) if kept]
        kept = table.filter(pa.array(keep, pa.bool_()))
        file = piece.path[len(self.build_dir) + 1 :]
        kept = kept.append_column("image_file", pa.array([file] * len(rows), pa.string()))
        kept = kept.append_column("image_row", pa.array(rows, pa.int32()))
        return UnitOutput(kept.select(OUTPUT_SCHEMA.names), rejections_table(rejected))


class ImageStage(Stage):
    """Size checks on the original image, on the records' metadata."""

    name = STAGE
    version = 3
    #: Metadata only: units as large as the record stages'.
    rows_per_unit = 50_000

    def fingerprint(self, config: BuildConfig) -> dict[str, Any]:
        image = config.image
        return {
            "version": self.version,
            "config": {"image": {"min_side": image.min_side, "max_aspect": image.max_aspect}},
        }

    def output_schema(self, config: BuildConfig) -> pa.Schema:
        return OUTPUT_SCHEMA

    def make_core(self, ctx: StageContext, resources: Resources) -> Callable[[], ImageCore]:
        if not ctx.input_files[0].startswith(ctx.build_dir):
            raise ValueError("the image stage reads the download stage of its own build")
        image = ctx.config.image
        return functools.partial(
            ImageCore, image.min_side, image.max_aspect, fs.join(ctx.build_dir)
        )
