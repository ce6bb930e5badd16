"""Checkpoint files and the demo's train part."""

from __future__ import annotations

import os

import pytest
import torch

from openwit.demo import DemoContext
from openwit.errors import UserError
from openwit.train import checkpoint as ckpt


def _state(step: int) -> dict:
    return {"step": step, "epoch": 0, "state_dict": {"w": torch.full((2,), float(step))}}


def test_save_writes_the_step_file_and_points_latest_at_it(tmp_path):
    first = ckpt.save(tmp_path, _state(10))
    ckpt.save(tmp_path, _state(20))
    folder = tmp_path / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["latest.pt", "step_10.pt", "step_20.pt"]
    assert ckpt.load(folder / "latest.pt")["step"] == 20
    assert ckpt.load(first)["step"] == 10  # an older step file is untouched
    assert os.path.samefile(folder / "latest.pt", folder / "step_20.pt")  # linked, not copied


def test_resume_auto_finds_latest_or_starts_fresh(tmp_path):
    assert ckpt.resume_path(tmp_path, "auto") is None
    assert ckpt.resume_path(tmp_path, None) is None
    ckpt.save(tmp_path, _state(5))
    assert ckpt.resume_path(tmp_path, "auto") == str(tmp_path / "checkpoints" / "latest.pt")
    with pytest.raises(UserError, match="no such checkpoint"):
        ckpt.resume_path(tmp_path, str(tmp_path / "missing.pt"))


def test_resume_auto_without_latest_takes_the_newest_step_file_of_the_folder_itself(tmp_path):
    """A run stopped between writing a step file and pointing latest.pt at it (in a bucket,
    while the step file uploads) resumes from the step file, not from scratch."""
    assert ckpt.load_for_resume(tmp_path, "auto") is None
    ckpt.save(tmp_path, _state(10))
    ckpt.save(tmp_path, _state(20))
    (tmp_path / "checkpoints" / "latest.pt").unlink()
    archive = tmp_path / "checkpoints" / "archive"
    archive.mkdir()
    torch.save(_state(90), archive / "step_90.pt")  # a user's copy, not this run's
    resumed = ckpt.load_for_resume(tmp_path, "auto")
    assert resumed is not None and resumed.state["step"] == 20
    assert resumed.path == str(tmp_path / "checkpoints" / "step_20.pt")
    assert ckpt.load_for_resume(tmp_path, None) is None


def test_unreadable_or_unsafe_checkpoints_are_user_errors(tmp_path):
    truncated = tmp_path / "truncated.pt"
    torch.save(_state(1), truncated)
    truncated.write_bytes(truncated.read_bytes()[:40])
    with pytest.raises(UserError, match="cannot read checkpoint"):
        ckpt.load(truncated)
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"state_dict": {}, "thing": object()}, unsafe)  # needs pickle beyond weights
    with pytest.raises(UserError, match="cannot read checkpoint"):
        ckpt.load(unsafe)
    bare = tmp_path / "bare.pt"
    torch.save({"w": torch.zeros(1)}, bare)
    with pytest.raises(UserError, match="not an openwit training checkpoint"):
        ckpt.load(bare)


def test_demo_part_trains_on_the_build_shards_and_reports_against_chance(
    demo_shards, tmp_path, monkeypatch
):
    from openwit.demo import train as demo
    from openwit.demo.world import write_eval_set

    monkeypatch.setenv("OPENWIT_DEMO_TRAIN_STEPS", "12")
    ctx = DemoContext(out=tmp_path, shards=demo_shards)
    ctx.eval_sets["shapes"] = write_eval_set(tmp_path / "shapes", per_class=2)
    summary = demo.run(ctx)
    assert "12 steps" in summary and "shapes top-1" in summary and "chance 17%" in summary
    assert "colours top-1" in summary
    assert ctx.checkpoint is not None and ctx.checkpoint.is_file()
    assert ctx.results["train"]["steps"] == 12
    assert set(ctx.eval_sets) == {"shapes"}  # its own colour set is not handed on


def test_demo_part_writes_its_own_shards_without_build_output(tmp_path, monkeypatch):
    from openwit.demo import train as demo

    monkeypatch.setenv("OPENWIT_DEMO_TRAIN_STEPS", "4")
    monkeypatch.setattr(demo, "OWN_SAMPLES", 128)
    ctx = DemoContext(out=tmp_path)
    summary = demo.run(ctx)
    assert "own shards" in summary
    assert (tmp_path / "train-data" / "shards" / "sizes.json").is_file()
    assert "shapes" in ctx.eval_sets


def test_save_puts_each_file_on_the_disk_before_its_name(tmp_path, monkeypatch):
    """A power loss must not leave latest.pt or step_N.pt naming a half-written file."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("rename", str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    ckpt.save(tmp_path, _state(10))
    folder = str(tmp_path / "checkpoints")
    renames = [i for i, e in enumerate(events) if e[0] == "rename"]
    assert [events[i][2] for i in renames] == [f"{folder}/step_10.pt", f"{folder}/latest.pt"]
    step_tmp = events[renames[0]][1]
    assert ("fsync", step_tmp) in events[: renames[0]]  # the data, before the rename
    assert ("fsync", folder) in events[renames[0] + 1 : renames[1]]  # the rename itself
    assert events[-1] == ("fsync", folder)  # latest.pt's rename


def test_resume_auto_falls_back_to_the_newest_step_file_that_loads(demo_shards, tmp_path, caplog):
    import logging

    from openwit.cli import main

    run = tmp_path / "run"
    args = ["train", "--train-data", str(demo_shards), "--model", "openwit-tiny"]
    args += ["--out", str(run), "--batch-size", "8", "--workers", "1", "--save-every", "2"]
    assert main([*args, "--steps", "4", "--log-every", "2"]) == 0
    latest = run / "checkpoints" / "latest.pt"
    latest.write_bytes(latest.read_bytes()[:1000])  # cut by a crash (step_4.pt with it)
    with caplog.at_level(logging.WARNING, logger="openwit.train.loop"):
        assert main([*args, "--steps", "6", "--log-every", "2", "--resume", "auto"]) == 0
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "resuming from step_2.pt" in warned and "latest.pt: cannot read" in warned
    assert ckpt.load(latest)["step"] == 6 and ckpt.load(run / "checkpoints" / "step_4.pt")


def test_demo_part_gives_the_same_numbers_on_a_rerun(demo_shards, tmp_path, monkeypatch):
    """Seeded data order, augmentation and weights, one intra-op thread count: a rerun of
    the demo on the same shards prints the same loss and accuracies, to the last bit."""
    from openwit.demo import train as demo
    from openwit.demo.world import write_eval_set

    monkeypatch.setenv("OPENWIT_DEMO_TRAIN_STEPS", "10")
    shapes = write_eval_set(tmp_path / "shapes", per_class=2)
    results = []
    for run in ("first", "second"):
        ctx = DemoContext(out=tmp_path / run, shards=demo_shards, eval_sets={"shapes": shapes})
        demo.run(ctx)
        results.append(ctx.results["train"])
    assert results[0]["loss"] == results[1]["loss"]
    assert results[0]["eval"] == results[1]["eval"]
