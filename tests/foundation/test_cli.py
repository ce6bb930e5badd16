"""The ``openwit`` command line: fast help, exit 2 with one line for user mistakes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from openwit.cli import main

HEAVY_MODULES = ("torch", "apache_beam", "img2dataset", "open_clip", "webdataset", "pyarrow")


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openwit.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_help_lists_every_command_of_the_contract():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("queries", "build", "audit", "train", "eval", "report", "demo"):
        assert command in result.stdout


def test_importing_the_cli_pulls_in_no_heavy_library():
    code = (
        "import sys, json, openwit.cli\n"
        f"print(json.dumps([m for m in {list(HEAVY_MODULES)!r} if m in sys.modules]))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_help_of_every_command_answers(capsys):
    for args in ([c, "--help"] for c in ("build", "queries", "report", "demo")):
        assert main(args) == 0
    assert "--until" in capsys.readouterr().out


def test_unknown_config_key_is_exit_2_naming_the_key_without_traceback(tmp_path):
    (tmp_path / "pool.jsonl").write_text("{}\n")
    (tmp_path / "bad.yaml").write_text("inputs:\n  - path: pool.jsonl\ntext:\n  min_wrods: 3\n")
    result = run_cli("build", "--config", "bad.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown key 'text.min_wrods'" in result.stderr
    assert "bad.yaml" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_input_file_is_exit_2_naming_the_file(tmp_path):
    (tmp_path / "build.yaml").write_text("inputs:\n  - path: crawl/missing.warc.wat.gz\n")
    result = run_cli("build", "--config", "build.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert "missing.warc.wat.gz" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_file_is_exit_2(tmp_path, capsys):
    assert main(["build", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("balance:\n  max_per_query: 0\n", "balance.max_per_query"),
        ("text:\n  min_words: many\n", "text.min_words"),
        ("inputs: [path: x]\n: : :\n", "invalid YAML"),
        ("- just\n- a list\n", "must be a mapping"),
        ("download:\n  threads_per_worker: -1\n", "download.threads_per_worker"),
    ],
)
def test_bad_config_values_are_one_line_errors(tmp_path, capsys, body, message):
    path = tmp_path / "build.yaml"
    path.write_text(body)
    assert main(["build", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert str(path) in err


def test_set_override_is_validated_like_the_file(tmp_path, capsys):
    path = tmp_path / "build.yaml"
    path.write_text("inputs:\n  - path: build.yaml\n")
    assert main(["build", "--config", str(path), "--set", "image.min_side=zero"]) == 2
    assert "image.min_side" in capsys.readouterr().err


def test_a_config_in_a_bucket_is_read_there(any_bucket, tmp_path, capsys):
    bucket = any_bucket
    from openwit import fs

    (tmp_path / "pool.jsonl").write_text('{"url": "http://x.example/a.jpg", "text": "a red fox"}\n')
    config = f"inputs:\n  - path: {tmp_path / 'pool.jsonl'}\nout: {tmp_path / 'build'}\n"
    fs.write_text(f"{bucket}/configs/build.yaml", config)
    assert main(["build", "--config", f"{bucket}/configs/build.yaml", "--until", "ingest"]) == 0
    assert "build stopped after ingest" in capsys.readouterr().out
    assert (tmp_path / "build" / "manifest.json").is_file()


def test_the_demo_refuses_a_url_for_its_local_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--out", "s3://bucket/demo"]) == 2
    assert "local folder" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_usage_error_is_exit_2(capsys):
    assert main(["build"]) == 2
    assert "--config" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_teaches_and_ends_with_the_paths_of_its_reports(tmp_path, capsys, monkeypatch):
    """`make demo` as a newcomer runs it: zero-shot at least twice chance on every eval set
    it reports, and the last lines name the build report, the dataset card and the audit."""
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--out", "demo-out"]) == 0
    out = capsys.readouterr().out
    for part in ("queries", "build", "train", "audit", "report"):
        assert part in out
    evaluation = json.loads((tmp_path / "demo-out" / "train" / "eval.json").read_text())
    assert len(evaluation["sets"]) == 2
    for name, result in evaluation["sets"].items():
        assert result["top1"] >= 2 * result["chance_top1"], (name, result)
    assert out.strip().splitlines()[-3:] == [
        "build report: demo-out/build/report/index.html",
        "dataset card: demo-out/build/report/dataset-card.md",
        "audit report: demo-out/audit/index.html",
    ]
    for path in ("build/report/index.html", "build/report/dataset-card.md", "audit/index.html"):
        assert (tmp_path / "demo-out" / path).is_file()


def test_every_package_is_listed_for_installation():
    """pyproject.toml lists packages by hand (find_packages does not follow package-dir):
    a sub-package missing there is missing from every non-editable install."""
    import tomllib

    repo = Path(__file__).resolve().parents[2]
    settings = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(settings["packages"])
    for name, folder in settings["package-dir"].items():
        for init in (repo / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(repo / folder).parts
            assert ".".join((name, *parts)) in listed, init
