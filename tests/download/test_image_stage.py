"""The image stage's size checks (on metadata) and the hashes of the stored bytes, which the
download stage takes and the image stage passes on."""

from __future__ import annotations

import io

import imagehash
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from openwit.config import ImageConfig
from openwit.hashes.images import bytes_hashes as image_hashes
from openwit.hashes.images import hash_to_int as hash_to_uint64
from openwit.hashes.images import trim_borders
from openwit.pipeline.download.resize import PillowResizer
from openwit.pipeline.image.stage import ImageCore
from openwit.schemas import candidate_schema
from openwit.units import plan_units
from tests.download.servers import photo
from tests.download.stages import candidate


def downloaded(width: int, height: int, seed: int = 0) -> dict:
    stored = PillowResizer(ImageConfig(resize_max_side=256))(photo(width, height, seed=seed))
    phash, dhash = image_hashes(stored.data)
    return {
        **candidate(f"http://127.0.0.1/{seed}.jpg", f"picture {seed}"),
        "uid": f"u{seed}",
        "original_width": stored.original_width,
        "original_height": stored.original_height,
        "width": stored.width,
        "height": stored.height,
        "sha256": "0" * 64,
        "image": stored.data,
        "phash": phash,
        "dhash": dhash,
    }


def check_records(folder, records: list[dict]) -> tuple[list[dict], list[dict]]:
    """The image core on ``records`` stored as a download part: (kept, rejections)."""
    part = folder / "stages" / "download" / "a" / "part-00000000.parquet"
    part.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records, schema=candidate_schema("download")), part)
    core = ImageCore(200, 3.0, str(folder))
    kept, rejected = [], []
    for unit in plan_units([str(part)], 2):
        output = core.start(unit)()
        kept += output.kept.to_pylist()
        rejected += output.rejected.to_pylist()
    return kept, rejected


def check_image(folder, record: dict) -> dict:
    kept, rejected = check_records(folder, [record])
    (result,) = kept or rejected
    return result


@pytest.mark.parametrize(
    ("size", "reason"),
    [
        ((640, 480), None),
        ((200, 200), None),  # exactly the minimum side passes
        ((199, 400), "image_too_small"),
        ((600, 200), None),  # exactly 3:1 passes
        ((601, 200), "bad_aspect_ratio"),
        ((210, 700), "bad_aspect_ratio"),
    ],
)
def test_checks_use_the_original_size(tmp_path, size, reason):
    result = check_image(tmp_path, downloaded(*size))
    if reason is None:
        assert "reason" not in result
        assert result["phash"] >= 0 and result["dhash"] >= 0
        assert "image" not in result  # metadata only: the bytes stay with the download
        assert (result["image_file"], result["image_row"]) == (
            "stages/download/a/part-00000000.parquet",
            0,
        )
    else:
        assert result["reason"] == reason and result["stage"] == "image"


def test_a_small_stored_image_of_a_large_original_passes(tmp_path):
    record = downloaded(1600, 1200)
    assert record["width"] == 256 and record["height"] == 192  # below 200 after resizing
    assert "reason" not in check_image(tmp_path, record)


def test_the_checks_never_read_an_image_byte(tmp_path):
    """Metadata only: bytes that would not even decode pass the checks untouched."""
    record = dict(downloaded(640, 480), image=b"\xff\xd8\xff garbage")
    result = check_image(tmp_path, record)
    assert "reason" not in result and result["phash"] == record["phash"]


def test_pointers_follow_the_rows_of_the_file(tmp_path):
    records = [downloaded(640, 480, seed=i) for i in range(5)]
    records[2] = dict(records[2], original_width=100)  # rejected: its row is skipped
    kept, rejected = check_records(tmp_path, records)
    assert [r["image_row"] for r in kept] == [0, 1, 3, 4]
    assert [r["uid"] for r in rejected] == ["u2"]
    assert [r["phash"] for r in kept] == [records[i]["phash"] for i in (0, 1, 3, 4)]


def test_hashes_are_imagehash_values_as_uint64():
    """Without uniform bars the stored hashes are imagehash's own, read as integers."""
    pixels = np.random.default_rng(7).integers(0, 256, (400, 500, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    phash, dhash = image_hashes(buffer.getvalue())
    image = Image.open(io.BytesIO(buffer.getvalue()))
    assert phash == int(str(imagehash.phash(image)), 16)
    assert dhash == int(str(imagehash.dhash(image)), 16)
    assert 0 <= phash < 2**64 and 0 <= dhash < 2**64


def test_hashes_of_a_letterboxed_image_are_those_of_the_picture_inside():
    picture = Image.open(io.BytesIO(photo(400, 300, seed=7))).convert("RGB")
    boxed = Image.new("RGB", (400, 400), (0, 0, 0))
    boxed.paste(picture, (0, 50))
    buffer = io.BytesIO()
    boxed.save(buffer, "JPEG", quality=95)
    trimmed = trim_borders(Image.open(io.BytesIO(buffer.getvalue())).convert("L"))
    assert trimmed.size != boxed.size
    assert image_hashes(buffer.getvalue())[0] == int(str(imagehash.phash(trimmed)), 16)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 10_000))
def test_hamming_distance_of_the_integers_is_imagehash_distance(seed_a, seed_b):
    a = Image.open(io.BytesIO(photo(96, 96, seed=seed_a, quality=70)))
    b = Image.open(io.BytesIO(photo(96, 96, seed=seed_b, quality=70)))
    ha, hb = imagehash.phash(a), imagehash.phash(b)
    assert (hash_to_uint64(ha) ^ hash_to_uint64(hb)).bit_count() == ha - hb


def test_near_duplicates_stay_near():
    original = photo(800, 600, seed=11)
    recompressed = io.BytesIO()
    Image.open(io.BytesIO(original)).resize((700, 525)).save(recompressed, "JPEG", quality=60)
    a = image_hashes(PillowResizer(ImageConfig())(original).data)[0]
    b = image_hashes(PillowResizer(ImageConfig())(recompressed.getvalue()).data)[0]
    other = image_hashes(PillowResizer(ImageConfig())(photo(800, 600, seed=12)).data)[0]
    assert (a ^ b).bit_count() <= 4
    assert (a ^ other).bit_count() > 10


def test_a_malformed_record_is_a_stage_error_not_a_crash(tmp_path):
    records = [
        downloaded(640, 480, seed=1),
        dict(downloaded(640, 480, seed=2), original_width=None),
    ]
    kept, rejected = check_records(tmp_path, records)
    assert [r["uid"] for r in kept] == ["u1"]
    assert [(r["uid"], r["reason"]) for r in rejected] == [("u2", "stage_error")]
    assert "TypeError" in rejected[0]["detail"]
