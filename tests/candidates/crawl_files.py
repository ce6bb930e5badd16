"""Real WAT and WARC files for the tests, written with warcio (one gzip member per record).

The readers use FastWARC; writing with a second, independent library makes the tests check
the format, not one library's reading of its own output.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter


def wat_envelope(
    target_uri: str, links: list[dict[str, Any]], base: str | None = None
) -> dict[str, Any]:
    """The JSON of a WAT metadata record for an HTML page, as Common Crawl writes it."""
    head: dict[str, Any] = {"Title": "a page"}
    if base is not None:
        head["Base"] = base
    return {
        "Container": {"Filename": "test.warc.gz", "Compressed": True},
        "Envelope": {
            "Format": "WARC",
            "WARC-Header-Metadata": {"WARC-Type": "response", "WARC-Target-URI": target_uri},
            "Payload-Metadata": {
                "Actual-Content-Type": "application/http; msgtype=response",
                "HTTP-Response-Metadata": {
                    "Response-Message": {"Status": "200"},
                    "HTML-Metadata": {"Head": head, "Links": links},
                },
            },
        },
    }


def write_wat(path: Path, records: list[tuple[str, bytes]]) -> Path:
    """A WAT file: a warcinfo record, then one metadata record per ``(target_uri, payload)``.

    ``payload`` is the raw JSON bytes (tests pass malformed and non-UTF-8 bytes on purpose).
    """
    with path.open("wb") as handle:
        writer = WARCWriter(handle, gzip=True)
        writer.write_record(writer.create_warcinfo_record(path.name, {"software": "tests"}))
        for target_uri, payload in records:
            record = writer.create_warc_record(
                target_uri,
                "metadata",
                payload=io.BytesIO(payload),
                warc_content_type="application/json",
                length=len(payload),
            )
            writer.write_record(record)
    return path


def json_bytes(document: Any) -> bytes:
    return json.dumps(document).encode("utf-8")


def write_warc(path: Path, pages: list[tuple[str, bytes, str]]) -> Path:
    """A WARC file of HTTP responses: ``(target_uri, body, content_type)`` each, with a
    request record before each response as crawlers write them."""
    with path.open("wb") as handle:
        writer = WARCWriter(handle, gzip=True)
        writer.write_record(writer.create_warcinfo_record(path.name, {"software": "tests"}))
        for target_uri, body, content_type in pages:
            request = writer.create_warc_record(
                target_uri,
                "request",
                payload=io.BytesIO(b""),
                http_headers=StatusAndHeaders(
                    "GET / HTTP/1.1", [("Host", "example.com")], is_http_request=True
                ),
            )
            writer.write_record(request)
            headers = StatusAndHeaders(
                "200 OK",
                [("Content-Type", content_type), ("Content-Length", str(len(body)))],
                protocol="HTTP/1.1",
            )
            response = writer.create_warc_record(
                target_uri, "response", payload=io.BytesIO(body), http_headers=headers
            )
            writer.write_record(response)
    return path
