"""The eval-overlap detector: variants, the match rule, and its measured quality."""

from __future__ import annotations

import numpy as np
import pytest

from bench.detector_quality import (
    LOOKALIKE,
    QUALITY_TRANSFORMS,
    build_labelled_set,
    default_settings,
    evaluate,
    radius_sweep,
)
from openwit.config import DedupConfig
from openwit.dedup import transforms as tf
from openwit.dedup.detector import Detector, EvalIndex
from openwit.dedup.evalhash import EvalCatalog, hash_eval_set
from openwit.evalsets import EvalSet
from openwit.hashes.images import image_hashes
from tests.dedup.images import photo, write_eval_set


def test_variants_are_full_crops_and_their_mirrors():
    detector = Detector()
    names = [v.name for v in detector.variants()]
    assert len(names) == 2 * (1 + 7 * len(detector.crop_steps))
    assert names[0] == "full" and "mirror-full" in names
    assert len(set(names)) == len(names)
    assert detector.to_json()["variants"] == len(names)


def test_detector_follows_the_config():
    config = DedupConfig(eval_phash_radius=6, eval_dhash_radius=None, eval_mirror=False)
    detector = Detector.from_config(config)
    assert (detector.phash_radius, detector.dhash_radius, detector.flip) == (6, None, False)
    assert len(detector.variants()) == 1 + 7 * 3


def test_config_rejects_crop_steps_outside_a_side():
    with pytest.raises(ValueError):
        DedupConfig(eval_crop_steps=[0.7])


@pytest.mark.parametrize(
    ("transform", "expected_variant"),
    [
        ("mirror", "mirror-full"),
        ("jpeg q30", "full"),
        ("crop <=12% two sides", "crop"),
    ],
)
def test_a_copy_matches_its_eval_image_through_the_right_variant(transform, expected_variant):
    detector = Detector()
    images = [photo("astronaut"), photo("coffee"), photo("rocket")]
    phash, dhash = zip(*(detector.variant_hashes(i) for i in images))
    index = EvalIndex.from_sample_hashes(detector, np.stack(phash), np.stack(dhash))
    copy = tf.store(QUALITY_TRANSFORMS[transform](images[1]))
    p, d = image_hashes(copy)
    found = index.match(np.asarray([p], dtype=np.uint64), np.asarray([d], dtype=np.uint64))
    assert found.sample.tolist() == [1]
    name = detector.variants()[int(found.variant[0])].name
    assert expected_variant in name


def test_unrelated_photos_do_not_match():
    detector = Detector()
    phash, dhash = detector.variant_hashes(photo("astronaut"))
    index = EvalIndex.from_sample_hashes(detector, phash[None], dhash[None])
    others = [image_hashes(tf.store(photo(n))) for n in ("coffee", "chelsea", "rocket", "camera")]
    p, d = (np.asarray(x, dtype=np.uint64) for x in zip(*others))
    assert len(index.match(p, d)) == 0


def test_catalog_maps_matches_back_to_set_and_image(tmp_path):
    first = write_eval_set(tmp_path / "a", {"x": [("coffee", photo("coffee"))]})
    second = write_eval_set(
        tmp_path / "b",
        {"cat": [("chelsea", photo("chelsea"))], "rocket": [("rocket", photo("rocket"))]},
    )
    catalog = EvalCatalog.build({"a": first, "b": second}, Detector(), progress=False)
    p, d = image_hashes(tf.store(tf.hflip(photo("rocket"))))
    [match] = catalog.match(np.asarray([p], dtype=np.uint64), np.asarray([d], dtype=np.uint64))
    assert catalog.sets[match.set_index].name == "b"
    assert catalog.sets[match.set_index].paths[match.sample] == "rocket/rocket.png"
    assert match.variant.startswith("mirror")


def test_unreadable_eval_image_is_reported_not_matched(tmp_path):
    root = write_eval_set(tmp_path / "e", {"x": [("coffee", photo("coffee"))]})
    (root / "x" / "broken.jpg").write_bytes(b"not a jpeg")
    hashes = hash_eval_set(EvalSet.open("e", root), Detector(), progress=False)
    assert hashes.readable.tolist() == [False, True]
    assert "x/broken.jpg" in hashes.errors
    catalog = EvalCatalog(Detector(), [hashes])
    zero = np.zeros(1, dtype=np.uint64)
    assert catalog.match(zero, zero) == []


def test_eval_sets_are_hashed_the_same_in_worker_processes(tmp_path):
    images = [(f"p{i}", photo(n)) for i, n in enumerate(["coffee", "rocket", "camera"])]
    root = write_eval_set(tmp_path / "e", {"x": images})
    eval_set = EvalSet.open("e", root)
    import openwit.dedup.evalhash as evalhash

    serial = hash_eval_set(eval_set, Detector(), workers=1, progress=False)
    old = evalhash.PARALLEL_FROM
    evalhash.PARALLEL_FROM = 1
    try:
        parallel = hash_eval_set(eval_set, Detector(), workers=2, progress=False)
    finally:
        evalhash.PARALLEL_FROM = old
    assert np.array_equal(serial.phash, parallel.phash)
    assert np.array_equal(serial.dhash, parallel.dhash)


@pytest.fixture(scope="module")
def small_labelled_set():
    transforms = {
        k: QUALITY_TRANSFORMS[k]
        for k in ("jpeg q30", "mirror", "crop <=6% a side", "letterbox black 30%")
    }
    return build_labelled_set(
        photos=("astronaut", "coffee", "chelsea", "rocket", "camera"),
        transforms=transforms,
        tiles=False,
        n_eval_faces=4,
    )


def test_each_step_of_the_detector_closes_the_gap_it_is_for(small_labelled_set):
    results = evaluate(small_labelled_set, default_settings(8, 14))
    plain, final = results["pHash"], results["+ dHash check"]
    assert plain["jpeg q30"]["recall"] == 1.0
    assert plain["mirror"]["recall"] == 0.0
    assert plain["letterbox black 30%"]["recall"] < 0.5
    assert results["+ border trim"]["letterbox black 30%"]["recall"] == 1.0
    assert results["+ mirror"]["mirror"]["recall"] == 1.0
    assert final["crop <=6% a side"]["recall"] > plain["crop <=6% a side"]["recall"]
    assert final["all"]["recall"] >= 0.9
    for kind in ("jpeg q30", "mirror", "crop <=6% a side", "letterbox black 30%"):
        assert final[kind]["false_matches"] == 0, kind
    # The other view of the stereo pair is the one look-alike close enough (docs/dedup.md).
    assert final[LOOKALIKE]["positives"] == 0
    assert final[LOOKALIKE]["false_matches"] <= 1


def test_radius_sweep_trades_recall_for_precision(small_labelled_set):
    rows = radius_sweep(small_labelled_set, Detector(), [2, 8], [14])
    assert rows[0]["recall"] <= rows[1]["recall"]
    assert {r["phash_radius"] for r in rows} == {2, 8}
