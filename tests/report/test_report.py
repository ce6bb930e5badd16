"""The build report: numbers that match the build's files, sections that come and go, errors."""

from __future__ import annotations

import html
import json
import logging
import re
import shutil
import tarfile
from itertools import pairwise
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from openwit.build import run_build
from openwit.cli import main
from openwit.config import load_build_config
from openwit.report import write_build_report
from openwit.report.samples import chosen_positions


def _json(path):
    return json.loads(Path(path).read_text())


def _page(build_dir):
    return (build_dir / "report" / "index.html").read_text()


def test_funnel_table_is_funnel_json(build_dir):
    funnel = _json(build_dir / "funnel.json")
    page = _page(build_dir)
    rows = re.findall(
        r"<tr><td><b>(\w+)</b></td><td>([\d,]+)</td><td>([\d,]+)</td><td>([\d,]+)</td>", page
    )
    assert [r[0] for r in rows] == list(funnel)
    for stage, n_in, n_out, n_rejected in rows:
        counts = funnel[stage]
        assert int(n_in.replace(",", "")) == counts["in"]
        assert int(n_out.replace(",", "")) == counts["out"]
        assert int(n_rejected.replace(",", "")) == sum(counts["rejected"].values())
    for counts in funnel.values():
        for reason, n in counts["rejected"].items():
            assert f'<tr class="reason"><td>{reason}</td><td></td><td></td><td>{n:,}</td>' in page
    assert "the funnel law holds" in page


def test_every_kind_of_rejection_the_demo_plants_is_reported(build_dir):
    facts = _json(build_dir / "report" / "report.json")
    rejected = {reason for row in facts["funnel"] for reason in row["rejected"]}
    for reason in (
        "http_404", "opted_out", "image_too_small", "bad_aspect_ratio", "exact_duplicate",
        "near_duplicate", "filename_text", "not_allowed_language",
    ):  # fmt: skip
        assert reason in rejected, reason
    assert facts["duplicates"]["exact"]["groups"] == 4  # four byte copies
    assert facts["duplicates"]["exact"]["removed"] == 4


def test_download_failures_are_counted_per_host_from_the_input_urls(build_dir):
    facts = _json(build_dir / "report" / "report.json")
    downloads = facts["downloads"]
    funnel = _json(build_dir / "funnel.json")["download"]
    assert downloads["failed"] == sum(funnel["rejected"].values()) > 0
    assert downloads["reasons"] == funnel["rejected"]
    [(host, failures, reasons)] = downloads["top_hosts"]  # the demo has one image server
    assert host == "127.0.0.1" and failures == downloads["failed"]
    assert "opted_out" in reasons


def test_past_the_sample_limit_hosts_and_groups_are_estimated_from_a_uid_sample(
    build_dir, monkeypatch
):
    """A large build's failed downloads and duplicates are joined from a uniform sample of
    uids (their dicts hold one entry a sampled rejection), scaled up, and the page says so;
    the counts the funnel has stay exact."""
    from openwit.builddir import BuildDir
    from openwit.report import facts as report_facts
    from openwit.report import page, rejection_facts

    exact = report_facts.collect(BuildDir(build_dir)).summary
    monkeypatch.setattr(rejection_facts, "SAMPLE_ROWS", 2)
    sampled = report_facts.collect(BuildDir(build_dir)).summary
    downloads, duplicates = sampled["downloads"], sampled["duplicates"]
    assert 0 < downloads["host_sample"] < 1 and downloads["failed"] == exact["downloads"]["failed"]
    # the sampled failures stand for 1/share each, on the demo's one server
    assert downloads["hosts_with_failures"] <= exact["downloads"]["hosts_with_failures"]
    assert all(
        failures >= 1 / downloads["host_sample"] - 1 for _, failures, _ in downloads["top_hosts"]
    )
    for kind in ("exact", "near"):
        assert 0 < duplicates[kind]["group_sample"] < 1
        assert duplicates[kind]["removed"] == exact["duplicates"][kind]["removed"]
    assert exact["downloads"]["host_sample"] == exact["duplicates"]["exact"]["group_sample"] == 1
    html = page._downloads(downloads, {}) + page._duplicates(duplicates, {})
    assert html.count("sample (by uid)") == 2 and "on at least 1 hosts" in html
    assert "sample" not in page._downloads(exact["downloads"], {})


def test_samples_are_the_shards_own_images_and_captions_and_stable(build_dir):
    facts = _json(build_dir / "report" / "report.json")
    samples = facts["samples"]
    sizes = _json(build_dir / "shards" / "sizes.json")
    assert len(samples) == min(24, sum(sizes.values()))
    page = _page(build_dir)
    by_key = {s["key"]: s for s in samples}
    for shard in {s["shard"] for s in samples}:
        with tarfile.open(build_dir / "shards" / shard) as tar:
            for member in tar.getmembers():
                key, _, suffix = member.name.partition(".")
                if key in by_key and suffix == "txt":
                    caption = tar.extractfile(member).read().decode()
                    assert by_key[key]["caption"] == caption
                    assert html.escape(caption) in page
                if key in by_key and suffix == "jpg":
                    thumb = build_dir / "report" / by_key[key]["thumb"]
                    assert thumb.read_bytes() == tar.extractfile(member).read()


def test_the_same_build_shows_the_same_samples(build_dir, tmp_path):
    copy = tmp_path / "build"
    shutil.copytree(build_dir, copy)
    shutil.rmtree(copy / "report")
    again = write_build_report(copy)
    first = _json(build_dir / "report" / "report.json")["samples"]
    assert [s["key"] for s in _json(again.facts)["samples"]] == [s["key"] for s in first]


def test_caption_lengths_and_languages_come_from_the_build(build_dir):
    facts = _json(build_dir / "report" / "report.json")
    texts = [
        t for p in sorted((build_dir / "shards").glob("*.parquet"))
        for t in pq.read_table(p, columns=["text"]).column("text").to_pylist()
    ]  # fmt: skip
    lengths = sorted(len(t) for t in texts)
    assert facts["text"]["caption_chars"]["n"] == len(texts)
    assert facts["text"]["caption_chars"]["median"] == lengths[len(lengths) // 2]
    kept = {lang: n for lang, n, _ in facts["text"]["languages"]}
    assert sum(kept.values()) == _json(build_dir / "funnel.json")["text"]["out"]


def test_the_audit_and_the_run_appear_with_a_link_and_go_when_not_given(build_dir, tmp_path):
    page = _page(build_dir)
    assert 'href="../../audit/index.html"' in page
    assert "top-1 / chance" in page and 'id="training"' in page
    assert (build_dir / "report" / "training_loss.png").is_file()
    copy = tmp_path / "build"
    shutil.copytree(build_dir, copy)
    bare = write_build_report(copy)  # no audit, no run: still a full report
    text = Path(bare.html).read_text()
    assert 'id="training"' not in text and "audit/index.html" not in text
    for section in ("funnel", "queries", "captions", "images", "samples", "timings", "config"):
        assert f'id="{section}"' in text
    assert not (copy / "report" / "training_loss.png").exists()  # the stale chart is gone


def test_a_missing_audit_or_run_is_a_note_not_an_error(build_dir, tmp_path, capsys):
    copy = tmp_path / "build"
    shutil.copytree(build_dir, copy)
    code = main(["report", "--build", str(copy), "--audit", str(tmp_path / "none")])
    assert code == 0
    out = capsys.readouterr().out
    assert "note: no overlap audit in" in out
    assert f"dataset card: {copy / 'report' / 'dataset-card.md'}" in out


def test_no_build_or_an_unfinished_one_is_one_line_and_exit_2(build_dir, tmp_path, capsys):
    assert main(["report", "--build", str(tmp_path / "nowhere")]) == 2
    assert "no openwit build here (no manifest.json)" in capsys.readouterr().err
    (tmp_path / "manifest.json").write_text("{not json")
    assert main(["report", "--build", str(tmp_path)]) == 2
    assert "not an openwit build (manifest.json or funnel.json unreadable)" in (
        capsys.readouterr().err
    )
    partial = tmp_path / "partial"
    config = build_dir.parent / "build.yaml"
    assert main(["build", "--config", str(config), "--out", str(partial), "--until", "ingest"]) == 0
    capsys.readouterr()
    assert main(["report", "--build", str(partial)]) == 2
    err = capsys.readouterr().err
    assert "not a complete build (it stopped after ingest)" in err
    assert len(err.strip().splitlines()) == 1
    assert not (partial / "report").exists()


def test_a_report_that_fails_is_a_warning_and_the_build_stays_complete(
    build_dir, tmp_path, monkeypatch, caplog
):
    import openwit.report

    copy = tmp_path / "build"
    shutil.copytree(build_dir, copy)
    config = load_build_config(build_dir.parent / "build.yaml", {"out": str(copy)})

    def broken(*args, **kwargs):
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(openwit.report, "write_build_report", broken)
    with caplog.at_level(logging.WARNING):
        outcome = run_build(config)
    assert outcome.complete and outcome.report is None
    assert "build report not written: RuntimeError: the disk is full" in caplog.text


def test_a_complete_build_writes_its_report(build_dir, tmp_path, capsys):
    copy = tmp_path / "build"
    shutil.copytree(build_dir, copy)
    shutil.rmtree(copy / "report")
    config = build_dir.parent / "build.yaml"
    assert main(["build", "--config", str(config), "--out", str(copy)]) == 0
    assert f"report: {copy / 'report' / 'index.html'}" in capsys.readouterr().out
    assert (copy / "report" / "dataset-card.md").is_file()


@given(total=st.integers(0, 10**9), count=st.integers(1, 60))
def test_sample_positions_are_distinct_in_range_and_spread(total, count):
    positions = chosen_positions(total, count)
    assert len(positions) == min(total, count)
    assert positions == sorted(set(positions))
    assert all(0 <= p < total for p in positions)
    if total >= count:
        gaps = [b - a for a, b in pairwise(positions)]
        assert not gaps or max(gaps) - min(gaps) <= 1


@pytest.mark.parametrize(
    "n, category",
    [(0, "n<1K"), (999, "n<1K"), (1_000, "1K<n<10K"), (306, "n<1K"), (10**12, "n>1T")],
)
def test_size_category(n, category):
    from openwit.report.card import size_category

    assert size_category(n) == category


def test_a_second_demo_build_with_the_same_urls_reruns_no_stage(demo_build, monkeypatch):
    from openwit.demo import build

    first = dict(demo_build.results["build"])
    monkeypatch.setattr(build, "DEMO_IMAGES", 120)
    build.run(demo_build)
    again = demo_build.results["build"]
    if again["base_url"] != first["base_url"]:
        pytest.skip(f"the demo's port was taken by another program: {again['base_url']}")
    assert again["stages_run"] == []
    assert again["samples"] == first["samples"]
