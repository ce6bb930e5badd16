"""pipeline_main, the Beam operator's py_file: its flags, its exit codes, its result file."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from openwit.airflow import pipeline_main
from openwit.airflow.pipeline_main import parse_arguments

SCRIPT = Path(pipeline_main.__file__)


def test_flags_are_read_back_as_the_operator_wrote_them():
    request = {"step": "text", "config": {"out": "/b"}, "result_file": None}
    argv = [
        "--runner=DirectRunner",
        "--direct_num_workers=2",
        "--direct_running_mode=in_memory",
        "--experiments=a",
        "--experiments=b",
        "--save_main_session",
        '--sdk_location={"nested": [1, 2]}',
        f"--openwit={json.dumps(request)}",
        "--labels=airflow-version=v3-3-2",
    ]
    got, runner, options = parse_arguments(argv)
    assert got == request and runner == "DirectRunner"
    assert options == {
        "direct_num_workers": 2,
        "direct_running_mode": "in_memory",
        "experiments": ["a", "b"],
        "save_main_session": True,
        "sdk_location": {"nested": [1, 2]},
    }
    # Dataflow's labels only reach Dataflow.
    _, _, dataflow = parse_arguments([*argv[1:], "--runner=DataflowRunner"])
    assert dataflow["labels"] == "airflow-version=v3-3-2"


def run_script(script: Path, request: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    request = {**request, "result_file": str(tmp_path / "result.json")}
    return subprocess.run(
        [sys.executable, str(script), "--runner=DirectRunner", f"--openwit={json.dumps(request)}"],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_user_mistake_exits_2_with_one_line_and_says_so_in_the_result(tmp_path):
    config = {"out": str(tmp_path / "b"), "inputs": [{"path": str(tmp_path / "none.jsonl")}]}
    # A sibling module named like a library must not shadow it: the script drops its own
    # folder from sys.path before importing anything.
    copy = tmp_path / "launch" / "pipeline_main.py"
    copy.parent.mkdir()
    shutil.copy(SCRIPT, copy)
    (copy.parent / "yaml.py").write_text("raise ImportError('the script folder shadowed yaml')\n")

    result = run_script(copy, {"step": "ingest", "config": config}, tmp_path)

    assert result.returncode == 2, result.stderr
    message = f"inputs[0].path: no such file: {tmp_path / 'none.jsonl'}"
    assert result.stderr.strip().splitlines()[-1] == f"openwit: error: {message}"
    outcome = json.loads((tmp_path / "result.json").read_text())
    assert outcome == {"status": "error", "user_error": True, "error": message}


def test_a_stage_before_the_one_asked_for_must_be_complete(tmp_path):
    pool = tmp_path / "pool.jsonl"
    pool.write_text(json.dumps({"url": "http://127.0.0.1:9/a.jpg", "caption": "a red car"}) + "\n")
    config = {"out": str(tmp_path / "b"), "inputs": [{"path": str(pool)}]}

    result = run_script(SCRIPT, {"step": "text", "config": config}, tmp_path)

    assert result.returncode == 2
    assert "stage ingest of" in result.stderr and "is not complete for this config" in result.stderr
    assert not (tmp_path / "b" / "stages" / "ingest").exists()


def test_a_crash_exits_1_with_its_traceback_and_the_error_in_the_result(tmp_path):
    result = run_script(SCRIPT, {"step": "ingest", "config": {"out": 5, "bogus": 1}}, tmp_path)
    assert result.returncode == 2  # an invalid pinned config is still a one-line error
    assert "unknown key 'bogus'" in result.stderr
    broken = run_script(SCRIPT, {"step": "ingest"}, tmp_path)  # no config at all: a bug
    assert broken.returncode == 1 and "Traceback" in broken.stderr
    outcome = json.loads((tmp_path / "result.json").read_text())
    assert outcome["status"] == "error" and outcome["user_error"] is False
    assert outcome["error"].startswith("KeyError")
