"""``openwit queries build`` and ``openwit queries show`` from the command line."""

from __future__ import annotations

import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from openwit.cli import main

from .corpus import EXPECTED_ROWS, THRESHOLDS, write_inputs


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return write_inputs(tmp_path_factory.mktemp("cli-inputs"))


def threshold_flags() -> list[str]:
    flags = []
    for key, value in THRESHOLDS.items():
        flags += ["--set", f"{key}={value}"]
    return flags


def test_build_takes_several_files_after_one_flag_and_prints_a_table(inputs, tmp_path, capsys):
    out = tmp_path / "queries.parquet"
    dumps = [str(p) for p in inputs["dumps"]]
    views = [str(p) for p in inputs["pageviews"]]
    code = main(
        ["queries", "build", "--wiki-dump", *dumps, "--pageviews", *views,
         "--wordnet", str(inputs["wordnet"]), "--out", str(out), *threshold_flags()]
    )  # fmt: skip
    assert code == 0
    assert pq.read_table(out).column("query").to_pylist() == [r[0] for r in EXPECTED_ROWS]
    printed = capsys.readouterr().out
    for word in ("unigram", "bigram", "title", "wordnet", "dump.skipped_redirect"):
        assert word in printed


def test_config_file_and_max_queries_flag(inputs, tmp_path):
    config = tmp_path / "queries.yaml"
    config.write_text("".join(f"{k}: {v}\n" for k, v in THRESHOLDS.items()))
    out = tmp_path / "q.parquet"
    code = main(
        ["queries", "build", "--wiki-dump", str(inputs["dumps"][0]), "--wiki-dump",
         str(inputs["dumps"][1]), "--config", str(config), "--max-queries", "3", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    assert pq.read_table(out).column("query").to_pylist() == [
        "the",
        "of",
        "Yersinia",
    ]  # quotas 3, 0 of 6, 1


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openwit.cli", "queries", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_missing_wordnet_dir_is_exit_2_with_one_line(inputs, tmp_path):
    result = run_cli(
        "build", "--wiki-dump", str(inputs["dumps"][0]), "--wordnet", str(tmp_path / "none"),
        "--out", str(tmp_path / "q.parquet"),
    )  # fmt: skip
    assert result.returncode == 2
    assert "WordNet directory not found" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_threshold_key_is_exit_2_naming_it(inputs, tmp_path, capsys):
    code = main(
        ["queries", "build", "--wiki-dump", str(inputs["dumps"][0]), "--out",
         str(tmp_path / "q.parquet"), "--set", "min_unigram_cuont=3"]
    )  # fmt: skip
    assert code == 2
    assert "min_unigram_cuont" in capsys.readouterr().err


def test_show_prints_sources_and_top_queries(inputs, tmp_path, capsys):
    out = tmp_path / "q.parquet"
    assert main(["queries", "build", "--wiki-dump", *map(str, inputs["dumps"]),
                 "--out", str(out), *threshold_flags()]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["queries", "show", str(out), "--limit", "2"]) == 0
    printed = capsys.readouterr().out
    assert "Yersinia pestis" in printed
    assert "the" in printed
    assert "pestis" not in printed.replace("Yersinia pestis", "")  # only the top 2 unigrams


def test_show_refuses_a_file_that_is_not_a_query_list(tmp_path, capsys):
    path = tmp_path / "x.parquet"
    path.write_bytes(b"not parquet")
    assert main(["queries", "show", str(path)]) == 2
    assert "not a Parquet file" in capsys.readouterr().err


def test_build_without_a_dump_is_a_usage_error_exit_2(capsys):
    assert main(["queries", "build", "--out", "q.parquet"]) == 2
    assert "--wiki-dump" in capsys.readouterr().err


def test_truncated_dump_is_exit_2_naming_file_and_pages_and_keep_partial_builds(tmp_path):
    from .test_dump import truncated_multistream

    path = truncated_multistream(tmp_path, keep_streams=25)
    out = tmp_path / "q.parquet"
    args = ("build", "--wiki-dump", str(path), "--out", str(out), "--set", "min_unigram_count=1")
    result = run_cli(*args)
    assert result.returncode == 2
    assert f"{path}: file is truncated" in result.stderr
    assert "after 25 pages read" in result.stderr
    assert "--keep-partial" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()
    kept = run_cli(*args, "--keep-partial")
    assert kept.returncode == 0, kept.stderr
    assert "kept 25 records of damaged" in kept.stdout
    assert out.exists()


@pytest.mark.parametrize("name", ["pageviews-20260101-020000", "pageviews-20260101-030000.gz"])
def test_random_bytes_as_page_views_are_exit_2_naming_the_file(inputs, tmp_path, capsys, name):
    import random

    noise = tmp_path / name
    noise.write_bytes(random.Random(3).randbytes(200_000))
    out = tmp_path / "q.parquet"
    code = main(
        ["queries", "build", "--wiki-dump", str(inputs["dumps"][0]), "--pageviews",
         str(inputs["pageviews"][0]), str(noise), "--out", str(out)]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"page-view file {noise}: not a page-view file" in err
    assert not out.exists()


def test_page_view_files_with_some_bad_lines_or_nothing_in_them_pass(tmp_path):
    import gzip

    from openwit.queries.pageviews import check_pageview_file

    good = b"".join(b"en Title_%d %d 0\n" % (i, i) for i in range(30))
    (tmp_path / "mixed.gz").write_bytes(gzip.compress(good + b"garbage line\n" * 20))
    (tmp_path / "empty").write_bytes(b"")
    whole = gzip.compress(good * 2000)
    (tmp_path / "truncated.gz").write_bytes(whole[: len(whole) // 3])
    for name in ("mixed.gz", "empty", "truncated.gz"):
        check_pageview_file(tmp_path / name)  # the counting reports a damaged file itself
