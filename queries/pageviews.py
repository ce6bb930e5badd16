"""Hourly page-view dumps: ``domain_code page_title count_views response_size``, gzip.

Lines of the chosen wiki (domain codes, ``en`` by default) are summed per title across
files. A title in a namespace (``Talk:``, ``File:``, ``Special:`` ...) is skipped; the rest
become queries: percent-escapes decoded where they are valid UTF-8, underscores turned into
spaces, then :func:`openwit.text.as_query`. Views of titles that normalise to the same
query are summed.

Every line read is accounted for by one counter (:data:`LINE_OUTCOMES`).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterable
from urllib.parse import unquote

from openwit.text import as_query

#: What happens to a page-view line; they sum to the lines read.
LINE_OUTCOMES: tuple[str, ...] = (
    "counted",
    "other_domain",
    "malformed_line",
    "namespace_title",
    "not_a_query",
    "below_hourly_floor",
)

#: English Wikipedia's namespace names and aliases, case-folded; the dumps' own
#: ``<siteinfo>`` names are added to these.
DEFAULT_NAMESPACES = frozenset(
    name
    for base in (
        "media",
        "special",
        "user",
        "wikipedia",
        "file",
        "mediawiki",
        "template",
        "help",
        "category",
        "portal",
        "draft",
        "timedtext",
        "module",
        "gadget",
        "gadget definition",
        "event",
        "image",
        "project",
        "education program",
        "book",
    )
    for name in (base, f"{base} talk")
) | frozenset({"talk", "wp", "wt", "mos"})


def namespace_names(extra: Iterable[str] = ()) -> frozenset[str]:
    """:data:`DEFAULT_NAMESPACES` plus ``extra`` names (from a dump's siteinfo)."""
    return DEFAULT_NAMESPACES | {name.replace("_", " ").casefold() for name in extra if name}


def title_to_query(title: str, namespaces: frozenset[str]) -> str | None:
    """The query of a page-view title, or None for a namespaced or empty title."""
    if "%" in title:
        # A literal '%' or a broken escape: keep the title as written.
        with contextlib.suppress(UnicodeDecodeError):
            title = unquote(title, errors="strict")
    title = title.replace("_", " ")
    prefix, colon, _ = title.partition(":")
    if colon and prefix.strip().casefold() in namespaces:
        return None
    return as_query(title) or None


def has_letter_or_digit(query: str) -> bool:
    return any(c.isalnum() for c in query)


def count_pageview_lines(
    lines: Iterable[bytes],
    domains: frozenset[bytes],
    namespaces: frozenset[str],
    min_hourly_views: int,
    views: Counter[str],
    outcomes: Counter[str],
) -> None:
    """Add the views of ``lines`` (raw bytes of one file) to ``views``, by query."""
    for raw in lines:
        domain, _, rest = raw.partition(b" ")
        if domain not in domains:
            outcomes["other_domain"] += 1
            continue
        fields = rest.split()
        if len(fields) != 3 or not fields[1].isdigit():
            outcomes["malformed_line"] += 1
            continue
        try:
            title = fields[0].decode("utf-8")
        except UnicodeDecodeError:
            outcomes["malformed_line"] += 1
            continue
        count = int(fields[1])
        if count < min_hourly_views:
            outcomes["below_hourly_floor"] += 1
            continue
        query = title_to_query(title, namespaces)
        if query is None:
            outcomes["namespace_title"] += 1
        elif not query or not has_letter_or_digit(query):
            outcomes["not_a_query"] += 1
        else:
            outcomes["counted"] += 1
            views[query] += count
