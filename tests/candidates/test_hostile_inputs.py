"""Hostile and damaged build inputs: each is a counted rejection or one line and exit 2.

Damaged pools (truncated gzip, a plain file named ``.gz``), a byte order mark, a caption
column of the wrong type, and query lists the balance cap cannot work with.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from openwit.build import run_build
from openwit.cli import main
from openwit.config import BuildConfig, load_build_config
from openwit.errors import ConfigError
from openwit.funnel import Rejection
from openwit.pipeline.ingest.readers import ReadUnit, plan_read_units, read_unit
from openwit.pipeline.match.matcher import check_queries_file
from tests.candidates.test_build import write_queries


def rows(n: int, start: int = 0) -> list[dict[str, str]]:
    return [
        {"url": f"https://img.example.com/{i}.jpg", "caption": f"a red dog number {i}"}
        for i in range(start, start + n)
    ]


def jsonl(records: list[dict[str, str]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def csv_bytes(records: list[dict[str, str]]) -> bytes:
    lines = ["url,caption", *(f"{r['url']},{r['caption']}" for r in records)]
    return ("\n".join(lines) + "\n").encode()


def read_all(path: Path, fmt: str) -> tuple[list[dict], list[Rejection]]:
    items = list(read_unit(ReadUnit(str(path), fmt), {}))
    return (
        [i for i in items if not isinstance(i, Rejection)],
        [i for i in items if isinstance(i, Rejection)],
    )


def damaged_pools(root: Path) -> dict[str, tuple[Path, str, int]]:
    """name -> (path, format, rows readable before the damage: 0 or -1 for some); no two
    files share a row."""
    root.mkdir(parents=True, exist_ok=True)
    whole = gzip.compress(jsonl(rows(3000)), mtime=0)
    truncated = root / "truncated.jsonl.gz"
    truncated.write_bytes(whole[: len(whole) // 2])
    csv_whole = gzip.compress(csv_bytes(rows(3000, start=10_000)), mtime=0)
    truncated_csv = root / "truncated.csv.gz"
    truncated_csv.write_bytes(csv_whole[: len(csv_whole) // 2])
    second = gzip.compress(jsonl(rows(1000, start=30_000)), mtime=0)
    two_members = root / "members.jsonl.gz"
    first = gzip.compress(jsonl(rows(5, start=20_000)), mtime=0)
    two_members.write_bytes(first + second[: len(second) // 2])
    plain = root / "plain.jsonl.gz"
    plain.write_bytes(jsonl(rows(4, start=40_000)))  # not gzip at all
    return {
        "truncated_jsonl": (truncated, "jsonl", -1),  # some rows, cut mid-file
        "truncated_csv": (truncated_csv, "csv", -1),
        "second_member": (two_members, "jsonl", -1),
        "plain_named_gz": (plain, "jsonl", 0),
    }


@pytest.mark.parametrize(
    "name", ["truncated_jsonl", "truncated_csv", "second_member", "plain_named_gz"]
)
def test_a_damaged_compressed_pool_keeps_its_rows_and_rejects_the_rest(tmp_path, name):
    path, fmt, readable = damaged_pools(tmp_path)[name]
    pairs, rejections = read_all(path, fmt)
    assert [r.reason for r in rejections] == ["unreadable_input"]
    (rejection,) = rejections
    assert rejection.detail.startswith(f"{path}#{len(pairs)}: ")
    assert "EOFError" in rejection.detail or "BadGzipFile" in rejection.detail
    if readable == 0:
        assert pairs == []
    else:
        assert len(pairs) > 0
        # the rows before the damage are the file's first rows, in order
        offsets = [p["source_offset"] for p in pairs]
        assert offsets == list(range(len(pairs)))


def test_a_build_over_damaged_pools_counts_them_and_the_funnel_holds(tmp_path):
    pools = damaged_pools(tmp_path / "pools")
    write_queries(tmp_path / "queries.parquet", ["dog"])
    config = load_build_config(
        None,
        {
            "out": str(tmp_path / "out"),
            "queries": str(tmp_path / "queries.parquet"),
            "inputs": [{"path": str(path)} for path, _, _ in pools.values()],
        },
    )
    outcome = run_build(config, until="ingest")
    assert outcome.complete is False  # stopped after ingest
    funnel = json.loads((tmp_path / "out" / "funnel.json").read_text())["ingest"]
    assert funnel["rejected"] == {"unreadable_input": 4}
    assert funnel["in"] == funnel["out"] + 4
    assert funnel["out"] > 0


def test_a_csv_named_gz_that_is_plain_text_is_rejected_not_a_crash_at_planning(tmp_path):
    path = tmp_path / "plain.csv.gz"
    path.write_bytes(csv_bytes(rows(3)))
    units = plan_read_units(BuildConfig(inputs=[{"path": str(path)}]))
    assert len(units) == 1
    pairs, rejections = read_all(path, "csv")
    assert pairs == [] and [r.reason for r in rejections] == ["unreadable_input"]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_byte_order_mark_does_not_cost_the_first_row(tmp_path, fmt):
    path = tmp_path / f"pool.{fmt}"
    body = jsonl(rows(3)) if fmt == "jsonl" else csv_bytes(rows(3))
    path.write_bytes(b"\xef\xbb\xbf" + body)
    plan_read_units(BuildConfig(inputs=[{"path": str(path)}]))  # the header check passes
    pairs, rejections = read_all(path, fmt)
    assert rejections == []
    assert [p["url"] for p in pairs] == [r["url"] for r in rows(3)]


def test_a_bom_only_counts_at_the_start_of_a_jsonl_file(tmp_path):
    path = tmp_path / "pool.jsonl"
    path.write_bytes(jsonl(rows(1)) + b"\xef\xbb\xbf" + jsonl(rows(1, start=1)))
    pairs, rejections = read_all(path, "jsonl")
    assert len(pairs) == 1 and [r.reason for r in rejections] == ["malformed_record"]


def test_a_list_caption_column_is_refused_naming_the_column_and_its_type(tmp_path):
    path = tmp_path / "pool.parquet"
    captions = pa.array([["a red dog", "on a lawn"]], pa.list_(pa.string()))
    pq.write_table(pa.table({"url": ["https://a.example/x.jpg"], "caption": captions}), path)
    with pytest.raises(ConfigError) as caught:
        plan_read_units(BuildConfig(inputs=[{"path": str(path)}]))
    assert str(caught.value) == (
        f"inputs[0]: column 'caption' of {path} is list<element: string>, not text; "
        "set url_column/text_column to a string column"
    )


def test_a_missing_column_lists_the_top_level_columns(tmp_path):
    path = tmp_path / "pool.parquet"
    nested = pa.array([{"caption": "a dog"}], pa.struct([("caption", pa.string())]))
    pq.write_table(pa.table({"url": ["https://a.example/x.jpg"], "meta": nested}), path)
    with pytest.raises(ConfigError, match=r"column 'caption' not in .*\(columns: 'url', 'meta'\)"):
        plan_read_units(BuildConfig(inputs=[{"path": str(path)}]))


# -- the query list -------------------------------------------------------------------------
def queries_table(path: Path, column: pa.Array) -> str:
    pq.write_table(pa.table({"query": column}), path)
    return str(path)


@pytest.mark.parametrize(
    ("column", "message"),
    [
        (pa.array(["dog", "cat", "dog", "cat"]), "repeats 2 queries ('dog' at rows 0 and 2)"),
        (pa.array(["dog", ""]), "1 empty or blank queries (first at row 1)"),
        (pa.array(["dog", " \t", None]), "2 empty or blank queries (first at row 1)"),
        (pa.array([1, 2]), "'query' column of"),
        (pa.array([], pa.string()), "holds no queries (0 rows)"),
    ],
)
def test_a_query_list_the_cap_cannot_work_with_is_refused(tmp_path, column, message):
    path = queries_table(tmp_path / "q.parquet", column)
    with pytest.raises(ConfigError) as caught:
        check_queries_file(path)
    assert message in str(caught.value) and path in str(caught.value)


def test_a_good_query_list_passes(tmp_path):
    assert check_queries_file(queries_table(tmp_path / "q.parquet", pa.array(["dog", "cat"]))) == 2


def test_a_query_list_changed_after_its_check_is_checked_again(tmp_path):
    path = queries_table(tmp_path / "q.parquet", pa.array(["dog", "cat"]))
    assert check_queries_file(path) == 2
    assert check_queries_file(path) == 2  # the same bytes: answered from the first check
    queries_table(tmp_path / "q.parquet", pa.array(["dog", "cat", "dog"]))
    with pytest.raises(ConfigError, match="repeats 1 queries"):
        check_queries_file(path)


def test_a_doubled_query_list_is_refused_before_ingest(tmp_path, capsys):
    (tmp_path / "pool.jsonl").write_bytes(jsonl(rows(60)))
    write_queries(tmp_path / "queries.parquet", ["red", "dog", "red", "dog"])
    (tmp_path / "build.yaml").write_text(
        "out: out\nqueries: queries.parquet\ninputs:\n  - path: pool.jsonl\n"
        "balance:\n  max_per_query: 3\n"
    )
    assert main(["build", "--config", str(tmp_path / "build.yaml")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "repeats 2 queries ('red' at rows 0 and 2)" in err
    assert not (tmp_path / "out").exists()  # no stage ran, not even ingest
