"""Training runs as the DAGs see them: run folders, commands, checkpoints, subprocesses."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import psutil
import pytest

from openwit.airflow.training import (
    check_train_params,
    eval_command,
    newest_checkpoint,
    run_dir_for,
    run_model,
    run_streaming,
    train_command,
)
from openwit.errors import UserError

PARAMS = {
    "model": "ViT-B/32 (laion)",
    "steps": None,
    "epochs": 2.0,
    "batch_size": 64,
    "precision": "bf16",
    "nproc": 1,
    "lr": 5e-4,
    "save_every": 100,
    "seed": 0,
    "workers": None,
    "device": "auto",
}


def test_a_run_folder_is_the_same_for_the_same_data_and_params_only():
    first = run_dir_for("/runs", "file:///b/shards", "hash-a", PARAMS)
    assert first == run_dir_for("/runs", "file:///b/shards", "hash-a", dict(PARAMS))
    assert first.startswith("/runs/ViT-B_32_laion_-") and first.count("/") == 2
    others = {
        run_dir_for("/runs", "file:///b/shards", "hash-b", PARAMS),
        run_dir_for("/runs", "file:///c/shards", "hash-a", PARAMS),
        run_dir_for("/runs", "file:///b/shards", "hash-a", {**PARAMS, "epochs": 3.0}),
        run_dir_for("/runs", "file:///b/shards", "hash-a", {**PARAMS, "nproc": 8}),
    }
    assert first not in others and len(others) == 4
    # Settings that do not change what is computed keep the folder (and so resume it).
    assert first == run_dir_for("/runs", "file:///b/shards", "hash-a", {**PARAMS, "workers": 4})


def test_one_process_trains_directly_and_resumes_from_the_latest_checkpoint():
    command = train_command("/py", "/b/shards", "/runs/r", PARAMS)
    assert command[:4] == ["/py", "-m", "openwit.cli", "train"]
    flags = dict(zip(command[4::2], command[5::2]))
    assert flags["--resume"] == "auto" and flags["--epochs"] == "2.0"
    assert flags["--train-data"] == "/b/shards" and flags["--out"] == "/runs/r"
    assert flags["--precision"] == "bf16" and flags["--device"] == "auto"
    assert "--steps" not in flags and "--workers" not in flags


def test_several_processes_train_under_torchrun_on_one_node():
    command = train_command("/py", "/b/shards", "/r", {**PARAMS, "nproc": 4}, port=29511)
    assert command[:3] == ["/py", "-m", "torch.distributed.run"]
    assert "--nproc-per-node=4" in command and "--nnodes=1" in command
    assert "--master-addr=127.0.0.1" in command and "--master-port=29511" in command
    assert command[command.index("openwit.cli") - 1 :][:3] == ["-m", "openwit.cli", "train"]


def test_steps_or_epochs_exactly_one():
    check_train_params({**PARAMS})
    with pytest.raises(UserError, match="exactly one of steps and epochs"):
        check_train_params({**PARAMS, "steps": 10})
    with pytest.raises(UserError, match="exactly one of steps and epochs"):
        check_train_params({**PARAMS, "epochs": None})


def test_eval_command_names_every_set():
    command = eval_command("/py", "/r/latest.pt", "m", ["a=/x", "b=/y"], "/r/e.json", "cpu")
    assert command[:4] == ["/py", "-m", "openwit.cli", "eval"]
    assert command[-4:] == ["--eval", "a=/x", "--eval", "b=/y"]


def make_run(runs: Path, name: str, shards: str, model: str, age_s: float) -> Path:
    run = runs / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"train_data": shards, "model": model}))
    checkpoint = run / "checkpoints" / "latest.pt"
    checkpoint.write_bytes(b"weights")
    stamp = time.time() - age_s
    os.utime(checkpoint, (stamp, stamp))
    return checkpoint


def test_the_newest_checkpoint_of_a_run_on_these_shards(tmp_path):
    runs = tmp_path / "runs"
    shards_a, shards_b = str(tmp_path / "a" / "shards"), str(tmp_path / "b" / "shards")
    make_run(runs, "old", shards_a, "tiny", age_s=300)
    newer = make_run(runs, "new", shards_a, "ViT-B-32", age_s=100)
    other = make_run(runs, "other", shards_b, "ViT-L-14", age_s=10)
    (runs / "not-a-run").mkdir()
    (runs / "empty-run").mkdir()
    (runs / "empty-run" / "config.json").write_text(json.dumps({"train_data": shards_a}))

    assert newest_checkpoint(runs, shards_a) == (str(newer), "ViT-B-32")
    assert newest_checkpoint(runs, shards_a + "/") == (str(newer), "ViT-B-32")
    assert newest_checkpoint(runs) == (str(other), "ViT-L-14")
    old = runs / "old" / "checkpoints" / "latest.pt"
    assert newest_checkpoint(runs / "old") == (str(old), "tiny")
    assert newest_checkpoint(runs, str(tmp_path / "c")) is None
    assert newest_checkpoint(tmp_path / "nowhere") is None
    assert run_model(other) == "ViT-L-14" and run_model(tmp_path / "x.pt") is None


def test_runs_in_a_bucket_are_named_and_found_there(any_bucket):
    bucket = any_bucket
    from openwit import fs

    runs = f"{bucket}/runs"
    run = run_dir_for(runs, "s3://data/shards", "hash-a", PARAMS)
    assert run.startswith(f"{runs}/ViT-B_32_laion_-") and run.count("/") == runs.count("/") + 1
    for name, shards, model in [("old", "s3://data/shards", "tiny"),
                                ("new", "s3://data/shards", "ViT-B-32"),
                                ("other", "s3://else/shards", "ViT-L-14")]:  # fmt: skip
        config = {"train_data": shards, "model": model}
        fs.write_json(f"{runs}/{name}/config.json", config)
        fs.write_bytes(f"{runs}/{name}/checkpoints/latest.pt", b"weights")
        time.sleep(1.1)  # the store's modification times have whole seconds
    fs.write_json(f"{runs}/empty/config.json", {"train_data": "s3://data/shards"})
    fs.write_json(f"{runs}/new/checkpoints/config.json", {"not": "a run"})
    newest = f"{runs}/new/checkpoints/latest.pt"
    assert newest_checkpoint(runs, "s3://data/shards") == (newest, "ViT-B-32")
    assert newest_checkpoint(runs) == (f"{runs}/other/checkpoints/latest.pt", "ViT-L-14")
    assert newest_checkpoint(f"{runs}/old") == (f"{runs}/old/checkpoints/latest.pt", "tiny")
    assert newest_checkpoint(f"{bucket}/nowhere") is None
    assert run_model(newest) == "ViT-B-32"


def test_output_is_passed_on_line_by_line_and_a_user_error_is_its_one_line():
    lines: list[str] = []
    script = "import sys; print('step 1'); print('openwit: error: bad shards', file=sys.stderr)"
    with pytest.raises(UserError, match=r"^bad shards$"):
        run_streaming([sys.executable, "-c", script + "; sys.exit(2)"], say=lines.append)
    assert lines == ["step 1", "openwit: error: bad shards"]
    with pytest.raises(RuntimeError, match="exited with 3"):
        run_streaming([sys.executable, "-c", "import sys; sys.exit(3)"], say=lines.append)


def test_a_stopped_task_ends_the_whole_process_group(tmp_path):
    # The child starts a grandchild (as torchrun starts workers), then both wait.
    script = (
        "import subprocess, sys, time;"
        "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']);"
        "print(g.pid, flush=True); time.sleep(120)"
    )
    seen: list[int] = []

    def say(line: str) -> None:
        seen.append(int(line))
        raise TimeoutError("the task's execution timeout")  # what Airflow raises in the task

    with pytest.raises(TimeoutError):
        run_streaming([sys.executable, "-c", script], say=say, grace_s=5)
    deadline = time.monotonic() + 10
    while not gone(seen[0]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gone(seen[0])


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
