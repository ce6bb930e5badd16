"""A first stage for dedup tests: emits ``candidate_schema("image")`` records from image files.

The real download and image stages are built elsewhere; this one reads a JSONL file of
``{"url", "caption", "file"}`` lines and builds the records those stages would hand to
dedup: the stored JPEG bytes, their sha256 and the hashes of
``openwit.hashes.images.bytes_hashes``. It lives in a module so Beam's multi-processing
workers can unpickle it.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa

from openwit.config import BuildConfig
from openwit.hashes.images import bytes_hashes
from openwit.schemas import candidate_schema, uid_for
from openwit.stage import CoreStage, StageContext, StageResult

IMAGE_SCHEMA = candidate_schema("image")


def image_record(source: str, offset_and_line: tuple[int, str]) -> Iterator[dict[str, Any]]:
    from PIL import Image

    offset, line = offset_and_line
    item = json.loads(line)
    data = Path(item["file"]).read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
    phash, dhash = bytes_hashes(data)
    yield {
        "uid": uid_for(item["url"], item["caption"]),
        "url": item["url"],
        "text": item["caption"],
        "source": source,
        "source_offset": offset,
        "lang": "en",
        "lang_score": 0.99,
        "query_ids": [0],
        "width": width,
        "height": height,
        "original_width": width,
        "original_height": height,
        "sha256": hashlib.sha256(data).hexdigest(),
        "image": data,
        "phash": phash,
        "dhash": dhash,
    }


def _image_core(source: str):
    return functools.partial(image_record, source)


class ToyImageSource(CoreStage):
    name = "toy_images"
    config_keys = ("inputs",)

    def output_schema(self, config: BuildConfig) -> pa.Schema:
        return IMAGE_SCHEMA

    def make_core(self, config: BuildConfig):
        return functools.partial(_image_core, config.inputs[0].path)

    def read(self, pipeline: Any, ctx: StageContext) -> Any:
        lines = Path(ctx.config.inputs[0].path).read_text(encoding="utf-8").splitlines()
        return pipeline | "Read lines" >> beam.Create(list(enumerate(lines)))

    def run(self, ctx: StageContext) -> StageResult | None:
        super().run(ctx)
        lines = Path(ctx.config.inputs[0].path).read_text(encoding="utf-8").splitlines()
        return StageResult(n_in=len(lines))
