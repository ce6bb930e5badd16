"""Streaming reader of MediaWiki XML export dumps, as Wikimedia publishes them.

Reads ``pages-articles*.xml.bz2`` (single- and multistream: a multistream file is a
concatenation of bz2 streams, which :mod:`bz2` reads as one), ``.xml.gz`` and plain
``.xml``, with any version of the export schema (``export-0.10``, ``0.11``, ...). Memory
stays flat: each ``<page>`` is dropped once read.

A page is one of: an article (namespace 0, not a redirect, not a disambiguation page), or
skipped with a reason (``redirect``, ``disambiguation``, ``other_namespace``,
``malformed_page``). A file that ends early (truncated bz2, XML cut mid-page) or holds
corrupt data raises :class:`DumpReadError`, which says how many pages were read before.
"""

from __future__ import annotations

import bz2
import gzip
import re
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from openwit.errors import UserError
from openwit.urls import is_local, local_path

#: Why a page is not counted as an article.
SKIP_REASONS: tuple[str, ...] = ("redirect", "disambiguation", "other_namespace", "malformed_page")

# Disambiguation templates of the English Wikipedia, and every "... disambiguation" one
# ({{Hospital disambiguation}}, {{Place name disambiguation}}, ...).
_DISAMBIGUATION = re.compile(
    r"\{\{\s*(?:template:\s*)?(?:disambiguation|disambig|disamb|dab|dbig|hndis|geodis|numberdis"
    r"|[^{}|\n]{0,40}[ _]disambiguation)\s*(?:\||\}\})",
    re.IGNORECASE,
)
_REDIRECT_TEXT = re.compile(r"\s*#\s*redirect\b", re.IGNORECASE)


class DumpReadError(UserError):
    """A dump file ended early or holds corrupt data; says how many pages were read."""

    def __init__(self, path: str, pages_read: int, problem: str) -> None:
        self.path = path
        self.pages_read = pages_read
        self.problem = problem
        super().__init__(f"{path}: {problem} after {pages_read:,} pages")


@dataclass(frozen=True, slots=True)
class Page:
    """One ``<page>`` of a dump, or the reason it could not be read (``malformed``)."""

    title: str
    ns: int
    text: str
    redirect: bool = False
    malformed: str = ""  # why the page could not be read; empty when it could


class _EachChunk:
    """A decompressing reader whose ``read(n)`` hands out each chunk as it is decompressed.

    ``BZ2File.read(n)`` gathers ``n`` bytes over several decompression steps and, when the
    file ends early, raises and drops what it had gathered; ``read1`` returns after one step,
    so every page before the damage reaches the parser.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def read(self, size: int = -1) -> bytes:
        return self.inner.read1(size if size and size > 0 else 1 << 16)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.inner)

    def __enter__(self) -> _EachChunk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.inner.close()


def open_compressed(path: str | Path) -> IO[bytes]:
    """Open ``path`` for reading, decompressing bz2 or gzip.

    Local files are recognised by their magic bytes; URLs (``gs://``, ``s3://``, ``hdfs://``:
    whatever Beam's filesystems can open) by their ``.bz2``/``.gz`` suffix.
    """
    if not is_local(str(path)):
        return _open_url(str(path))
    path = local_path(path)
    with path.open("rb") as handle:
        magic = handle.read(3)
    if magic == b"BZh":
        return _EachChunk(bz2.open(path, "rb"))  # type: ignore[return-value]
    if magic[:2] == b"\x1f\x8b":
        return _EachChunk(gzip.open(path, "rb"))  # type: ignore[return-value]
    return path.open("rb")


def _open_url(url: str) -> IO[bytes]:
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    raw = FileSystems.open(url, compression_type=CompressionTypes.UNCOMPRESSED)
    if url.endswith(".bz2"):
        return _EachChunk(bz2.BZ2File(raw))  # type: ignore[return-value]
    if url.endswith(".gz"):
        return _EachChunk(gzip.GzipFile(fileobj=raw))  # type: ignore[return-value]
    return raw  # type: ignore[no-any-return]


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "file is truncated (compressed stream ends early)"
    if isinstance(exc, ET.ParseError):
        if any(sign in str(exc) for sign in ("no element found", "unclosed token")):
            return f"XML is cut off ({exc})"
        return f"XML is malformed ({exc})"
    return f"data is corrupt ({type(exc).__name__}: {exc})"


_READ_ERRORS = (EOFError, ET.ParseError, OSError, zlib.error, ValueError)


def _page_from_element(element: ET.Element) -> Page:
    title: str | None = None
    ns_text: str | None = None
    redirect = False
    text: str | None = None
    for child in element:
        name = _local(child.tag)
        if name == "title":
            title = child.text
        elif name == "ns":
            ns_text = child.text
        elif name == "redirect":
            redirect = True
        elif name == "revision":
            for part in child:
                if _local(part.tag) == "text":
                    text = part.text or ""
    if not title:
        return Page("", -1, "", malformed="no <title>")
    try:
        ns = int(ns_text or "")
    except ValueError:
        return Page(title, -1, "", malformed=f"<ns> is not an integer: {ns_text!r}")
    if text is None:
        return Page(title, ns, "", malformed="no <revision><text>")
    return Page(title, ns, text, redirect=redirect)


def iter_pages(path: str | Path) -> Iterator[Page]:
    """Every ``<page>`` of a dump file, streaming; raises :class:`DumpReadError` on damage."""
    path = str(path)
    pages = 0
    try:
        with open_compressed(path) as handle:
            root: ET.Element | None = None
            for event, element in ET.iterparse(handle, events=("start", "end")):
                if root is None:
                    root = element
                    if _local(root.tag) != "mediawiki":
                        raise UserError(
                            f"{path}: not a MediaWiki XML export "
                            f"(root element <{_local(root.tag)}>, expected <mediawiki>)"
                        )
                    continue
                if event != "end" or _local(element.tag) != "page":
                    continue
                page = _page_from_element(element)
                root.clear()  # keeps memory flat: the page is no longer referenced
                pages += 1
                yield page
    except _READ_ERRORS as exc:
        raise DumpReadError(path, pages, _describe(exc)) from None


def read_namespaces(path: str | Path) -> dict[int, str]:
    """The ``<siteinfo>`` namespaces of a dump (``{10: "Template", ...}``), read from its head.

    Also checks early that the file is a readable MediaWiki export.
    """
    path = str(path)
    namespaces: dict[int, str] = {}
    try:
        with open_compressed(path) as handle:
            for index, (event, element) in enumerate(ET.iterparse(handle, ("start", "end"))):
                name = _local(element.tag)
                if index == 0 and name != "mediawiki":
                    raise UserError(
                        f"{path}: not a MediaWiki XML export "
                        f"(root element <{name}>, expected <mediawiki>)"
                    )
                if name == "page" or (event == "end" and name == "siteinfo"):
                    break
                if event == "end" and name == "namespace":
                    key = element.get("key", "")
                    if key.lstrip("-").isdigit() and element.text:
                        namespaces[int(key)] = element.text
    except _READ_ERRORS as exc:
        raise DumpReadError(path, 0, _describe(exc)) from None
    return namespaces


def skip_reason(page: Page) -> str | None:
    """Why ``page`` is not an article (one of :data:`SKIP_REASONS`), or None."""
    if page.malformed:
        return "malformed_page"
    if page.ns != 0:
        return "other_namespace"
    if page.redirect or _REDIRECT_TEXT.match(page.text):
        return "redirect"
    if page.title.endswith("(disambiguation)") or _DISAMBIGUATION.search(page.text):
        return "disambiguation"
    return None
