"""What every reader shares: turning a raw (url, text) found in an input into a candidate pair.

A reader yields, for each *record* of its input, exactly one item: a candidate pair (a dict
with the ingest columns) or a :class:`~openwit.funnel.Rejection`. The checks made here are
the ones that need no look at the text's content: a URL that is missing, not http(s), or
absurdly long, and a text that is missing or blank. Content filters are the text stage's.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urljoin, urlsplit

from openwit.funnel import Rejection
from openwit.schemas import uid_for

STAGE = "ingest"

#: Longer URLs are rejected (``url_too_long``); browsers and CDNs cap near this, and
#: data: URIs that slip through as "links" are megabytes long.
MAX_URL_CHARS = 2048
#: Alt texts longer than this are cut here at ingest (the text stage's ``max_chars`` rejects
#: them anyway); a crawl page can hold a megabyte of alt text.
MAX_RAW_TEXT_CHARS = 20_000

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_string(value: str) -> str:
    """``value`` with lone surrogates (from JSON ``\\ud800`` escapes) replaced by U+FFFD.

    Arrow and Parquet hold UTF-8 only, and a lone surrogate has no UTF-8 form.
    """
    if value.isascii():
        return value
    return _LONE_SURROGATE.sub("\ufffd", value)


def location(source: str, offset: int) -> str:
    return f"{source}#{offset}"


def reject(reason: str, source: str, offset: int, detail: str = "", uid: str = "") -> Rejection:
    """A rejection of a record that may have no pair (and so no uid) yet."""
    where = location(source, offset)
    return Rejection(uid, STAGE, reason, f"{where}: {detail}"[:500] if detail else where)


def resolve_url(src: Any, base: str | None) -> str | None:
    """``src`` made absolute against ``base`` (the page URL or its ``<base href>``).

    Handles relative (``img/a.jpg``, ``../a.jpg``, ``/a.jpg``) and protocol-relative
    (``//cdn.example/a.jpg``) links the way a browser does; surrounding whitespace is
    stripped first (HTML strips it from URL attributes). ``None`` when ``src`` is not a
    string or cannot be joined.
    """
    if not isinstance(src, str):
        return None
    src = src.strip()
    if not src:
        return None
    if base is None or src.startswith(("http://", "https://")):
        return src
    try:
        return urljoin(base, src)
    except ValueError:  # e.g. an invalid IPv6 host in the base or the link
        return None


def page_base(target_uri: str | None, base_href: Any) -> str | None:
    """The URL relative links of a page resolve against: its ``<base href>``, itself
    resolved against the page's own URL, or the page URL when there is no base."""
    if isinstance(base_href, str) and base_href.strip():
        if target_uri:
            try:
                return urljoin(target_uri, base_href.strip())
            except ValueError:
                return target_uri
        return base_href.strip()
    return target_uri or None


def make_pair(url: Any, text: Any, source: str, offset: int) -> dict[str, Any] | Rejection:
    """A candidate pair from a resolved URL and a raw text, or the rejection saying why not."""
    if not isinstance(url, str) or not url.strip():
        return reject("missing_url", source, offset)
    url = clean_string(url.strip())
    if not isinstance(text, str) or not text.strip():
        return reject("missing_text", source, offset, url[:200])
    text = clean_string(text[:MAX_RAW_TEXT_CHARS])
    uid = uid_for(url, text)
    if len(url) > MAX_URL_CHARS:
        return reject("url_too_long", source, offset, f"{len(url)} chars", uid)
    try:
        parts = urlsplit(url)
        has_host = bool(parts.hostname)
    except ValueError:
        return reject("unsupported_url", source, offset, url[:200], uid)
    if parts.scheme.lower() not in ("http", "https") or not has_host:
        return reject("unsupported_url", source, offset, url[:200], uid)
    return {"uid": uid, "url": url, "text": text, "source": source, "source_offset": offset}
