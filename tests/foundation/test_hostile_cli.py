"""User mistakes and failing storage at ``openwit build``: one line, the right exit code, no
traceback, and nothing committed lost.

The storage tests mount a real read-only or tiny tmpfs in a private mount namespace
(``unshare --mount``, as root); they skip, saying why, where that is not possible.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import textwrap
from functools import cache
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from openwit.cli import main
from tests.candidates.test_build import write_queries


def one_error_line(err: str) -> str:
    """The one line of ``err`` that is not a stage's progress line (those are indented)."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("  ")]
    assert len(lines) == 1, err
    return lines[0]


def build_dir_with_pool(root: Path, records: int = 20) -> Path:
    """A config with a JSONL pool of ``records`` pairs and a query list; returns the YAML."""
    rng = random.Random(7)
    words = ["red", "dog", "cat", "house", "tree", "boat", "river", "green", "old", "small"]
    with (root / "pool.jsonl").open("w") as handle:
        for index in range(records):
            caption = " ".join(rng.choice(words) for _ in range(8))
            noise = f"{rng.getrandbits(64):x}"  # keeps the Parquet from compressing to nothing
            url = f"https://img{index % 7}.example.com/{index}-{noise}.jpg"
            handle.write(json.dumps({"url": url, "caption": f"{caption} {noise}"}) + "\n")
    write_queries(root / "queries.parquet", words)
    config = root / "build.yaml"
    config.write_text("out: out\nqueries: queries.parquet\ninputs:\n  - path: pool.jsonl\n")
    return config


# -- the config file ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "inputs:\n  - path: pool.jsonl\ntext:\n  min_words: 3\n  min_words: 4\n",
            "key 'text.min_words' is given twice (lines 4 and 5)",
        ),
        ("out: a\nrunner: DirectRunner\nout: b\n", "key 'out' is given twice (lines 1 and 3)"),
        (
            "inputs:\n  - path: a.jsonl\n  - {path: b.jsonl, path: c.jsonl}\n",
            "key 'inputs[1].path' is given twice (lines 3 and 3)",
        ),
        (
            "inputs:\n  - path: pool.jsonl\ntext:\n  min_chars: 50\n  max_chars: 10\n",
            "text: min_chars (50) is above max_chars (10): no text can pass",
        ),
    ],
)
def test_a_config_that_would_silently_lose_a_setting_is_refused(tmp_path, capsys, body, message):
    config = build_dir_with_pool(tmp_path)
    config.write_text(body)
    assert main(["build", "--config", str(config)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert message in line and str(config) in line
    assert not (tmp_path / "out").exists()


def test_min_chars_above_max_chars_from_the_command_line_is_refused(tmp_path, capsys):
    config = build_dir_with_pool(tmp_path)
    assert main(["build", "--config", str(config), "--set", "text.max_chars=3"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "min_chars (6) is above max_chars (3)" in line


def test_repeated_keys_in_a_query_build_config_are_refused_too(tmp_path, capsys):
    config = tmp_path / "queries.yaml"
    config.write_text("min_unigram_count: 2\nmin_unigram_count: 3\n")
    dump = tmp_path / "dump.xml"
    dump.write_text("<mediawiki/>")
    code = main(["queries", "build", "--wiki-dump", str(dump), "--config", str(config),
                 "--out", str(tmp_path / "q.parquet")])  # fmt: skip
    assert code == 2
    assert "key 'min_unigram_count' is given twice" in one_error_line(capsys.readouterr().err)


def test_a_config_that_is_a_directory_is_named_as_one(tmp_path, capsys):
    assert main(["build", "--config", str(tmp_path)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"config file is a directory: {tmp_path}" in line and "not found" not in line


# -- runner and Beam options ----------------------------------------------------------------
def test_an_unknown_runner_is_exit_2_with_the_runners_beam_knows(tmp_path, capsys):
    config = build_dir_with_pool(tmp_path)
    assert main(["build", "--config", str(config), "--runner", "NoSuchRunner"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "Beam has no runner 'NoSuchRunner'" in line
    for name in ("DirectRunner", "FlinkRunner", "SparkRunner", "DataflowRunner"):
        assert name in line
    assert not (tmp_path / "out").exists()


def test_a_misspelt_runner_gets_the_close_name(tmp_path, capsys):
    config = build_dir_with_pool(tmp_path)
    assert main(["build", "--config", str(config), "--runner", "SparkRuner"]) == 2
    assert "did you mean SparkRunner?" in one_error_line(capsys.readouterr().err)


def test_an_unknown_beam_option_is_exit_2_with_the_closest_options(tmp_path, capsys):
    config = build_dir_with_pool(tmp_path)
    code = main(["build", "--config", str(config), "--beam-option", "direct_num_worker=2"])
    assert code == 2
    line = one_error_line(capsys.readouterr().err)
    assert "Beam has no option 'direct_num_worker'" in line
    assert "the closest Beam knows: direct_num_workers" in line
    assert not (tmp_path / "out").exists()


def test_an_unknown_beam_option_far_from_any_is_named_alone(tmp_path, capsys):
    config = build_dir_with_pool(tmp_path)
    code = main(["build", "--config", str(config), "--beam-option", "zzqqxx=1"])
    assert code == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.endswith("beam_options: Beam has no option 'zzqqxx'")


def test_known_beam_options_of_other_runners_still_pass(tmp_path):
    from openwit.beam import pipeline_options

    options = pipeline_options(
        "DataflowRunner", {"project": "p", "region": "r", "no_use_public_ips": True}
    )
    assert options.get_all_options()["project"] == "p"
    assert pipeline_options("flink", {"flink_master": "localhost:8081"})


# -- storage that refuses writes ------------------------------------------------------------
def test_a_storage_error_is_found_inside_the_exception_beam_wraps_it_in():
    import errno

    from openwit.errors import storage_error

    def raised_in_a_worker() -> BaseException:
        try:
            try:
                raise OSError(errno.EDQUOT, "Disk quota exceeded")
            except OSError:
                raise RuntimeError("OSError: [Errno 122] Disk quota exceeded") from None
        except RuntimeError as exc:
            return exc

    full = storage_error(raised_in_a_worker(), "/data/out")
    assert full is not None and full.exit_code == 1
    assert str(full).startswith("no space left on the device of /data/out;")
    with_name = storage_error(OSError(errno.ENOSPC, "full", "/data/out/manifest.json"), "/data/out")
    assert str(with_name).startswith("no space left on device writing /data/out/manifest.json;")
    read_only = storage_error(OSError(errno.EROFS, "Read-only file system", "/ro/x"), "/ro")
    assert read_only is not None and read_only.exit_code == 2
    assert str(read_only) == "cannot write /ro/x: read-only file system; choose a writable --out"
    assert storage_error(OSError(errno.ENOENT, "missing", "/x"), "/x") is None
    assert storage_error(ValueError("[Errno 2] something else"), "/x") is None


@cache
def mounting_skip_reason() -> str | None:
    """Why a private tmpfs cannot be mounted here, or None when it can."""
    if shutil.which("unshare") is None:
        return "no unshare command"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d && umount $d && rmdir $d"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if probe.returncode != 0:
        return (
            f"cannot mount a private tmpfs here (root and unshare needed): {probe.stderr.strip()}"
        )
    return None


def in_private_mount(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a bash ``script`` in its own mount namespace; ``$OPENWIT`` runs the CLI."""
    reason = mounting_skip_reason()
    if reason:
        pytest.skip(reason)
    prelude = f"set -u\nOPENWIT='{sys.executable} -m openwit.cli'\n"
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "bash", "-c", prelude + script],
        capture_output=True, text=True, cwd=cwd, timeout=300,
    )  # fmt: skip


def test_out_on_a_read_only_mount_is_one_line_naming_it(tmp_path):
    build_dir_with_pool(tmp_path)
    (tmp_path / "mnt").mkdir()
    result = in_private_mount(
        textwrap.dedent("""
            mount -t tmpfs -o ro tmpfs mnt
            $OPENWIT build --config build.yaml --out mnt/out --until ingest
        """),
        tmp_path,
    )
    assert result.returncode == 2, result.stderr
    line = one_error_line(result.stderr)
    assert f"cannot write {tmp_path / 'mnt' / 'out'}: read-only file system" in line


def test_a_full_disk_is_one_line_and_keeps_what_was_committed(tmp_path):
    build_dir_with_pool(tmp_path, records=10_000)
    (tmp_path / "mnt").mkdir()
    out = tmp_path / "mnt" / "out"
    # ingest is committed with room to spare; then the disk fills up but for 64 kB, and the
    # text stage's output (megabytes, written by Beam) does not fit.
    result = in_private_mount(
        textwrap.dedent("""
            mount -t tmpfs -o size=16m tmpfs mnt
            $OPENWIT build --config build.yaml --out mnt/out --until ingest || exit 90
            free=$(df --output=avail -B1 mnt | tail -1)
            head -c $((free - 65536)) /dev/zero > mnt/filler || exit 91
            $OPENWIT build --config build.yaml --out mnt/out --until text
            code=$?
            cp mnt/out/manifest.json manifest-after.json
            cp -r mnt/out/stages/ingest ingest-after
            exit $code
        """),
        tmp_path,
    )
    assert result.returncode == 1, result.stderr
    line = one_error_line(result.stderr)
    assert f"no space left on the device of {out}" in line
    assert f"the stages committed in {out} before are intact" in line
    assert "ERROR" not in result.stderr  # Beam's own log of the worker's error is not shown
    manifest = json.loads((tmp_path / "manifest-after.json").read_text())
    assert manifest["stages"]["ingest"]["status"] == "complete"
    assert manifest["stages"]["text"]["status"] != "complete"
    kept = pq.read_table(sorted((tmp_path / "ingest-after").glob("*/part-*.parquet")))
    assert kept.num_rows == manifest["stages"]["ingest"]["funnel"]["out"] == 10_000
