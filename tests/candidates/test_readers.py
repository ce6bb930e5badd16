"""Readers on real files: WAT and WARC written with warcio, pools in every format."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from openwit.config import BuildConfig
from openwit.errors import ConfigError
from openwit.funnel import Rejection
from openwit.pipeline.ingest.readers import ReadUnit, detect_format, plan_read_units, read_unit
from openwit.schemas import uid_for
from tests.candidates.crawl_files import json_bytes, wat_envelope, write_warc, write_wat

PAGE = "https://example.com/dir/page.html"


def read_all(unit: ReadUnit) -> tuple[list[dict], list[Rejection], dict]:
    stats: dict[str, int] = {}
    items = list(read_unit(unit, stats))
    pairs = [i for i in items if not isinstance(i, Rejection)]
    rejections = [i for i in items if isinstance(i, Rejection)]
    return pairs, rejections, stats


def img(url, alt=None, title=None) -> dict:
    link = {"path": "IMG@/src", "url": url}
    if alt is not None:
        link["alt"] = alt
    if title is not None:
        link["title"] = title
    return link


@pytest.fixture
def wat_file(tmp_path: Path) -> Path:
    page_links = [
        img("https://cdn.example.com/a.jpg", alt="an absolute link"),
        img("img/b.jpg", alt="a relative link"),
        img("/c.png", alt="a root-relative link"),
        img("../d.jpg", alt="a parent-relative link"),
        img("//static.example.org/e.jpg", alt="a protocol-relative link"),
        img("  spaced.jpg \n", alt="a link with whitespace around it"),
        img("f.jpg", title="only a title"),
        img("g.jpg"),  # no alt, no title
        img("h.jpg", alt="   ", title="a blank alt falls back to the title"),
        {"path": "A@/href", "url": "https://example.com/other", "text": "not an image"},
        img("data:image/png;base64,iVBORw0KGgo=", alt="an inline image"),
        img("javascript:void(0)", alt="a script link"),
    ]
    based = wat_envelope(
        "https://site.example/x/y.html",
        [img("h.jpg", alt="relative to an absolute base"), img("//o.example/i.jpg", alt="pr")],
        base="https://images.example.net/gallery/",
    )
    relative_base = wat_envelope(
        "http://site.example/x/y.html",
        [img("j.jpg", alt="relative to a relative base")],
        base="/static/",
    )
    latin1 = json_bytes(wat_envelope(PAGE, [img("k.jpg", alt="caf\u00e9 au lait")]))
    latin1 = latin1.replace(b"caf\\u00e9", b"caf\xe9")  # a raw ISO-8859-1 byte in the JSON
    no_html = {"Envelope": {"Payload-Metadata": {"HTTP-Response-Metadata": {"Headers": {}}}}}
    return write_wat(
        tmp_path / "crawl.warc.wat.gz",
        [
            (PAGE, json_bytes(wat_envelope(PAGE, page_links))),  # record 1
            ("https://site.example/x/y.html", json_bytes(based)),  # 2
            ("http://site.example/x/y.html", json_bytes(relative_base)),  # 3
            ("https://broken.example/", b'{"Envelope": {"Payload-Metadata": '),  # 4
            (PAGE, latin1),  # 5
            ("https://example.com/robots.txt", json_bytes(no_html)),  # 6
        ],
    )


def test_wat_reader_resolves_every_kind_of_link_and_counts_every_record(wat_file):
    pairs, rejections, stats = read_all(ReadUnit(str(wat_file), "wat"))
    source = str(wat_file)

    assert [(p["url"], p["text"], p["source_offset"]) for p in pairs] == [
        ("https://cdn.example.com/a.jpg", "an absolute link", 1),
        ("https://example.com/dir/img/b.jpg", "a relative link", 1),
        ("https://example.com/c.png", "a root-relative link", 1),
        ("https://example.com/d.jpg", "a parent-relative link", 1),
        ("https://static.example.org/e.jpg", "a protocol-relative link", 1),
        ("https://example.com/dir/spaced.jpg", "a link with whitespace around it", 1),
        ("https://example.com/dir/f.jpg", "only a title", 1),
        ("https://example.com/dir/h.jpg", "a blank alt falls back to the title", 1),
        ("https://images.example.net/gallery/h.jpg", "relative to an absolute base", 2),
        ("https://o.example/i.jpg", "pr", 2),
        ("http://site.example/static/j.jpg", "relative to a relative base", 3),
        ("https://example.com/dir/k.jpg", "caf\ufffd au lait", 5),
    ]
    for pair in pairs:
        assert pair["source"] == source
        assert pair["uid"] == uid_for(pair["url"], pair["text"])
    assert sorted((r.reason, r.detail.split(":")[0]) for r in rejections) == [
        ("malformed_record", f"{source}#4"),
        ("missing_text", f"{source}#1"),
        ("unsupported_url", f"{source}#1"),
        ("unsupported_url", f"{source}#1"),
    ]
    assert all(r.stage == "ingest" for r in rejections)
    assert stats == {"warc_records": 7, "metadata_records": 6}


def test_title_fallback_can_be_switched_off(wat_file):
    pairs, rejections, _ = read_all(ReadUnit(str(wat_file), "wat", title_fallback=False))
    texts = {p["text"] for p in pairs}
    assert "only a title" not in texts
    assert "a blank alt falls back to the title" not in texts
    assert sum(r.reason == "missing_text" for r in rejections) == 3


def test_a_corrupt_tail_is_one_rejection_and_the_records_before_it_are_read(wat_file, tmp_path):
    broken = tmp_path / "broken.warc.wat.gz"
    broken.write_bytes(wat_file.read_bytes() + b"these bytes are not a gzip member")
    pairs, rejections, _ = read_all(ReadUnit(str(broken), "wat"))
    assert len(pairs) == 12
    assert sorted(r.reason for r in rejections) == [
        "malformed_record",
        "missing_text",
        "unreadable_input",
        "unsupported_url",
        "unsupported_url",
    ]
    assert rejections[-1].detail.startswith(f"{broken}#7: OSError")


def html_page(body: str, head: str = "") -> str:
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>"


def test_warc_reader_pairs_img_tags_with_alt_text(tmp_path):
    page = html_page(
        '<img src="a.jpg" alt="a relative image">'
        '<IMG SRC="//cdn.example.org/b.png" ALT="upper-case tags &amp; an entity">'
        '<img src="https://other.example/c.gif" title="title only">'
        '<img alt="an image without src">'
        '<img src="d.jpg">'
        '<p><img src="/e.webp" alt="root relative"></p>'
    )
    based = html_page('<img src="f.jpg" alt="relative to base">', '<base href="/media/">')
    latin1 = html_page('<img src="g.jpg" alt="caf\u00e9 cr\u00e8me">').encode("latin-1")
    meta = html_page(
        '<img src="h.jpg" alt="\u043a\u043e\u0448\u043a\u0430">', '<meta charset="windows-1251">'
    ).encode("cp1251")
    warc = write_warc(
        tmp_path / "crawl.warc.gz",
        [
            ("https://example.com/p/index.html", page.encode(), "text/html; charset=utf-8"),
            ("https://example.com/p/based.html", based.encode(), "text/html"),
            ("https://example.com/latin1.html", latin1, "text/html; charset=iso-8859-1"),
            ("https://example.com/meta.html", meta, "text/html"),
            ("https://example.com/photo.jpg", b"\xff\xd8\xff\xe0 not html", "image/jpeg"),
        ],
    )
    pairs, rejections, stats = read_all(ReadUnit(str(warc), "warc"))
    assert [(p["url"], p["text"]) for p in pairs] == [
        ("https://example.com/p/a.jpg", "a relative image"),
        ("https://cdn.example.org/b.png", "upper-case tags & an entity"),
        ("https://other.example/c.gif", "title only"),
        ("https://example.com/e.webp", "root relative"),
        ("https://example.com/media/f.jpg", "relative to base"),
        ("https://example.com/g.jpg", "caf\u00e9 cr\u00e8me"),
        ("https://example.com/h.jpg", "\u043a\u043e\u0448\u043a\u0430"),
    ]
    assert [r.reason for r in rejections] == ["missing_text"]
    assert stats["html_responses"] == 4


def write_jsonl(path: Path, rows: list) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_pool_reads_rows_and_rejects_bad_ones(tmp_path):
    pool = write_jsonl(
        tmp_path / "pool.jsonl",
        [
            {"url": "https://a.example/1.jpg", "caption": "first row"},
            "{not json",
            "",
            {"url": "https://a.example/2.jpg"},
            {"caption": "no url"},
            [1, 2],
            {"url": "https://a.example/3.jpg", "caption": 5},
            {"url": "ftp://a.example/4.jpg", "caption": "ftp is not downloaded"},
            {"url": "img/5.jpg", "caption": "relative urls need a page"},
            {"url": "https://a.example/6.jpg", "caption": "last row"},
        ],
    )
    pairs, rejections, stats = read_all(ReadUnit(str(pool), "jsonl"))
    assert [(p["text"], p["source_offset"]) for p in pairs] == [("first row", 0), ("last row", 8)]
    assert [r.reason for r in rejections] == [
        "malformed_record",
        "missing_text",
        "missing_url",
        "malformed_record",
        "malformed_record",
        "unsupported_url",
        "unsupported_url",
    ]
    assert stats == {"rows": 9}  # the blank line is not a row


def test_pools_in_every_format_give_the_same_pairs(tmp_path):
    rows = [
        {"link": "https://a.example/1.jpg", "alt": "a tabby cat on a sofa"},
        {"link": "https://a.example/2.jpg", "alt": 'comma, "quotes" and\ttab'},
        {"link": "https://a.example/3.jpg", "alt": None},
    ]
    table = pa.Table.from_pylist(rows)
    pq.write_table(table, tmp_path / "pool.parquet", row_group_size=2)
    write_jsonl(tmp_path / "pool.jsonl", rows)
    with gzip.open(tmp_path / "pool.jsonl.gz", "wt") as handle:
        handle.write("\n".join(json.dumps(r) for r in rows))
    import csv

    for name, delimiter in (("pool.csv", ","), ("pool.tsv", "\t")):
        with open(tmp_path / name, "w", newline="") as handle:
            writer = csv.writer(handle, delimiter=delimiter)
            writer.writerow(["id", "link", "alt"])
            for index, row in enumerate(rows):
                writer.writerow([index, row["link"], row["alt"] or ""])
    config = BuildConfig(
        inputs=[
            {"path": str(tmp_path / name), "url_column": "link", "text_column": "alt"}
            for name in ("pool.parquet", "pool.jsonl", "pool.jsonl.gz", "pool.csv", "pool.tsv")
        ]
    )
    units = plan_read_units(config)
    assert [u.format for u in units] == ["parquet", "jsonl", "jsonl", "csv", "tsv"]
    for unit in units:
        pairs, rejections, _ = read_all(unit)
        assert [(p["url"], p["text"]) for p in pairs] == [
            (r["link"], r["alt"]) for r in rows[:2]
        ], unit.format
        assert [r.reason for r in rejections] == ["missing_text"]


def test_big_parquet_pools_are_split_into_row_group_units(tmp_path, monkeypatch):
    import openwit.pipeline.ingest.readers as readers

    monkeypatch.setattr(readers, "PARQUET_ROWS_PER_UNIT", 10)
    rows = [
        {"url": f"https://a.example/{i}.jpg", "caption": f"caption number {i}"} for i in range(45)
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "big.parquet", row_group_size=5)
    units = plan_read_units(BuildConfig(inputs=[{"path": str(tmp_path / "big.parquet")}]))
    assert [u.row_groups for u in units] == [(0, 1), (2, 3), (4, 5), (6, 7), (8,)]
    offsets = [p["source_offset"] for u in units for p in read_all(u)[0]]
    assert offsets == list(range(45))


def test_format_detection_from_names():
    assert detect_format("s3://b/CC-MAIN-x.warc.wat.gz") == "wat"
    assert detect_format("crawl/x.warc.gz") == "warc"
    assert detect_format("x.WARC") == "warc"
    assert detect_format("pool.parquet") == "parquet"
    assert detect_format("pool.jsonl.zst") == "jsonl"
    assert detect_format("pool.csv.gz") == "csv"
    assert detect_format("pool.tsv") == "tsv"
    assert detect_format("pool.txt") is None


def test_config_errors_name_the_input(tmp_path):
    (tmp_path / "pool.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"inputs\[0\].*format"):
        plan_read_units(BuildConfig(inputs=[{"path": str(tmp_path / "pool.txt")}]))
    pq.write_table(pa.Table.from_pylist([{"url": "u", "text": "t"}]), tmp_path / "p.parquet")
    with pytest.raises(ConfigError, match=r"inputs\[0\]: column 'caption' not in"):
        plan_read_units(BuildConfig(inputs=[{"path": str(tmp_path / "p.parquet")}]))
    (tmp_path / "p.csv").write_text("link,caption\nhttps://a/1.jpg,x\n")
    with pytest.raises(ConfigError, match="column 'url'"):
        plan_read_units(BuildConfig(inputs=[{"path": str(tmp_path / "p.csv")}]))
