"""Writes MediaWiki XML export dumps, as Wikimedia lays them out (for tests, the demo, bench).

The layout follows the export schema (``export-0.11``): ``<mediawiki>`` with ``<siteinfo>``
and its ``<namespaces>``, then ``<page>`` elements with ``<title>``, ``<ns>``, ``<id>``,
optional ``<redirect title=...>``, and a ``<revision>`` holding ``<text>``. A multistream
file is one bz2 stream for the header, one per ``pages_per_stream`` pages, one for the
closing tag (how ``pages-articles-multistream.xml.bz2`` is built).
"""

from __future__ import annotations

import bz2
import gzip
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

EXPORT_NS = "http://www.mediawiki.org/xml/export-0.11/"

#: The namespaces of the English Wikipedia that a dump's siteinfo lists (a subset).
ENWIKI_NAMESPACES: dict[int, str] = {
    -2: "Media",
    -1: "Special",
    0: "",
    1: "Talk",
    2: "User",
    3: "User talk",
    4: "Wikipedia",
    6: "File",
    10: "Template",
    14: "Category",
    100: "Portal",
    118: "Draft",
    828: "Module",
}


@dataclass(frozen=True)
class DumpPage:
    title: str
    text: str
    ns: int | None = 0  # None: no <ns> element (a malformed page)
    page_id: int = 0
    redirect_to: str | None = None


def header(namespaces: dict[int, str] = ENWIKI_NAMESPACES) -> str:
    lines = [
        f'<mediawiki xmlns="{EXPORT_NS}" version="0.11" xml:lang="en">',
        "  <siteinfo>",
        "    <sitename>Wikipedia</sitename>",
        "    <dbname>enwiki</dbname>",
        "    <base>https://en.wikipedia.org/wiki/Main_Page</base>",
        "    <generator>MediaWiki 1.43.0-wmf.1</generator>",
        "    <case>first-letter</case>",
        "    <namespaces>",
    ]
    for key, name in sorted(namespaces.items()):
        if name:
            element = f'<namespace key="{key}" case="first-letter">{escape(name)}</namespace>'
            lines.append(f"      {element}")
        else:
            lines.append(f'      <namespace key="{key}" case="first-letter" />')
    lines += ["    </namespaces>", "  </siteinfo>", ""]
    return "\n".join(lines)


FOOTER = "</mediawiki>\n"


def page_xml(page: DumpPage) -> str:
    redirect = f"    <redirect title={quoteattr(page.redirect_to)} />\n" if page.redirect_to else ""
    ns_line = "" if page.ns is None else f"    <ns>{page.ns}</ns>\n"
    return (
        "  <page>\n"
        f"    <title>{escape(page.title)}</title>\n"
        f"{ns_line}"
        f"    <id>{page.page_id}</id>\n"
        f"{redirect}"
        "    <revision>\n"
        f"      <id>{page.page_id * 10 + 1}</id>\n"
        "      <timestamp>2026-01-01T00:00:00Z</timestamp>\n"
        "      <contributor><username>Example</username><id>1</id></contributor>\n"
        "      <model>wikitext</model>\n"
        "      <format>text/x-wiki</format>\n"
        f'      <text bytes="{len(page.text.encode())}" xml:space="preserve">'
        f"{escape(page.text)}</text>\n"
        "      <sha1>0000000000000000000000000000000</sha1>\n"
        "    </revision>\n"
        "  </page>\n"
    )


def _chunks(pages: Iterable[DumpPage], size: int) -> Iterator[list[DumpPage]]:
    chunk: list[DumpPage] = []
    for page in pages:
        chunk.append(page)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def dump_bytes(pages: Iterable[DumpPage], namespaces: dict[int, str] = ENWIKI_NAMESPACES) -> bytes:
    """The whole dump as uncompressed XML."""
    return (header(namespaces) + "".join(page_xml(p) for p in pages) + FOOTER).encode()


def write_dump(
    path: str | Path,
    pages: Iterable[DumpPage],
    *,
    multistream: bool = False,
    pages_per_stream: int = 100,
    namespaces: dict[int, str] = ENWIKI_NAMESPACES,
) -> Path:
    """Write ``pages`` to ``path``: bz2 for ``.bz2``, gzip for ``.gz``, plain otherwise."""
    path = Path(path)
    if path.suffix == ".bz2" and multistream:
        with path.open("wb") as handle:
            handle.write(bz2.compress(header(namespaces).encode(), 9))
            for chunk in _chunks(pages, pages_per_stream):
                handle.write(bz2.compress("".join(page_xml(p) for p in chunk).encode(), 9))
            handle.write(bz2.compress(FOOTER.encode(), 9))
        return path
    data = dump_bytes(pages, namespaces)
    if path.suffix == ".bz2":
        path.write_bytes(bz2.compress(data, 9))
    elif path.suffix == ".gz":
        path.write_bytes(gzip.compress(data, 9, mtime=0))
    else:
        path.write_bytes(data)
    return path


def write_pageviews(path: str | Path, lines: Iterable[tuple[str, str, int]]) -> Path:
    """An hourly page-view file: ``domain_code page_title count_views 0`` lines, gzip."""
    body = "".join(f"{domain} {title} {views} 0\n" for domain, title, views in lines)
    path = Path(path)
    path.write_bytes(gzip.compress(body.encode(), 9, mtime=0))
    return path


def write_wndb(root: str | Path, synsets: dict[str, list[list[str]]]) -> Path:
    """A WNDB directory: ``synsets`` maps ``noun``/``verb``/``adj``/``adv`` to word lists.

    Lines follow the data-file format (offsets are not real byte offsets: nothing here seeks).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    kinds = {"noun": "n", "verb": "v", "adj": "a", "adv": "r"}
    for pos, entries in synsets.items():
        lines = ["  1 This software and database is being provided to you, the LICENSEE, by  "]
        for index, words in enumerate(entries):
            offset = f"{(index + 1) * 1000:08d}"
            word_fields = " ".join(f"{w} 0" for w in words)
            lines.append(f"{offset} 03 {kinds[pos]} {len(words):02x} {word_fields} 000 | a gloss  ")
        (root / f"data.{pos}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root
