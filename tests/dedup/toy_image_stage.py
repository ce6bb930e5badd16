"""A first stage for dedup tests: emits ``candidate_schema("image")`` records from image files.

The real download and image stages are tested elsewhere; this one reads a JSONL file of
``{"url", "caption", "file"}`` lines and builds the metadata those stages would hand to
dedup: the stored JPEG's sha256 and the hashes of ``openwit.hashes.images.bytes_hashes``
(``"nohash": true`` on a line leaves them out). It lives in a module so Beam's workers can
unpickle it.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from openwit.config import BuildConfig
from openwit.hashes.images import bytes_hashes
from openwit.outputs import UnitOutput, rejections_table
from openwit.schemas import candidate_schema, uid_for
from openwit.stage import Stage, StageContext, StageResult
from openwit.unit_transform import UnitWork, run_units
from openwit.units import WorkUnit

IMAGE_SCHEMA = candidate_schema("image")


def image_record(source: str, offset: int, line: str) -> dict[str, Any]:
    from PIL import Image

    item = json.loads(line)
    data = Path(item["file"]).read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
    phash, dhash = (None, None) if item.get("nohash") else bytes_hashes(data)
    return {
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
        "sha256": None if item.get("nohash") else hashlib.sha256(data).hexdigest(),
        "phash": phash,
        "dhash": dhash,
        "image_file": item["file"],
        "image_row": 0,
    }


class ImageLinesCore(UnitWork):
    def run(self, unit: WorkUnit) -> UnitOutput:
        path = unit.payload
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        records = [image_record(path, offset, line) for offset, line in enumerate(lines)]
        table = pa.Table.from_pylist(records, schema=IMAGE_SCHEMA).sort_by("uid")
        return UnitOutput(table, rejections_table([]), n_in=len(lines))


class ToyImageSource(Stage):
    name = "toy_images"
    config_keys = ("inputs",)

    def output_schema(self, config: BuildConfig) -> pa.Schema:
        return IMAGE_SCHEMA

    def run(self, ctx: StageContext) -> StageResult:
        units = [WorkUnit(0, payload=ctx.config.inputs[0].path)]
        with ctx.new_pipeline(1) as pipeline:
            fn = ctx.run_units_fn(ImageLinesCore, IMAGE_SCHEMA)
            run_units(pipeline, "Images", units, None, fn)
        return StageResult(units=1)
