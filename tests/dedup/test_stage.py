"""The dedup build stage on the real stage runner and Beam's direct runner."""

from __future__ import annotations

import json

import pytest

from openwit.builddir import BuildDir
from openwit.config import load_build_config
from openwit.dedup import transforms as tf
from openwit.dedup.layout import MATCHES_GLOB
from openwit.dedup.stage import DedupStage
from openwit.runner import BuildRunner
from openwit.schemas import candidate_schema, uid_for
from tests.dedup.images import jpeg_bytes, photo, stored, write_eval_set, write_pool
from tests.dedup.toy_image_stage import ToyImageSource

URL = "http://images.example/{:04d}.jpg"


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A pool with one exact copy, one near copy and one eval copy, and an eval set."""
    root = tmp_path_factory.mktemp("dedup-case")
    astronaut = stored(photo("astronaut"))
    items = [
        ("astronaut on the moon", astronaut),  # 0
        ("astronaut again", astronaut),  # 1: exact duplicate of 0
        ("astronaut, recompressed", jpeg_bytes(tf.store(photo("astronaut")), 55)),  # 2: near
        ("coffee cup", stored(photo("coffee"))),  # 3
        ("a rocket", stored(photo("rocket"))),  # 4
        ("a camera man", stored(photo("camera"))),  # 5
        # 6: an eval image as a crawl holds it: mirrored, rescaled, letterboxed
        (
            "my cat",
            stored(tf.letterbox(0.3, (0, 0, 0))(tf.rescale(0.7)(tf.hflip(photo("chelsea"))))),
        ),
    ]
    pool = write_pool(root / "pool", items)
    eval_root = write_eval_set(
        root / "eval",
        {"cat": [("chelsea", photo("chelsea"))], "coins": [("coins", photo("coins"))]},
    )
    uids = [uid_for(URL.format(i), caption) for i, (caption, _) in enumerate(items)]
    return root, pool, eval_root, uids


def run_build(root, pool, out_name, **overrides):
    values = {"out": str(root / out_name), "inputs": [{"path": str(pool)}], **overrides}
    config = load_build_config(None, values)
    return BuildRunner(config, [ToyImageSource(), DedupStage()]).run()


@pytest.fixture(scope="module")
def plain(case):
    root, pool, _, _ = case
    return run_build(root, pool, "plain")


@pytest.fixture(scope="module")
def decontaminated(case):
    root, pool, eval_root, _ = case
    overrides = {"dedup.eval_sets": {"pets": str(eval_root)}, "dedup.decontaminate": True}
    return run_build(root, pool, "decontaminated", **overrides)


def rejections(outcome):
    build = BuildDir(outcome.build_dir)
    table = build.read_table(build.rejection_files("dedup"))
    return {row["uid"]: row for row in table.to_pylist()} if table is not None else {}


def kept_uids(outcome):
    build = BuildDir(outcome.build_dir)
    return build.read_table(build.stage_files("dedup"), columns=["uid"])["uid"].to_pylist()


def eval_matches(outcome):
    build = BuildDir(outcome.build_dir)
    table = build.read_table(build.stage_files("dedup", MATCHES_GLOB))
    return table.to_pylist() if table is not None else []


def test_exact_and_near_duplicates_are_removed_with_counts(case, plain):
    uids = case[3]
    outcome = plain
    counts = BuildDir(outcome.build_dir).funnel()["dedup"]
    assert counts == {
        "in": 7,
        "out": 5,
        "rejected": {"exact_duplicate": 1, "near_duplicate": 1},
    }
    rejected = rejections(outcome)
    astronauts = sorted(uids[:3])
    # The smallest uid of each group is kept, whichever record came first.
    assert astronauts[0] in kept_uids(outcome)
    assert {rejected[u]["reason"] for u in astronauts[1:]} == {"exact_duplicate", "near_duplicate"}
    exact = uids[1] if uids[0] < uids[1] else uids[0]
    assert rejected[exact]["reason"] == "exact_duplicate"
    assert rejected[uids[2]]["reason"] == "near_duplicate"
    assert astronauts[0] in rejected[uids[2]]["detail"]


def test_output_keeps_the_image_schema_records_and_order_unchanged(plain):
    build = BuildDir(plain.build_dir)
    table = build.read_table(build.stage_files("dedup"))
    assert table.schema.equals(candidate_schema("image"))
    before = build.read_table(build.stage_files("toy_images")).to_pylist()
    kept = set(table.column("uid").to_pylist())
    assert table.to_pylist() == [r for r in before if r["uid"] in kept]


def test_eval_copy_is_rejected_when_decontaminating(case, decontaminated):
    uids = case[3]
    outcome = decontaminated
    counts = outcome.funnel.stages["dedup"]
    assert counts.rejected == {"eval_overlap": 1, "exact_duplicate": 1, "near_duplicate": 1}
    rejected = rejections(outcome)
    assert rejected[uids[6]]["reason"] == "eval_overlap"
    assert "pets/cat/chelsea.png" in rejected[uids[6]]["detail"]
    matches = eval_matches(outcome)
    assert [(m["uid"], m["eval_path"], m["rejected"]) for m in matches] == [
        (uids[6], "cat/chelsea.png", True)
    ]
    assert matches[0]["variant"].startswith("mirror")
    stats = outcome.manifest["stages"]["dedup"]["stats"]
    assert stats["eval_sets"]["pets"] == {
        "images": 2,
        "unreadable_images": 0,
        "images_matched": 1,
        "training_samples_matched": 1,
    }


def test_without_decontamination_matches_are_recorded_and_kept(case):
    root, pool, eval_root, uids = case
    outcome = run_build(root, pool, "recorded", **{"dedup.eval_sets": {"pets": str(eval_root)}})
    assert uids[6] in kept_uids(outcome)
    assert "eval_overlap" not in outcome.funnel.stages["dedup"].rejected
    rows = eval_matches(outcome)
    assert [(r["uid"], r["rejected"]) for r in rows] == [(uids[6], False)]


def test_rerun_with_the_same_config_skips_the_stage(case, plain):
    root, pool, _, _ = case
    again = run_build(root, pool, "plain")
    assert again.skipped == ["toy_images", "dedup"]
    assert kept_uids(again) == kept_uids(plain)


@pytest.mark.slow
def test_multi_processing_runner_gives_the_same_result(case, decontaminated):
    root, pool, eval_root, _ = case
    options = {"direct_running_mode": "multi_processing", "direct_num_workers": 2}
    common = {"dedup.eval_sets": {"pets": str(eval_root)}, "dedup.decontaminate": True}
    multi = run_build(root, pool, "multi", beam_options=options, **common)
    assert kept_uids(multi) == kept_uids(decontaminated)
    assert rejections(multi) == rejections(decontaminated)


def test_reasons_have_a_fixed_precedence():
    import numpy as np
    import pyarrow as pa

    from openwit.dedup.resolve import EVAL, EXACT, NEAR, unit_decisions

    rows = np.array([0, 0, 1, 1])
    reasons = np.array([EXACT, EVAL, NEAR, EXACT])
    table = unit_decisions(rows, reasons, pa.array(["k", "matches x", "k", "k"]))
    assert table.to_pylist() == [
        {"row": 0, "reason": "eval_overlap", "detail": "matches x"},
        {"row": 1, "reason": "exact_duplicate", "detail": "same sha256 as uid k"},
    ]


def test_records_without_hashes_pass_through(tmp_path):
    from tests.dedup.images import photo, stored, write_pool

    items = [("first", stored(photo("coffee"))), ("second", stored(photo("coffee")))]
    pool = write_pool(tmp_path / "pool", items)
    lines = [json.loads(line) for line in pool.read_text().splitlines()]
    pool.write_text("\n".join(json.dumps({**line, "nohash": True}) for line in lines) + "\n")
    outcome = run_build(tmp_path, pool, "out")
    assert outcome.funnel.stages["dedup"].n_out == 2  # no hashes: nothing to compare


def test_the_closest_eval_match_names_the_rejection():
    from openwit.dedup.slim import closest_first, eval_candidate

    def match(path, p, d):
        return {"eval_set": "s", "eval_path": path, "variant": "full",
                "phash_distance": p, "dhash_distance": d}  # fmt: skip

    candidates = [eval_candidate(match(*m)) for m in [("a.png", 7, 1), ("z.png", 2, 9)]]
    _, detail = closest_first(candidates)
    assert "s/z.png (pHash 2" in detail
