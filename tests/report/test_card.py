"""The dataset card: Hugging Face's header, and counts that are the build's own."""

from __future__ import annotations

import json
import re

import pyarrow.parquet as pq
import yaml

from openwit.report.card import dump_date


def _card(build_dir):
    text = (build_dir / "report" / "dataset-card.md").read_text()
    _, header, body = text.split("---\n", 2)
    return yaml.safe_load(header), body


def _number(text):
    return int(text.replace(",", ""))


def test_card_counts_are_funnel_json_and_sizes_json(build_dir):
    funnel = json.loads((build_dir / "funnel.json").read_text())
    sizes = json.loads((build_dir / "shards" / "sizes.json").read_text())
    _, body = _card(build_dir)
    first = next(iter(funnel.values()))
    assert f"- Input records: {first['in']:,}\n" in body
    samples = re.search(r"- Samples in the shards: ([\d,]+) in ([\d,]+) shards", body)
    assert _number(samples.group(1)) == sum(sizes.values())
    assert _number(samples.group(2)) == len(sizes)
    rejected = sum(sum(c["rejected"].values()) for c in funnel.values())
    assert f"- Rejected: {rejected:,}\n" in body
    rows = re.findall(r"^\| (\w+) \| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \| (.*) \|$", body, re.M)
    assert [r[0] for r in rows] == list(funnel)
    for stage, n_in, n_out, n_rejected, reasons in rows:
        counts = funnel[stage]
        assert (_number(n_in), _number(n_out)) == (counts["in"], counts["out"])
        assert _number(n_rejected) == sum(counts["rejected"].values())
        listed = dict(re.findall(r"(\w+) ([\d,]+)", reasons))
        assert {k: _number(v) for k, v in listed.items()} == counts["rejected"]
    summary = re.search(r"([\d,]+) image-text pairs in ([\d,]+) webdataset shards", body)
    assert (_number(summary.group(1)), _number(summary.group(2))) == (
        sum(sizes.values()),
        len(sizes),
    )


def test_card_header_is_what_the_hub_reads(build_dir):
    header, _ = _card(build_dir)
    assert header["pretty_name"] == "openwit demo: coloured shapes"
    assert header["language"] == ["en"]
    assert header["license"] == "other" and header["license_name"]
    assert header["size_categories"] == ["n<1K"]
    assert "zero-shot-image-classification" in header["task_categories"]
    [config] = header["configs"]
    assert config["data_files"] == [{"split": "train", "path": "shards/*.tar"}]


def test_card_describes_every_field_of_the_index_and_the_tar(build_dir):
    _, body = _card(build_dir)
    index = pq.read_schema(next((build_dir / "shards").glob("*.parquet")))
    for name in index.names:
        assert re.search(rf"^\| `{name}` \| [^|]+ \| [^|\s][^|]* \|$", body, re.M), name
    for member in ("KEY.jpg", "KEY.txt", "KEY.json"):
        assert f"| `{member}` |" in body


def test_card_says_how_it_was_made_and_what_it_does_not_remove(build_dir):
    manifest = json.loads((build_dir / "manifest.json").read_text())
    _, body = _card(build_dir)
    for section in (
        "## Dataset summary", "## Dataset structure", "## Dataset creation", "## Counts",
        "## Personal and sensitive information", "## Bias, risks and limitations",
        "## Licensing", "## How to reproduce",
    ):  # fmt: skip
        assert section in body
    assert manifest["config_hash"] in body
    assert "Images keep their own copyright" in body
    assert "t = 100 pairs per query" in body  # the demo's balancing cap
    assert "noai" in body and "does **not** detect or blur faces" in body
    assert "dump of 2026-01-01" in body  # the bundled sample's dump date, from its name


def test_dump_dates_are_read_from_wikimedia_file_names():
    assert dump_date("/d/enwiki-20240601-pages-articles-multistream1.xml.bz2") == "2024-06-01"
    assert dump_date("pageviews-20231231-120000.gz") == "2023-12-31"
    assert dump_date("demowiki-pages-articles.xml.bz2") is None
