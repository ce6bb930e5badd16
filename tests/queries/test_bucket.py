"""A query list written into a bucket (the real S3 server on 127.0.0.1): ``openwit queries
build --out s3://...`` writes the list and its summary there, where a build's ``queries:``
and its report read them."""

from __future__ import annotations

import os

import pyarrow.parquet as pq

from openwit import fs
from openwit.cli import main
from openwit.queries.build import summary_path

from .corpus import EXPECTED_ROWS, THRESHOLDS, write_inputs


def test_the_list_and_its_summary_land_in_the_bucket_and_nothing_on_disk(
    bucket, tmp_path, monkeypatch, capsys
):
    inputs = write_inputs(tmp_path / "inputs")
    monkeypatch.chdir(tmp_path)  # the list once went to ./s3:/bucket/... here
    out = f"{bucket}/lists/queries.parquet"
    args = ["queries", "build", "--wiki-dump", *map(str, inputs["dumps"])]
    args += ["--pageviews", *map(str, inputs["pageviews"])]
    args += ["--wordnet", str(inputs["wordnet"]), "--out", out]
    for key, value in THRESHOLDS.items():
        args += ["--set", f"{key}={value}"]
    assert main(args) == 0
    with fs.open_input(out) as stream:
        table = pq.read_table(stream)
    assert table.column("query").to_pylist() == [row[0] for row in EXPECTED_ROWS]
    assert fs.read_json(summary_path(out))["rows"] == table.num_rows
    assert summary_path(out) == f"{bucket}/lists/queries.summary.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inputs"]
    capsys.readouterr()
    assert main(["queries", "show", out, "--limit", "1"]) == 0  # and read back from there
    assert f"{out}: {table.num_rows:,} queries" in capsys.readouterr().out


def test_a_bucket_without_credentials_fails_before_any_counting(s3, tmp_path, monkeypatch, capsys):
    inputs = write_inputs(tmp_path / "inputs")
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)  # the only store this test may reach
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    fs.configure({})
    counted = []
    monkeypatch.setattr("openwit.queries.counting.run_counting", lambda *a: counted.append(a))
    args = ["queries", "build", "--wiki-dump", str(inputs["dumps"][0])]
    args += ["--out", "s3://openwit-query-lists/queries.parquet"]
    assert main(args) == 2
    assert counted == []
    err = capsys.readouterr().err
    assert "no usable credentials" in err and "Traceback" not in err
