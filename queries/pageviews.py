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
from pathlib import Path
from urllib.parse import unquote

from openwit.errors import UserError
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


#: Decompressed bytes read from the start of a page-view file to tell that it is one.
SNIFF_BYTES = 64 * 1024


def is_pageview_line(raw: bytes) -> bool:
    """Whether ``raw`` has the shape of a page-view line, whatever its domain."""
    fields = raw.split()
    return len(fields) == 4 and fields[2].isdigit()


def check_pageview_file(path: str | Path) -> None:
    """:class:`UserError` unless ``path`` starts like a page-view file: at least half of its
    first lines are ``domain_code page_title count_views response_size``.

    Lines of other wikis are only skipped while counting (``other_domain``), so without
    this any file (a PDF, random bytes, the wrong dump) would be counted as a page-view
    file of zero views and the titles would silently go missing. A file damaged after its
    start is judged by what came before the damage; the counting reports the damage (or
    keeps what it read, with ``--keep-partial``).
    """
    from openwit.queries.dump import open_compressed

    head = b""
    try:
        with open_compressed(path) as handle:
            while len(head) < SNIFF_BYTES:
                chunk = handle.read(SNIFF_BYTES - len(head))
                if not chunk:
                    break
                head += chunk
    except Exception:  # damaged: judged by what came before, the rest left to the counting
        pass
    lines = head.split(b"\n")
    if len(head) >= SNIFF_BYTES:
        lines = lines[:-1]  # the last one is cut by the sample's end
    lines = [line for line in lines if line.strip()]
    good = sum(map(is_pageview_line, lines))
    if lines and good * 2 < len(lines):
        raise UserError(
            f"page-view file {path}: not a page-view file ({len(lines) - good} of its first "
            f"{len(lines)} lines are not `domain_code page_title count_views response_size`)"
        )
