"""The image stage's core: size checks on the original image, hashes of the stored one."""

from __future__ import annotations

import io

import imagehash
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from openwit.funnel import Rejection
from openwit.hashes.images import bytes_hashes as image_hashes
from openwit.hashes.images import hash_to_int as hash_to_uint64
from openwit.hashes.images import trim_borders
from openwit.pipeline.download.resize import PillowResizer, ResizeSettings
from openwit.pipeline.image.stage import check_image
from tests.download.servers import photo


def downloaded(width: int, height: int, seed: int = 0) -> dict:
    stored = PillowResizer(ResizeSettings(256))(photo(width, height, seed=seed))
    return {
        "uid": f"u{seed}",
        "original_width": stored.original_width,
        "original_height": stored.original_height,
        "width": stored.width,
        "height": stored.height,
        "image": stored.data,
    }


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
def test_checks_use_the_original_size(size, reason):
    (result,) = check_image(200, 3.0, downloaded(*size))
    if reason is None:
        assert not isinstance(result, Rejection)
        assert result["phash"] >= 0 and result["dhash"] >= 0
    else:
        assert isinstance(result, Rejection) and result.reason == reason
        assert result.stage == "image"


def test_a_small_stored_image_of_a_large_original_passes():
    record = downloaded(1600, 1200)
    assert record["width"] == 256 and record["height"] == 192  # below 200 after resizing
    (result,) = check_image(200, 3.0, record)
    assert not isinstance(result, Rejection)


def test_undecodable_stored_bytes_are_rejected_not_raised():
    record = dict(downloaded(640, 480), image=b"\xff\xd8\xff garbage")
    (result,) = check_image(200, 3.0, record)
    assert isinstance(result, Rejection) and result.reason == "decode_error"


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
    a = image_hashes(PillowResizer(ResizeSettings())(original).data)[0]
    b = image_hashes(PillowResizer(ResizeSettings())(recompressed.getvalue()).data)[0]
    other = image_hashes(PillowResizer(ResizeSettings())(photo(800, 600, seed=12)).data)[0]
    assert (a ^ b).bit_count() <= 4
    assert (a ^ other).bit_count() > 10


def test_a_core_that_raises_rejects_the_record_as_stage_error():
    from openwit.beam import core_outputs
    from openwit.pipeline.image.stage import sort_outcomes

    def core(record):
        if record["uid"] == "bad":
            raise RuntimeError("boom")
        yield record

    records = [{"uid": "a"}, {"uid": "bad"}, {"uid": "c"}]
    kept, rejected = sort_outcomes(records, [core_outputs(core, r) for r in records])
    assert [r["uid"] for r in kept] == ["a", "c"]
    assert [(r["uid"], r["reason"]) for r in rejected] == [("bad", "stage_error")]
    assert "RuntimeError: boom" in rejected[0]["detail"]
