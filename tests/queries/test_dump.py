"""Reading MediaWiki export dumps: formats, page outcomes, damaged files."""

from __future__ import annotations

import bz2
import re

import pytest

from openwit.errors import UserError
from openwit.queries.build import build_queries
from openwit.queries.dump import (
    DumpReadError,
    Page,
    iter_pages,
    read_namespaces,
    skip_reason,
)
from openwit.queries.export_xml import DumpPage, dump_bytes, write_dump

from .corpus import ARTICLES, SKIPPED, test_config

PAGES = [
    DumpPage(f"Article {i}", f"Sentence number {i} of the dump.", page_id=i) for i in range(40)
]


@pytest.mark.parametrize(
    ("name", "multistream"),
    [("a.xml.bz2", False), ("a-multistream.xml.bz2", True), ("a.xml.gz", False), ("a.xml", False)],
)
def test_every_published_layout_reads_all_pages(tmp_path, name, multistream):
    path = write_dump(tmp_path / name, PAGES, multistream=multistream, pages_per_stream=7)
    pages = list(iter_pages(path))
    assert [p.title for p in pages] == [p.title for p in PAGES]
    assert pages[3].text == "Sentence number 3 of the dump."


def test_older_export_schema_versions_read_the_same(tmp_path):
    data = dump_bytes(PAGES[:3]).replace(b"export-0.11", b"export-0.10")
    path = tmp_path / "old.xml"
    path.write_bytes(data)
    assert [p.title for p in iter_pages(path)] == ["Article 0", "Article 1", "Article 2"]


def test_siteinfo_namespaces_are_read_from_the_head(tmp_path):
    path = write_dump(tmp_path / "a.xml.bz2", PAGES)
    namespaces = read_namespaces(path)
    assert namespaces[1] == "Talk"
    assert namespaces[10] == "Template"
    assert 0 not in namespaces  # the main namespace has no name


def test_pages_are_classified_by_outcome(tmp_path):
    path = write_dump(tmp_path / "a.xml.bz2", ARTICLES + SKIPPED)
    reasons = {p.title: skip_reason(p) for p in iter_pages(path)}
    assert reasons == {
        "Plague": None,
        "Flea": None,
        "Pestis": "redirect",
        "Fleas": "redirect",
        "Mercury": "disambiguation",
        "Plague (disambiguation)": "disambiguation",
        "Talk:Plague": "other_namespace",
        "Template:Infobox disease": "other_namespace",
        "Broken": "malformed_page",
    }


@pytest.mark.parametrize(
    "template",
    [
        "{{disambiguation}}",
        "{{Disambig|geo}}",
        "{{dab}}",
        "{{Hospital disambiguation}}",
        "{{ Human name disambiguation |Smith}}",
    ],
)
def test_disambiguation_templates_are_recognised(template):
    assert skip_reason(Page("Smith", 0, f"'''Smith''' may be:\n{template}")) == "disambiguation"


def test_an_article_that_only_mentions_disambiguation_is_kept():
    page = Page("Word sense", 0, "Word sense disambiguation is a task. {{Cite web|title=x}}")
    assert skip_reason(page) is None


def test_a_malformed_page_says_what_is_wrong(tmp_path):
    data = dump_bytes(PAGES[:2]).replace(b"<ns>0</ns>", b"<ns>zero</ns>", 1)
    path = tmp_path / "bad-ns.xml"
    path.write_bytes(data)
    pages = list(iter_pages(path))
    assert "not an integer" in pages[0].malformed
    assert skip_reason(pages[0]) == "malformed_page"
    assert skip_reason(pages[1]) is None


def truncated_multistream(tmp_path, keep_streams: int):
    """A multistream dump (one page a stream) cut inside stream ``keep_streams + 2``."""
    path = write_dump(tmp_path / "full.xml.bz2", PAGES, multistream=True, pages_per_stream=1)
    data = path.read_bytes()
    starts = [m.start() for m in re.finditer(rb"BZh91AY&SY", data)]
    # streams: header, page 0, page 1, ... ; cut in the middle of page keep_streams's stream
    cut = starts[keep_streams + 1] + (starts[keep_streams + 2] - starts[keep_streams + 1]) // 2
    out = tmp_path / "cut.xml.bz2"
    out.write_bytes(data[:cut])
    return out


def test_truncated_bz2_raises_an_error_naming_the_file_and_pages_read(tmp_path):
    path = truncated_multistream(tmp_path, keep_streams=25)
    with pytest.raises(DumpReadError) as caught:
        list(iter_pages(path))
    error = caught.value
    assert str(path) in str(error)
    assert "truncated" in str(error)
    assert error.pages_read == 25  # every page of the 25 whole streams before the cut
    assert f"after {error.pages_read:,} pages" in str(error)


def test_xml_cut_mid_page_in_a_complete_bz2_stream_reports_the_pages_before(tmp_path):
    data = dump_bytes(PAGES)
    cut = data.index(b"<title>Article 12</title>") + 5
    path = tmp_path / "cut-xml.xml.bz2"
    path.write_bytes(bz2.compress(data[:cut]))
    with pytest.raises(DumpReadError, match=r"XML is cut off .* after 12 pages"):
        list(iter_pages(path))


def test_builder_fails_on_a_truncated_dump_naming_file_and_pages(tmp_path):
    path = truncated_multistream(tmp_path, keep_streams=25)
    out = tmp_path / "q.parquet"
    with pytest.raises(
        UserError, match=r"cut\.xml\.bz2: file is truncated .* after \d+ pages read"
    ):
        build_queries([path], out, config=test_config(min_unigram_count=1))
    assert not out.exists()


def test_keep_partial_keeps_the_pages_read_and_says_so(tmp_path):
    path = truncated_multistream(tmp_path, keep_streams=25)
    out = tmp_path / "q.parquet"
    result = build_queries([path], out, config=test_config(min_unigram_count=1, keep_partial=True))
    [partial] = result.partial_files
    assert partial.path == str(path)
    assert result.inputs["dump.pages_read"] == partial.records > 0
    assert any("damaged" in note and str(path) in note for note in result.notes)
    assert out.exists()


def test_not_a_dump_is_refused_before_any_work(tmp_path):
    path = tmp_path / "x.xml.bz2"
    path.write_bytes(bz2.compress(b"<html><body/></html>"))
    with pytest.raises(UserError, match="not a MediaWiki XML export"):
        read_namespaces(path)
