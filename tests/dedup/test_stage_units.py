"""The dedup stage over many units, against the rules computed record by record."""

from __future__ import annotations

import pytest

from openwit.builddir import BuildDir
from openwit.config import load_build_config
from openwit.dedup.groups import rank_key
from openwit.dedup.layout import MATCHES_GLOB
from openwit.hashes.images import bytes_hashes
from openwit.runner import BuildRunner
from tests.dedup.hash_records import (
    OneRoundDedup,
    RecordsSource,
    RunnerShuffleDedup,
    SmallUnitsDedup,
    chain_records,
    expected_rejections,
    planted_records,
    record,
    write_records,
)
from tests.dedup.images import photo, stored, write_eval_set


def build(tmp_path, name, records, stage=SmallUnitsDedup, **overrides):
    path = write_records(tmp_path / f"{name}.parquet", records)
    values = {"out": str(tmp_path / name), "inputs": [{"path": path}], **overrides}
    return BuildRunner(load_build_config(None, values), [RecordsSource(), stage()]).run()


def rejected(outcome):
    build_dir = BuildDir(outcome.build_dir)
    table = build_dir.read_table(build_dir.rejection_files("dedup"))
    rows = table.to_pylist() if table is not None else []
    return sorted((r["uid"], r["reason"], r["detail"]) for r in rows)


def kept(outcome):
    build_dir = BuildDir(outcome.build_dir)
    return build_dir.read_table(build_dir.stage_files("dedup")).to_pylist()


def matches(outcome):
    build_dir = BuildDir(outcome.build_dir)
    table = build_dir.read_table(build_dir.stage_files("dedup", MATCHES_GLOB))
    return sorted((m["uid"], m["eval_path"], m["variant"]) for m in table.to_pylist())


@pytest.fixture(scope="module")
def planted():
    return planted_records(seed=7, count=420)


def test_groups_across_units_are_the_rules_applied_record_by_record(tmp_path, planted):
    outcome = build(tmp_path, "many-units", planted)
    assert rejected(outcome) == expected_rejections(planted)
    entry = outcome.manifest["stages"]["dedup"]
    assert entry["units"] > 15  # units of at most 25 records
    reasons = {reason for _, reason, _ in rejected(outcome)}
    assert reasons == {"exact_duplicate", "near_duplicate"}
    # the shuffles went through files, which are gone once the pass is over
    links = entry["stats"]["links"]
    assert links["runner_bytes_per_record"] < links["shuffle_bytes_per_record"] / 2
    assert not [f for f in BuildDir(outcome.build_dir).committed_files("dedup") if "shuffle" in f]


def test_shuffles_through_the_runner_give_the_same_output(tmp_path, planted):
    spilled = build(tmp_path, "spilled", planted)
    through_runner = build(tmp_path, "through-runner", planted, stage=RunnerShuffleDedup)
    assert kept(through_runner) == kept(spilled)
    assert rejected(through_runner) == rejected(spilled)
    links = through_runner.manifest["stages"]["dedup"]["stats"]["links"]
    assert links["runner_bytes_per_record"] == pytest.approx(
        links["shuffle_bytes_per_record"], 0.01
    )


def test_rejections_by_batch_keep_the_funnel_law(tmp_path, planted):
    outcome = build(tmp_path, "funnel", planted)
    counts = BuildDir(outcome.build_dir).funnel()["dedup"]
    out = kept(outcome)
    gone = rejected(outcome)
    assert counts["in"] == len(planted) == counts["out"] + sum(counts["rejected"].values())
    assert counts["out"] == len(out)
    # every record once: kept or rejected, in input order
    kept_keys = [(r["uid"], r["source"], r["source_offset"]) for r in out]
    assert len(set(kept_keys)) == len(kept_keys)
    assert sorted([r["uid"] for r in out] + [uid for uid, _, _ in gone]) == sorted(
        r["uid"] for r in planted
    )
    assert kept_keys == [
        (r["uid"], r["source"], r["source_offset"])
        for r in planted
        if (r["uid"], r["source"], r["source_offset"]) in set(kept_keys)
    ]


def test_a_chain_longer_than_the_unrolled_rounds_runs_the_pass_again(tmp_path):
    records = chain_records(21)[::-1]  # ids run against the chain's order
    outcome = build(tmp_path, "chain", records, stage=OneRoundDedup)
    assert rejected(outcome) == expected_rejections(records)
    assert len(rejected(outcome)) == 20
    stats = outcome.manifest["stages"]["dedup"]["stats"]["links"]
    assert stats["rounds"] > 1
    assert 0 < stats["shuffle_bytes_per_record"] < 1000


def test_no_hashes_and_no_sha256_pass_through(tmp_path):
    records = [record(i, None, None, None) for i in range(30)]
    outcome = build(tmp_path, "bare", records)
    assert rejected(outcome) == [] and len(kept(outcome)) == 30


@pytest.fixture(scope="module")
def with_eval(tmp_path_factory, planted):
    """The planted records and two copies of an eval image, in different units."""
    root = tmp_path_factory.mktemp("eval-case")
    eval_root = write_eval_set(root / "eval", {"cat": [("chelsea", photo("chelsea"))]})
    phash, dhash = bytes_hashes(stored(photo("chelsea")))
    records = list(planted)
    for position, index in ((30, 1000), (300, 1001)):
        records.insert(position, record(index, f"{index:064x}", phash, dhash))
    overrides = {"dedup.eval_sets": {"pets": str(eval_root)}, "dedup.decontaminate": True}
    return root, records, overrides


def test_eval_overlap_comes_first_and_leaves_the_near_search(with_eval):
    root, records, overrides = with_eval
    outcome = build(root, "in-process", records, **overrides)
    got = rejected(outcome)
    copies = {r["uid"] for r in records if r["source_offset"] in (1000, 1001)}
    assert {uid for uid, reason, _ in got if reason == "eval_overlap"} == copies
    details = {uid: detail for uid, reason, detail in got if reason == "eval_overlap"}
    evals = {rank_key(r): details[r["uid"]] for r in records if r["uid"] in copies}
    assert all("pets/cat/chelsea.png" in d for d in evals.values())
    assert got == expected_rejections(records, eval_overlap=evals)
    assert [m[0] for m in matches(outcome)] == sorted(copies)


@pytest.mark.slow
def test_the_worker_pool_and_multi_processing_give_the_same_output(with_eval, monkeypatch):
    root, records, overrides = with_eval
    alone = build(root, "alone", records, **overrides)
    monkeypatch.setenv("OPENWIT_WORKERS", "2")
    pool = build(root, "pool", records, **overrides)
    assert pool.manifest["stages"]["dedup"]["stats"]["links"]["rounds"] == 3
    options = {"direct_running_mode": "multi_processing", "direct_num_workers": 2}
    multi = build(root, "multi", records, beam_options=options, **overrides)
    for other in (pool, multi):
        assert kept(other) == kept(alone)
        assert rejected(other) == rejected(alone)
        assert matches(other) == matches(alone)
