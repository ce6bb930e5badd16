"""The four candidate stages through the real stage runner and CLI: funnel law, dedup, demo."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from openwit.build import run_build
from openwit.builddir import BuildDir
from openwit.cli import main
from openwit.config import load_build_config
from openwit.demo.inputs import write_demo_inputs
from openwit.demo.world import iter_vocabulary, write_images
from openwit.schemas import QUERY_SCHEMA, uid_for
from tests.candidates.crawl_files import json_bytes, wat_envelope, write_wat

WORDS = [
    "dog",
    "cat",
    "bicycle",
    "harbour",
    "mountain",
    "river",
    "bridge",
    "market",
    "garden",
    "street",
    "beach",
    "train",
    "window",
    "table",
    "flower",
    "tree",
    "house",
    "road",
    "child",
    "woman",
    "man",
    "car",
    "boat",
    "sky",
    "cloud",
]
COLOURS = ["red", "green", "blue", "yellow", "old", "small", "large", "wooden"]


def write_queries(path: Path, queries: list[str]) -> Path:
    rows = [{"query": q, "source": "unigram", "count": 1, "score": 1.0} for q in queries]
    pq.write_table(pa.Table.from_pylist(rows, schema=QUERY_SCHEMA), path)
    return path


def messy_pool(path: Path, n: int, seed: int = 0) -> dict[str, int]:
    """``n`` JSONL records, a known number of each kind of junk; returns the expected
    ingest-stage rejection counts."""
    rng = random.Random(seed)
    lines: list[bytes] = []
    expected = {
        "malformed_record": 0,
        "missing_url": 0,
        "missing_text": 0,
        "duplicate_pair": 0,
        "unsupported_url": 0,
    }
    previous: list[bytes] = []
    for index in range(n):
        kind = rng.random()
        url = f"https://img{index % 7}.example.com/{index}.jpg"
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 9)))
        caption = f"a {rng.choice(COLOURS)} {words}"
        if kind < 0.03:
            lines.append(b'{"url": "https://broken.example/x.jpg", "caption": ')
            expected["malformed_record"] += 1
        elif kind < 0.05:
            lines.append(json.dumps({"caption": caption}).encode())
            expected["missing_url"] += 1
        elif kind < 0.07:
            lines.append(json.dumps({"url": url, "caption": "   "}).encode())
            expected["missing_text"] += 1
        elif kind < 0.08:
            lines.append(json.dumps({"url": f"/relative/{index}.jpg", "caption": caption}).encode())
            expected["unsupported_url"] += 1
        elif kind < 0.12 and previous:
            lines.append(rng.choice(previous))
            expected["duplicate_pair"] += 1
        else:
            junk = rng.random()
            if junk < 0.05:
                caption = f"IMG_{index:04d}.JPG"
            elif junk < 0.08:
                caption = f"https://example.com/{index}.html"
            elif junk < 0.10:
                caption = f"f/{rng.randint(2, 16)} 1/{rng.choice([60, 125, 250])}s ISO {index}"
            elif junk < 0.14:
                caption = rng.choice(["Ein Hund im Garten am Fluss", "un chat sur la table rouge"])
                caption += f" {index}"
            elif junk < 0.18:
                caption = rng.choice(WORDS)
            elif junk < 0.20:
                caption = "&amp; " + caption + " \u200b caf\xe9"
            line = json.dumps({"url": url, "caption": caption}).encode()
            if junk > 0.98:  # raw invalid UTF-8 inside the caption
                line = line.replace(b"a ", b"\xff ", 1)
            lines.append(line)
            previous.append(line)
    # Duplicates of a malformed or junk line count under their own reason, not as duplicates.
    path.write_bytes(b"\n".join(lines) + b"\n")
    return expected


def read_rejections(build: Path) -> list[dict]:
    table = BuildDir(build).read_table(BuildDir(build).rejection_files())
    return table.to_pylist() if table is not None else []


def stage_uids(build: Path, stage: str) -> list[str]:
    table = BuildDir(build).read_table(BuildDir(build).stage_files(stage), columns=["uid"])
    return table.column("uid").to_pylist() if table is not None else []


@pytest.mark.slow
def test_funnel_law_holds_for_a_messy_10k_pool_and_a_crawl(tmp_path):
    expected = messy_pool(tmp_path / "pool.jsonl", 10_000)
    links = [
        {"path": "IMG@/src", "url": f"img/{i}.jpg", "alt": f"a red dog number {i} on a bridge"}
        for i in range(30)
    ]
    write_wat(
        tmp_path / "crawl.warc.wat.gz",
        [
            (
                "https://site.example/p.html",
                json_bytes(wat_envelope("https://site.example/p.html", links)),
            ),
            ("https://site.example/q.html", b"{not json"),
        ],
    )
    write_queries(tmp_path / "queries.parquet", [*WORDS, *COLOURS, "red dog", "on a"])
    (tmp_path / "build.yaml").write_text(
        "out: out\nqueries: queries.parquet\ninputs:\n"
        "  - path: pool.jsonl\n  - path: crawl.warc.wat.gz\n"
        "balance:\n  max_per_query: 600\n"
    )
    outcome = run_build(load_build_config(tmp_path / "build.yaml"), until="balance")
    funnel = json.loads((tmp_path / "out" / "funnel.json").read_text())

    assert list(funnel) == ["ingest", "text", "match", "balance"]
    assert funnel["ingest"]["in"] == 10_000 + 30 + 1
    previous_out = None
    for name, counts in funnel.items():
        assert counts["in"] == counts["out"] + sum(counts["rejected"].values()), name
        if previous_out is not None:
            assert counts["in"] == previous_out, name
        previous_out = counts["out"]
    ingest_rejected = funnel["ingest"]["rejected"]
    assert ingest_rejected["malformed_record"] == expected["malformed_record"] + 1
    for reason in ("missing_url", "missing_text", "unsupported_url", "duplicate_pair"):
        assert ingest_rejected[reason] == expected[reason], reason
    for reason in (
        "filename_text",
        "url_text",
        "camera_settings",
        "too_short",
        "not_allowed_language",
    ):
        assert funnel["text"]["rejected"][reason] > 0, reason
    assert funnel["balance"]["rejected"]["over_query_cap"] > 0

    # Nothing lost: every pair that left ingest is in the output or rejected exactly once.
    build = tmp_path / "out"
    rejections = read_rejections(build)
    later = [r["uid"] for r in rejections if r["stage"] in ("text", "match", "balance")]
    assert sorted(later + stage_uids(build, "balance")) == sorted(stage_uids(build, "ingest"))
    assert len(rejections) == sum(sum(c["rejected"].values()) for c in funnel.values())
    assert outcome.manifest["stages"]["balance"]["stats"]["queries_over_cap"] >= 1
    kept = BuildDir(build).read_table(BuildDir(build).stage_files("balance"))
    assert all("  " not in t and "&amp;" not in t for t in kept.column("text").to_pylist())
    assert stage_uids(build, "ingest") == sorted(stage_uids(build, "ingest"))  # uid order


def test_ingest_keeps_the_first_copy_of_a_pair_on_every_runner(tmp_path):
    rows = [{"url": f"https://a.example/{i}.jpg", "caption": f"caption {i}"} for i in range(6)]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:4]) + "\n")
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(r) for r in [rows[5], *rows]) + "\n")
    results = []
    for options in ({}, {"direct_running_mode": "multi_processing", "direct_num_workers": 2}):
        out = tmp_path / f"out{len(results)}"
        config = load_build_config(
            None,
            {
                "out": str(out),
                "inputs": [{"path": str(tmp_path / "*.jsonl")}],
                "beam_options": options,
            },
        )
        run_build(config, until="ingest")
        table = BuildDir(out).read_table(BuildDir(out).stage_files("ingest"))
        kept = sorted(
            (r["source"].rsplit("/", 1)[-1], r["source_offset"], r["text"])
            for r in table.to_pylist()
        )
        funnel = json.loads((out / "funnel.json").read_text())["ingest"]
        results.append((kept, funnel))
    kept, funnel = results[0]
    assert results[1] == results[0]
    assert kept == [("a.jsonl", i, f"caption {i}") for i in range(4)] + [
        ("b.jsonl", 0, "caption 5"),
        ("b.jsonl", 5, "caption 4"),
    ]
    assert funnel == {"in": 11, "out": 6, "rejected": {"duplicate_pair": 5}}
    assert uid_for(rows[0]["url"], rows[0]["caption"]) in stage_uids(tmp_path / "out0", "ingest")


def test_openwit_build_runs_the_candidate_stages_on_the_demo_inputs(tmp_path, capsys):
    images = write_images(tmp_path / "images", 24)
    inputs = write_demo_inputs(
        tmp_path / "inputs", images, tmp_path / "images", "http://127.0.0.1:8000"
    )
    write_queries(tmp_path / "queries.parquet", list(iter_vocabulary()))
    config = {
        "out": "build",
        "queries": "queries.parquet",
        "inputs": inputs,
        "text": {"min_lang_score": 0.2},
        "balance": {"max_per_query": 5},
    }
    (tmp_path / "build.yaml").write_text(json.dumps(config))  # JSON is YAML

    assert main(["build", "--config", str(tmp_path / "build.yaml"), "--until", "balance"]) == 0
    printed = capsys.readouterr().out
    assert "build stopped after balance" in printed
    funnel = json.loads((tmp_path / "build" / "funnel.json").read_text())
    ingest, text = funnel["ingest"]["rejected"], funnel["text"]["rejected"]
    assert ingest["duplicate_pair"] == 1 and ingest["malformed_record"] == 2
    assert ingest["unsupported_url"] == 4 + 1  # a data: URI on each page, a relative pool URL
    assert {
        "filename_text",
        "not_allowed_language",
        "too_short",
        "url_text",
        "camera_settings",
    } <= set(text)
    build = BuildDir(tmp_path / "build")
    balanced = build.read_table(build.stage_files("balance"))
    urls = set(balanced.column("url").to_pylist())
    served = {f"http://127.0.0.1:8000/img/{i:05d}.jpg" for i in range(24)}
    # One good caption points at an image the server lacks: the downloader's 404.
    assert urls - served <= {"http://127.0.0.1:8000/img/missing-7.jpg"}
    assert build.stage_files("balance", "query_counts.parquet")

    # A rerun with the same config rewrites nothing.
    assert main(["build", "--config", str(tmp_path / "build.yaml"), "--until", "balance"]) == 0
    assert "up to date" in capsys.readouterr().err


def test_ingest_gives_the_same_pairs_with_many_buckets_and_small_row_groups(tmp_path, monkeypatch):
    """Buckets read pass 1's row groups that overlap their uid range and cut them to it:
    with 9 buckets over row groups of 3 pairs (ranges that cut through groups, a last
    bucket up to the end of the uid space) the pairs kept and rejected are one bucket's."""
    from openwit.pipeline.ingest import stage as ingest

    rows = [
        {"url": f"https://a.example/{i}.jpg", "caption": f"caption {i % 40}"} for i in range(60)
    ]
    copies = rows[::3]  # 20 repeated pairs, in another file
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(r) for r in copies) + "\n")

    def build(name: str, **beam_options: object) -> tuple[list[dict], dict, dict]:
        out = tmp_path / name
        raw = {"out": str(out), "inputs": [{"path": str(tmp_path / "*.jsonl")}]}
        config = load_build_config(None, {**raw, "beam_options": beam_options})
        run_build(config, until="ingest")
        table = BuildDir(out).read_table(BuildDir(out).stage_files("ingest"))
        stats = json.loads((out / "manifest.json").read_text())["stages"]["ingest"]["stats"]
        funnel = json.loads((out / "funnel.json").read_text())["ingest"]
        return table.to_pylist(), funnel, stats

    one, one_funnel, one_stats = build("one")
    monkeypatch.setattr(ingest, "PAIRS_PER_BUCKET", 10)
    monkeypatch.setattr(ingest, "MIN_ROWS_PER_ROW_GROUP", 3)
    monkeypatch.setattr(ingest, "MAX_ROWS_PER_ROW_GROUP", 3)
    # 3 worker processes on this machine: the 8 buckets the pairs need become 9, 3 each.
    many, many_funnel, many_stats = build(
        "many", direct_running_mode="multi_processing", direct_num_workers=3
    )
    assert one_stats["buckets"] == 1 and many_stats["buckets"] == 9
    assert many == one and many_funnel == one_funnel
    assert one_funnel == {"in": 80, "out": 60, "rejected": {"duplicate_pair": 20}}


def test_pass_one_row_groups_shrink_with_the_number_of_read_units():
    from openwit.pipeline.ingest.stage import (
        MAX_ROWS_PER_ROW_GROUP,
        MIN_ROWS_PER_ROW_GROUP,
        PAIRS_PER_BUCKET,
        rows_per_row_group,
    )

    assert rows_per_row_group(1) == MAX_ROWS_PER_ROW_GROUP
    assert rows_per_row_group(50) == PAIRS_PER_BUCKET // 50
    assert rows_per_row_group(10**6) == MIN_ROWS_PER_ROW_GROUP


def test_a_folder_of_parts_is_its_data_files_and_an_empty_one_is_one_line(tmp_path, capsys):
    """A pool is often a folder a writer left Parquet parts in (Spark: part files, a
    ``_SUCCESS`` marker, ``.crc`` checksums, maybe ``_temporary/``); ``path:`` may name it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from openwit.inputs import expand_input_paths

    pool = tmp_path / "pool"
    (pool / "year=2024").mkdir(parents=True)
    (pool / "_temporary" / "0").mkdir(parents=True)
    rows = [{"url": f"https://a.example/{i}.jpg", "caption": f"caption {i}"} for i in range(9)]
    pq.write_table(pa.Table.from_pylist(rows[:4]), pool / "part-00000.parquet")
    pq.write_table(pa.Table.from_pylist(rows[4:7]), pool / "year=2024" / "part-00001.parquet")
    pq.write_table(pa.Table.from_pylist(rows[7:]), pool / "_temporary" / "0" / "part-9.parquet")
    (pool / "_SUCCESS").write_text("")
    (pool / ".part-00000.parquet.crc").write_bytes(b"\x00crc")
    config = load_build_config(
        None, {"out": str(tmp_path / "out"), "inputs": [{"path": str(pool)}]}
    )
    assert expand_input_paths(config) == [
        [str(pool / "part-00000.parquet"), str(pool / "year=2024" / "part-00001.parquet")]
    ]
    run_build(config, until="ingest")
    funnel = json.loads((tmp_path / "out" / "funnel.json").read_text())["ingest"]
    assert funnel == {"in": 7, "out": 7, "rejected": {}}

    (tmp_path / "empty" / "_logs").mkdir(parents=True)
    (tmp_path / "empty" / "_SUCCESS").write_text("")
    raw = {"out": str(tmp_path / "out2"), "inputs": [{"path": str(tmp_path / "empty")}]}
    (tmp_path / "empty.yaml").write_text(json.dumps(raw))
    assert main(["build", "--config", str(tmp_path / "empty.yaml")]) == 2
    line = capsys.readouterr().err.strip()
    assert (
        line == f"openwit: error: inputs[0].path: no data files in the folder {tmp_path / 'empty'}"
    )
