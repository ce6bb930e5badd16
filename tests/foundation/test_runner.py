"""The stage runner on real Beam (DirectRunner): manifest, funnel, idempotent reruns, resume."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from openwit.builddir import BuildDir
from openwit.config import load_build_config
from openwit.errors import ConfigError, FunnelLawError, UserError
from openwit.lease import build_lease
from openwit.runner import BuildRunner
from tests.foundation.toy_stages import (
    CrashingFilter,
    LossyFilter,
    ToyFilter,
    ToyIngest,
)

LINES = [
    {"url": "http://example.com/a.jpg", "caption": "a photo of a red bicycle"},
    {"url": "http://example.com/b.jpg", "caption": "dog"},
    "this line is not json",
    {"url": "http://example.com/c.jpg", "caption": "sunset over the harbour"},
    {"caption": "no url here"},
    {"url": "http://example.com/d.jpg", "caption": "cat"},
    {"url": "http://example.com/e.jpg", "caption": "three people on a mountain trail"},
]


def write_config(tmp_path: Path, **text: int) -> Path:
    pool = tmp_path / "pool.jsonl"
    pool.write_text(
        "\n".join(line if isinstance(line, str) else json.dumps(line) for line in LINES) + "\n"
    )
    config = tmp_path / "build.yaml"
    text_yaml = "".join(f"\n  {k}: {v}" for k, v in text.items()) or " {}"
    config.write_text(f"out: out\ninputs:\n  - path: pool.jsonl\ntext:{text_yaml}\n")
    return config


def mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_two_toy_stages_write_manifest_funnel_and_outputs(tmp_path):
    config = load_build_config(write_config(tmp_path, min_chars=6))
    outcome = BuildRunner(config, [ToyIngest(), ToyFilter()]).run()
    out = tmp_path / "out"

    assert outcome.ran == ["toy_ingest", "toy_filter"]
    assert outcome.complete
    funnel = json.loads((out / "funnel.json").read_text())
    assert funnel == {
        "toy_ingest": {"in": 7, "out": 5, "rejected": {"malformed_record": 2}},
        "toy_filter": {"in": 5, "out": 3, "rejected": {"too_short": 2}},
    }
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is True
    assert manifest["config_hash"] == config.hash()
    assert manifest["config"]["text"]["min_chars"] == 6
    assert manifest["stage_order"] == ["toy_ingest", "toy_filter"]
    for name in ("toy_ingest", "toy_filter"):
        entry = manifest["stages"][name]
        assert entry["status"] == "complete"
        assert entry["seconds"] >= 0
        assert entry["funnel"] == funnel[name]
    assert manifest["stages"]["toy_ingest"]["stats"] == {"files": 1}
    assert {"python", "apache-beam", "pyarrow"} <= set(manifest["versions"])

    build = BuildDir(out)
    kept = build.read_table(build.stage_files("toy_filter"))
    assert kept.column("text").to_pylist() == [  # in input order: units keep it
        "a photo of a red bicycle",
        "sunset over the harbour",
        "three people on a mountain trail",
    ]
    rejections = build.read_table(build.rejection_files())
    assert sorted(zip(rejections["stage"].to_pylist(), rejections["reason"].to_pylist())) == [
        ("toy_filter", "too_short"),
        ("toy_filter", "too_short"),
        ("toy_ingest", "malformed_record"),
        ("toy_ingest", "malformed_record"),
    ]
    for name in ("toy_ingest", "toy_filter"):  # one attempt per stage: the committed one
        attempts = os.listdir(out / "stages" / name)
        assert attempts == [manifest["stages"][name]["attempt"]]


def test_rerun_with_same_config_rewrites_nothing(tmp_path):
    config = load_build_config(write_config(tmp_path))
    BuildRunner(config, [ToyIngest(), ToyFilter()]).run()
    before = mtimes(tmp_path / "out")

    outcome = BuildRunner(config, [ToyIngest(), ToyFilter()]).run()

    assert outcome.ran == []
    assert outcome.skipped == ["toy_ingest", "toy_filter"]
    assert mtimes(tmp_path / "out") == before


def test_changed_config_reruns_the_stage_that_depends_on_it_and_those_after(tmp_path):
    path = write_config(tmp_path, min_chars=6)
    BuildRunner(load_build_config(path), [ToyIngest(), ToyFilter()]).run()

    changed = load_build_config(path, {"text.min_chars": 2})
    outcome = BuildRunner(changed, [ToyIngest(), ToyFilter()]).run()

    assert outcome.skipped == ["toy_ingest"]
    assert outcome.ran == ["toy_filter"]
    assert outcome.funnel.stages["toy_filter"].n_out == 5


def test_until_stops_after_stage_one_and_resume_runs_only_stage_two(tmp_path):
    config = load_build_config(write_config(tmp_path))
    first = BuildRunner(config, [ToyIngest(), ToyFilter()]).run(until="toy_ingest")
    assert first.ran == ["toy_ingest"]
    assert not first.complete
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["until"] == "toy_ingest"
    assert "toy_filter" not in manifest["stages"]
    ingest_files = mtimes(tmp_path / "out" / "stages" / "toy_ingest")

    second = BuildRunner(config, [ToyIngest(), ToyFilter()]).run(resume=True)

    assert second.ran == ["toy_filter"]
    assert second.skipped == ["toy_ingest"]
    assert second.complete
    assert mtimes(tmp_path / "out" / "stages" / "toy_ingest") == ingest_files


def test_only_runs_its_own_stage_and_refuses_to_run_an_incomplete_earlier_one(tmp_path):
    config = load_build_config(write_config(tmp_path))
    with pytest.raises(UserError, match=r"stage toy_ingest of .* is not complete"):
        BuildRunner(config, [ToyIngest(), ToyFilter()]).run(resume=True, only="toy_filter")
    assert not (tmp_path / "out" / "stages" / "toy_ingest").exists()

    BuildRunner(config, [ToyIngest()]).run(resume=True, only="toy_ingest")
    outcome = BuildRunner(config, [ToyIngest(), ToyFilter()]).run(resume=True, only="toy_filter")

    assert outcome.skipped == ["toy_ingest"] and outcome.ran == ["toy_filter"]
    again = BuildRunner(config, [ToyIngest(), ToyFilter()]).run(resume=True, only="toy_filter")
    assert again.ran == [] and again.complete


def test_only_refuses_an_earlier_stage_that_a_config_change_made_stale(tmp_path):
    path = write_config(tmp_path)
    BuildRunner(load_build_config(path), [ToyIngest(), ToyFilter()]).run()
    (tmp_path / "other.jsonl").write_bytes((tmp_path / "pool.jsonl").read_bytes())
    changed = load_build_config(path, {"inputs": [{"path": str(tmp_path / "other.jsonl")}]})
    with pytest.raises(UserError, match=r"toy_ingest .* not complete for this config"):
        BuildRunner(changed, [ToyIngest(), ToyFilter()]).run(resume=True, only="toy_filter")


def units_run(log: Path, stage: str) -> list[int]:
    if not log.exists():
        return []
    return sorted(
        int(line.split()[1]) for line in log.read_text().split("\n") if line.startswith(stage)
    )


def test_a_stage_killed_midway_resumes_its_unfinished_units_only(tmp_path, monkeypatch):
    log = tmp_path / "units.log"
    monkeypatch.setenv("TOY_UNIT_LOG", str(log))
    config = load_build_config(write_config(tmp_path))
    with pytest.raises(Exception, match="killed in unit 2"):
        BuildRunner(config, [ToyIngest(), CrashingFilter()]).run()
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["stages"]["toy_ingest"]["status"] == "complete"
    assert manifest["stages"]["toy_filter"]["status"] == "failed"
    assert manifest["complete"] is False
    finished = units_run(log, "toy_filter")
    log.unlink(missing_ok=True)

    outcome = BuildRunner(config, [ToyIngest(), ToyFilter()]).run(resume=True)

    assert outcome.ran == ["toy_filter"]
    assert outcome.complete
    assert units_run(log, "toy_filter") == sorted(set(range(3)) - set(finished))
    assert outcome.funnel.stages["toy_filter"].n_out == 3


def test_without_resume_a_failed_stage_starts_a_new_attempt(tmp_path, monkeypatch):
    log = tmp_path / "units.log"
    monkeypatch.setenv("TOY_UNIT_LOG", str(log))
    config = load_build_config(write_config(tmp_path))
    with pytest.raises(Exception, match="killed"):
        BuildRunner(config, [ToyIngest(), CrashingFilter()]).run()
    failed = json.loads((tmp_path / "out" / "manifest.json").read_text())["stages"]["toy_filter"]
    log.unlink(missing_ok=True)

    outcome = BuildRunner(config, [ToyIngest(), ToyFilter()]).run()

    assert units_run(log, "toy_filter") == [0, 1, 2]
    assert outcome.manifest["stages"]["toy_filter"]["attempt"] != failed["attempt"]
    assert os.listdir(tmp_path / "out" / "stages" / "toy_filter") == [
        outcome.manifest["stages"]["toy_filter"]["attempt"]
    ]  # the abandoned attempt is removed


def test_a_committed_stage_with_a_missing_or_damaged_file_is_rerun(tmp_path):
    config = load_build_config(write_config(tmp_path))
    BuildRunner(config, [ToyIngest(), ToyFilter()]).run()
    build = BuildDir(tmp_path / "out")
    first, second = build.stage_files("toy_filter")[:2]
    Path(first).unlink()
    Path(second).write_bytes(Path(second).read_bytes()[:-10])

    damaged: list[tuple[str, list[str]]] = []

    class Recorder:
        def __getattr__(self, name):
            return lambda *args: damaged.append(args) if name == "stage_damaged" else None

    outcome = BuildRunner(config, [ToyIngest(), ToyFilter()], Recorder()).run()

    assert outcome.skipped == ["toy_ingest"] and outcome.ran == ["toy_filter"]
    ((stage, problems),) = damaged
    assert stage == "toy_filter"
    assert any(p.endswith(f"{Path(first).name} is missing") for p in problems)
    assert any(Path(second).name in p and "bytes" in p for p in problems)
    assert outcome.funnel.stages["toy_filter"].n_out == 3


def test_up_to_date_answers_what_a_run_would_skip_without_running_anything(tmp_path):
    stages = [ToyIngest(), ToyFilter()]
    config = load_build_config(write_config(tmp_path, min_chars=6))
    runner = BuildRunner(config, stages)
    assert not runner.up_to_date("toy_ingest")  # nothing built yet
    runner.run()
    before = mtimes(tmp_path / "out")
    assert runner.up_to_date("toy_ingest") and runner.up_to_date("toy_filter")
    assert mtimes(tmp_path / "out") == before  # read only: no lease, no manifest rewrite
    # another setting of the filter: its stage is stale, the one before is not
    changed = BuildRunner(load_build_config(write_config(tmp_path, min_chars=9)), stages)
    assert changed.up_to_date("toy_ingest") and not changed.up_to_date("toy_filter")
    # a committed file of the first stage gone: it and everything after it must run
    Path(BuildDir(tmp_path / "out").stage_files("toy_ingest")[0]).unlink()
    assert not runner.up_to_date("toy_ingest") and not runner.up_to_date("toy_filter")
    with pytest.raises(ConfigError, match="not a stage"):
        runner.up_to_date("shard")


def test_a_stage_that_loses_records_is_never_marked_complete(tmp_path):
    config = load_build_config(write_config(tmp_path))
    with pytest.raises(FunnelLawError, match="toy_filter"):
        BuildRunner(config, [ToyIngest(), LossyFilter()]).run()
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["complete"] is False
    assert manifest["stages"]["toy_filter"]["status"] == "failed"
    assert "funnel law" in manifest["stages"]["toy_filter"]["error"]
    assert BuildDir(tmp_path / "out").stage_files("toy_filter") == []  # nothing committed


def test_until_must_name_a_stage(tmp_path):
    config = load_build_config(write_config(tmp_path))
    with pytest.raises(ConfigError, match="not a stage"):
        BuildRunner(config, [ToyIngest(), ToyFilter()]).run(until="download")


def test_two_builds_cannot_share_a_directory_at_once(tmp_path):
    with build_lease(str(tmp_path)), pytest.raises(UserError, match="another openwit build"):
        with build_lease(str(tmp_path)):
            pass


def part_bytes(root: Path, stage: str) -> list[bytes]:
    return [Path(url).read_bytes() for url in BuildDir(root).stage_files(stage)]


@pytest.mark.slow
def test_every_local_runner_mode_writes_the_same_bytes(tmp_path, monkeypatch):
    """In the launcher (in_memory), on openwit's worker pool, and on Beam's own
    multi_processing workers: the same records in the same files, byte for byte."""
    path = write_config(tmp_path)
    in_memory = BuildRunner(load_build_config(path), [ToyIngest(), ToyFilter()]).run()
    monkeypatch.setenv("OPENWIT_WORKERS", "2")
    pooled = load_build_config(path, {"out": str(tmp_path / "pool")})
    pool_outcome = BuildRunner(pooled, [ToyIngest(), ToyFilter()]).run()
    multi = load_build_config(
        path,
        {
            "out": str(tmp_path / "multi"),
            "beam_options": {"direct_running_mode": "multi_processing", "direct_num_workers": 2},
        },
    )
    multi_outcome = BuildRunner(multi, [ToyIngest(), ToyFilter()]).run()

    for outcome in (pool_outcome, multi_outcome):
        assert outcome.funnel.to_json() == in_memory.funnel.to_json()
    for stage in ("toy_ingest", "toy_filter"):
        expected = part_bytes(tmp_path / "out", stage)
        assert part_bytes(tmp_path / "pool", stage) == expected
        assert part_bytes(tmp_path / "multi", stage) == expected
