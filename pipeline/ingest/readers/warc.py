"""Crawl readers: Common Crawl WAT metadata and WARC responses, read with FastWARC.

**What a record is.** A crawl file holds pages, not pairs, so the funnel counts what a
person would count: every image link found (``IMG@/src`` in a WAT record, ``<img src>`` in
an HTML response) is one record, and so is every WARC record that should hold links but
cannot be read (bad JSON, HTML that fails to parse, an unreadable rest of the file). WARC
records that hold no image links at all (requests, non-HTML responses, pages without
images) are scanned and counted in the stage stats, not in the funnel.

``source_offset`` is the index of the WARC record in its file (warcinfo included), so all
links of one page share it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, BinaryIO

from openwit.funnel import Rejection

from .pairs import make_pair, page_base, reject, resolve_url

#: HTML bodies longer than this are parsed up to this size (a decompression-bomb guard:
#: FastWARC decodes Content-Encoding, so the stored size says little).
MAX_HTML_BYTES = 8_000_000
#: WAT JSON payloads longer than this are rejected as malformed_record.
MAX_WAT_JSON_BYTES = 32_000_000

Item = dict[str, Any] | Rejection


def _text_of(link: dict[str, Any], title_fallback: bool) -> Any:
    """The alt text of an image link, or its title when the alt is missing or blank."""
    text = link.get("alt")
    if title_fallback and (not isinstance(text, str) or not text.strip()):
        title = link.get("title")
        if isinstance(title, str) and title.strip():
            return title
    return text


def _dig(document: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document


def wat_record_pairs(
    payload: bytes, target_uri: str | None, source: str, offset: int, title_fallback: bool
) -> Iterator[Item]:
    """The image links of one WAT metadata record's JSON payload, as pairs or rejections."""
    try:
        # Undecodable bytes become U+FFFD rather than failing the whole page.
        document = json.loads(payload.decode("utf-8", "replace"))
    except ValueError as exc:
        yield reject("malformed_record", source, offset, f"invalid JSON: {exc}")
        return
    if not isinstance(document, dict):
        yield reject("malformed_record", source, offset, "JSON payload is not an object")
        return
    envelope = document.get("Envelope")
    target_uri = _dig(envelope, "WARC-Header-Metadata", "WARC-Target-URI") or target_uri
    html = _dig(envelope, "Payload-Metadata", "HTTP-Response-Metadata", "HTML-Metadata")
    if html is None:
        return  # not an HTML page: no links, no records
    links = html.get("Links") if isinstance(html, dict) else None
    if links is None:
        return
    if not isinstance(links, list):
        yield reject("malformed_record", source, offset, "HTML-Metadata.Links is not a list")
        return
    base = page_base(
        target_uri if isinstance(target_uri, str) else None, _dig(html, "Head", "Base")
    )
    for link in links:
        if not isinstance(link, dict) or link.get("path") != "IMG@/src":
            continue
        url = resolve_url(link.get("url"), base)
        yield make_pair(url, _text_of(link, title_fallback), source, offset)


def read_wat(
    stream: BinaryIO, source: str, title_fallback: bool, stats: dict[str, int]
) -> Iterator[Item]:
    """Pairs and rejections of a WAT file (gzip members or plain), in file order."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    offset = -1
    try:
        for offset, record in enumerate(ArchiveIterator(stream, parse_http=False)):
            stats["warc_records"] = stats.get("warc_records", 0) + 1
            if record.record_type != WarcRecordType.metadata:
                continue
            stats["metadata_records"] = stats.get("metadata_records", 0) + 1
            payload = record.reader.read(MAX_WAT_JSON_BYTES + 1)
            if len(payload) > MAX_WAT_JSON_BYTES:
                yield reject("malformed_record", source, offset, "JSON payload too large")
                continue
            target = record.headers.get("WARC-Target-URI")
            yield from wat_record_pairs(payload, target, source, offset, title_fallback)
    except OSError as exc:  # a corrupt gzip member or WARC header: the rest is unreadable
        yield reject("unreadable_input", source, offset + 1, f"{type(exc).__name__}: {exc}")


def html_image_pairs(
    html: bytes,
    charset: str | None,
    target_uri: str | None,
    source: str,
    offset: int,
    title_fallback: bool,
) -> Iterator[Item]:
    """``<img src alt>`` pairs of one HTML document, links resolved against its base."""
    from selectolax.lexbor import LexborHTMLParser

    try:
        if charset:
            parser = LexborHTMLParser(html.decode(charset, "replace"))
        else:  # <meta charset> or a BOM decide, as the HTML standard says; else UTF-8
            parser = LexborHTMLParser(html, encoding=True)
        base_node = parser.css_first("base[href]")
        images = parser.css("img[src]")
    except Exception as exc:  # a parser failure on one page must not stop the file
        yield reject("malformed_record", source, offset, f"HTML parse failed: {exc}")
        return
    base = page_base(target_uri, base_node.attributes.get("href") if base_node else None)
    for node in images:
        attributes = node.attributes
        url = resolve_url(attributes.get("src"), base)
        yield make_pair(url, _text_of(attributes, title_fallback), source, offset)


def read_warc(
    stream: BinaryIO, source: str, title_fallback: bool, stats: dict[str, int]
) -> Iterator[Item]:
    """Pairs and rejections of the HTML responses of a WARC file, in file order."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    offset = -1
    try:
        for offset, record in enumerate(ArchiveIterator(stream, parse_http=True)):
            stats["warc_records"] = stats.get("warc_records", 0) + 1
            if record.record_type != WarcRecordType.response or not record.is_http:
                continue
            content_type = (record.http_content_type or "").lower()
            if "html" not in content_type:
                continue
            stats["html_responses"] = stats.get("html_responses", 0) + 1
            body = record.reader.read(MAX_HTML_BYTES + 1)
            if len(body) > MAX_HTML_BYTES:
                stats["html_truncated"] = stats.get("html_truncated", 0) + 1
                body = body[:MAX_HTML_BYTES]
            target = record.headers.get("WARC-Target-URI")
            yield from html_image_pairs(
                body, record.http_charset, target, source, offset, title_fallback
            )
    except OSError as exc:
        yield reject("unreadable_input", source, offset + 1, f"{type(exc).__name__}: {exc}")
