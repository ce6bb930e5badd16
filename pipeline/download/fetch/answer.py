"""What an HTTP answer may be, checked before and while its body is read.

The checks of :class:`~.client.HttpClient` that need no socket: the status, the headers
(opt-outs, content types that are no image, a declared size above the limit), where a
redirect points, the body's content encodings undone within the size limit (a few kB of
gzip can stand for gigabytes), and what an exception raised on the way means. Each failure
is a :class:`FetchError` with a snake_case reason: the record's rejection reason.
"""

from __future__ import annotations

import contextlib
import http.client
import ssl
import zlib
from urllib.parse import urljoin

from openwit.config import DownloadConfig
from openwit.pipeline.download.fetch.robots import opted_out

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
OK_STATUSES = frozenset({200, 203})
#: Content types that are never an image, refused before the body is read.
NOT_IMAGE_TYPES = ("text/", "application/json", "application/xml", "application/javascript")


class FetchError(Exception):
    """Why a fetch failed: a snake_case ``reason``, a ``detail`` for people, and whether
    another attempt may succeed."""

    def __init__(self, reason: str, detail: str, retryable: bool = False) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.retryable = retryable


def declared_length(declared: str | None) -> int | None:
    """A Content-Length header's number; None without one, or for anything but ASCII
    digits (``"²".isdigit()`` is true, and ``int("²")`` raises)."""
    if declared is None:
        return None
    declared = declared.strip()
    return int(declared) if declared.isascii() and declared.isdigit() else None


def redirect_url(current: str, location: str) -> str:
    """The URL a ``Location`` header points to from ``current``.

    http.client reads header bytes as Latin-1; a Location in UTF-8 (what servers send for
    non-ASCII paths, and what browsers read) is read as UTF-8 instead. A Location that is
    no URL (``http://[::1``) is ``invalid_url``.
    """
    location = location.strip()
    if not location.isascii():
        with contextlib.suppress(UnicodeError):
            location = location.encode("latin-1").decode("utf-8")
    try:
        return urljoin(current, location)
    except ValueError as exc:
        raise FetchError("invalid_url", f"redirect to {location!r}: {exc}"[:300]) from None


def decoded_body(body: bytes, content_encoding: str, limit: int) -> bytes:
    """``body`` with its ``Content-Encoding`` undone: ``gzip`` (``x-gzip``) and ``deflate``,
    in the reverse order of the header, each output bounded by ``limit`` bytes.

    Refuses with ``too_large`` an encoded body that would pass ``limit`` (a compression
    bomb: a few kB of gzip can stand for gigabytes), ``incomplete_body`` one that ends
    early, ``bad_response`` one that does not decode and ``unsupported_encoding`` any other
    coding (br, zstd, compress).
    """
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    for coding in reversed(codings):
        if coding in ("", "identity"):
            continue
        if coding in ("gzip", "x-gzip"):
            body = _inflate(body, coding, 16 + zlib.MAX_WBITS, limit)
        elif coding == "deflate":  # zlib-wrapped, as the standard says; raw, as some send
            try:
                body = _inflate(body, coding, zlib.MAX_WBITS, limit)
            except FetchError as failure:
                if failure.reason != "bad_response":
                    raise
                body = _inflate(body, coding, -zlib.MAX_WBITS, limit)
        else:
            raise FetchError("unsupported_encoding", f"Content-Encoding {content_encoding}"[:300])
    return body


def _inflate(data: bytes, coding: str, wbits: int, limit: int) -> bytes:
    """One coding of a body undone; a gzip body may hold several members (RFC 1952)."""
    parts: list[bytes] = []
    size = 0
    try:
        while True:
            inflater = zlib.decompressobj(wbits)
            part = inflater.decompress(data, limit - size + 1)
            size += len(part)
            if size > limit:
                raise FetchError(
                    "too_large",
                    f"{coding} body of {len(data):,} bytes decodes past {limit:,} bytes",
                )
            parts.append(part)
            if not inflater.eof:
                raise FetchError("incomplete_body", f"{coding} stream ends early")
            data = inflater.unused_data
            if "gzip" not in coding or not data.strip(b"\x00"):  # zeros: padding, as gzip's
                break
    except zlib.error as exc:
        raise FetchError("bad_response", f"{coding} body does not decode: {exc}"[:300]) from None
    return b"".join(parts)


def check_status(status: int, phrase: str) -> None:
    """Nothing for an answer worth reading; a failure for any other status (5xx: one to
    retry)."""
    if status in OK_STATUSES:
        return
    if 500 <= status < 600:
        raise FetchError("http_5xx", f"HTTP {status} {phrase}", retryable=True)
    raise FetchError(f"http_{status}", f"HTTP {status} {phrase}")


def check_headers(
    response: http.client.HTTPResponse, content_type: str, length: str | None, s: DownloadConfig
) -> None:
    """Refuse, before the body is read, an answer the site opted out of (X-Robots-Tag), one
    that is no image and one declared larger than ``s.max_bytes``. ``content_type`` and
    ``length``: the Content-Type ("" without one) and Content-Length headers of
    ``response``."""
    robots = response.headers.get_all("X-Robots-Tag")  # None without one
    optout = None
    if robots:
        optout = opted_out(robots, s.user_agent_token, s.disallowed_header_directives)
    if optout is not None:
        raise FetchError("opted_out", f"X-Robots-Tag: {optout}"[:300])
    content_type = content_type.lower()
    if content_type.startswith(NOT_IMAGE_TYPES) or "html" in content_type:
        raise FetchError("not_an_image", f"Content-Type {content_type}"[:300])
    declared = declared_length(length)
    if declared is not None and declared > s.max_bytes:
        raise FetchError("too_large", f"Content-Length {declared:,} > {s.max_bytes:,}")


def as_failure(exc: BaseException, timed_out: bool, before_headers: bool) -> FetchError:
    """``exc``, raised while fetching, as the failure it means (``timed_out``: the budget
    ran out); raised again when it is none of the network's or the server's errors."""
    if isinstance(exc, FetchError):
        return exc
    if timed_out or isinstance(exc, TimeoutError):
        if before_headers:
            return FetchError("timeout", "no answer within the time budget", retryable=True)
        return FetchError("too_slow", "body not complete within the time budget")
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return FetchError("tls_error", str(exc)[:300])
    if isinstance(exc, http.client.IncompleteRead):
        return FetchError("incomplete_body", f"{len(exc.partial):,} bytes, then the end")
    if isinstance(exc, http.client.RemoteDisconnected | ConnectionError):
        return FetchError("connection_error", str(exc)[:300] or type(exc).__name__)
    if isinstance(exc, http.client.HTTPException):
        return FetchError("bad_response", f"{type(exc).__name__}: {exc}"[:300])
    if isinstance(exc, OSError):
        return FetchError("connection_error", str(exc)[:300] or type(exc).__name__)
    raise exc
