"""download -> image -> shard on the real stage runner and Beam, against the fault server."""

from __future__ import annotations

import json
import time

import pyarrow.parquet as pq
import pytest

from openwit.builddir import BuildDir
from openwit.pipeline.download.stage import DownloadStage
from openwit.pipeline.image.stage import ImageStage
from openwit.pipeline.shard.stage import ShardStage
from openwit.runner import BuildRunner
from tests.download.servers import EXPECTED_DOWNLOAD
from tests.download.stages import PoolCandidates, build_config, candidate, write_pool

STAGES = (PoolCandidates, DownloadStage, ImageStage, ShardStage)
EXPECTED_IMAGE = {"small": "image_too_small", "wide": "bad_aspect_ratio"}
GOOD_COPIES = 24


def fault_pool(tmp_path, urls):
    """Every fault once, and enough good images (distinct URLs) for several shards."""
    named = {name: url for name, url in urls.items()}
    named["retry_then_ok"] = urls["retry_then_ok"] + f"?run={tmp_path.name}"
    for index in range(GOOD_COPIES):
        named[f"good_{index}"] = f"{urls['ok']}?copy={index}"
    pool = write_pool(tmp_path / "pool.jsonl", list(named.values()))
    lines = pool.read_text().splitlines()
    by_uid = {}
    for name, line in zip(named, lines):
        item = json.loads(line)
        by_uid[candidate(item["url"], item["caption"])["uid"]] = name
    return pool, by_uid


def rejections(out, stage):
    table = BuildDir(out).read_table(BuildDir(out).rejection_files(stage))
    return {r["uid"]: r["reason"] for r in table.to_pylist()} if table is not None else {}


def test_every_fault_gets_its_reason_and_the_funnel_holds(tmp_path, faults):
    _, urls = faults
    pool, by_uid = fault_pool(tmp_path, urls)
    config = build_config(tmp_path, pool)
    started = time.monotonic()
    outcome = BuildRunner(config, [stage() for stage in STAGES]).run()
    elapsed = time.monotonic() - started
    out = tmp_path / "out"

    assert outcome.complete
    funnel = json.loads((out / "funnel.json").read_text())
    for name, counts in funnel.items():
        assert counts["in"] == counts["out"] + sum(counts["rejected"].values()), name
    assert funnel["download"]["in"] == len(by_uid)

    download_reasons = {by_uid[uid]: reason for uid, reason in rejections(out, "download").items()}
    expected = {name: r for name, r in EXPECTED_DOWNLOAD.items() if r is not None}
    assert download_reasons == expected
    image_reasons = {by_uid[uid]: reason for uid, reason in rejections(out, "image").items()}
    assert image_reasons == EXPECTED_IMAGE

    kept = 4 + GOOD_COPIES  # ok, ok_png, redirect_ok, retry_then_ok + the copies
    assert funnel["shard"] == {"in": kept, "out": kept, "rejected": {}}
    sizes = json.loads((out / "shards" / "sizes.json").read_text())
    assert sizes == {"00000.tar": 10, "00001.tar": 10, "00002.tar": 8}
    # Two hung servers and a drip cost one budget each, side by side on the threads.
    assert elapsed < 60


def test_shard_index_rows_are_the_kept_records_in_uid_order(tmp_path, faults):
    _, urls = faults
    good = [f"{urls['ok']}?index={i}" for i in range(7)] + [urls["not_found"]]
    config = build_config(tmp_path, write_pool(tmp_path / "pool.jsonl", good))
    BuildRunner(config, [stage() for stage in STAGES]).run()
    shards = tmp_path / "out" / "shards"
    rows = pq.read_table(shards / "00000.parquet").to_pylist()
    assert [r["key"] for r in rows] == [f"{i:09d}" for i in range(7)]
    assert [r["uid"] for r in rows] == sorted(r["uid"] for r in rows)
    assert "image" not in rows[0] and "image_file" not in rows[0]
    assert all(r["phash"] is not None and r["width"] == 256 for r in rows)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    stats = manifest["stages"]["download"]["stats"]
    assert stats["kept"] == 7 and stats["records"] == 8 and stats["bytes_downloaded"] > 0


def test_rerun_with_the_same_config_rewrites_nothing(tmp_path, faults):
    _, urls = faults
    pool = write_pool(tmp_path / "pool.jsonl", [f"{urls['ok']}?rerun={i}" for i in range(5)])
    config = build_config(tmp_path, pool)
    BuildRunner(config, [stage() for stage in STAGES]).run()
    shards = tmp_path / "out" / "shards"
    before = {p.name: p.stat().st_mtime_ns for p in shards.iterdir()}
    outcome = BuildRunner(config, [stage() for stage in STAGES]).run()
    assert outcome.ran == []
    assert {p.name: p.stat().st_mtime_ns for p in shards.iterdir()} == before


def test_changing_an_image_check_does_not_download_again(tmp_path, faults):
    _, urls = faults
    pool = write_pool(tmp_path / "pool.jsonl", [f"{urls['ok']}?check={i}" for i in range(3)])
    BuildRunner(build_config(tmp_path, pool), [s() for s in STAGES]).run()
    stricter = build_config(tmp_path, pool, image={"min_side": 500})
    outcome = BuildRunner(stricter, [s() for s in STAGES]).run()
    assert outcome.skipped == ["candidates", "download"]
    assert outcome.ran == ["image", "shard"]
    assert json.loads((tmp_path / "out" / "shards" / "sizes.json").read_text()) == {}
    assert not list((tmp_path / "out" / "shards").glob("*.tar"))  # the old shard is gone


@pytest.mark.slow
def test_every_local_runner_mode_gives_the_same_shards(tmp_path, faults, monkeypatch):
    _, urls = faults
    urls_list = [f"{urls['ok']}?mp={i}" for i in range(30)] + [urls["not_found"]]
    results = {}
    for mode in ("in_memory", "multi_processing", "pool"):
        root = tmp_path / mode
        root.mkdir()
        pool = write_pool(root / "pool.jsonl", urls_list)
        if mode == "pool":  # openwit's local worker pool, the default runner's mode
            monkeypatch.setenv("OPENWIT_WORKERS", "2")
            beam = {}
        else:
            beam = {"direct_running_mode": mode, "direct_num_workers": 2}
        config = build_config(root, pool, beam_options=beam)
        BuildRunner(config, [stage() for stage in STAGES]).run()
        shards = root / "out" / "shards"
        results[mode] = {p.name: p.read_bytes() for p in sorted(shards.glob("*.tar"))}
    assert results["in_memory"] == results["multi_processing"] == results["pool"]
    assert len(results["in_memory"]) == 3


@pytest.mark.slow  # imports img2dataset (torch, pandas, wandb)
def test_img2dataset_resizer_gives_the_same_sizes_in_a_build(tmp_path, faults):
    _, urls = faults
    pool_urls = [f"{urls['ok']}?i2d={i}" for i in range(3)] + [urls["ok_png"]]
    sizes = {}
    for resizer in ("pillow", "img2dataset"):
        root = tmp_path / resizer
        root.mkdir()
        pool = write_pool(root / "pool.jsonl", pool_urls)
        config = build_config(root, pool, image={"resizer": resizer})
        BuildRunner(config, [stage() for stage in STAGES]).run()
        rows = pq.read_table(root / "out" / "shards" / "00000.parquet").to_pylist()
        sizes[resizer] = sorted((r["uid"], r["width"], r["height"]) for r in rows)
    assert sizes["pillow"] == sizes["img2dataset"]
    assert len(sizes["pillow"]) == 4
