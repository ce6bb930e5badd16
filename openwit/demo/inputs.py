"""The demo's crawl inputs: a small WAT file and a messy pool pointing at the served images.

:func:`write_demo_inputs` writes what a real build starts from, shrunk: a Common Crawl-style
WAT file whose pages link the demo images with absolute, relative, root-relative,
protocol-relative and ``<base>``-relative URLs (plus the junk a crawl holds: a data: URI, an
image without alt text, a file-name alt, a malformed record), and a JSONL pool with the
rest of the images and typical pool junk (file-name captions, other languages, too-short
captions, a duplicate row, a bare URL, camera settings, a broken line). It returns the
``inputs:`` entries of the build config.

The WAT file is written by a few lines here rather than with a WARC library: the runtime
stack has a WARC *reader* (FastWARC) only, and the format of a metadata record is simple.
A test reads the file back with warcio to check it.
"""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from openwit.demo.world import DemoImage
from openwit.io import atomic_write_bytes, atomic_write_text

WARC_DATE = "2026-01-01T00:00:00Z"


def warc_record(index: int, record_type: str, target: str | None, payload: bytes) -> bytes:
    """One WARC/1.0 record, gzip-compressed as its own member (Common Crawl's layout)."""
    headers = [
        ("WARC-Type", record_type),
        ("WARC-Date", WARC_DATE),
        ("WARC-Record-ID", f"<urn:uuid:{uuid.UUID(int=index + 1)}>"),
    ]
    if target is not None:
        headers.append(("WARC-Target-URI", target))
    content_type = "application/warc-fields" if record_type == "warcinfo" else "application/json"
    headers += [("Content-Type", content_type), ("Content-Length", str(len(payload)))]
    head = "WARC/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return gzip.compress(head.encode() + payload + b"\r\n\r\n", mtime=0)


def wat_payload(target: str, links: list[dict[str, str]], base: str | None = None) -> bytes:
    head: dict[str, Any] = {"Title": "demo page"}
    if base is not None:
        head["Base"] = base
    document = {
        "Envelope": {
            "Format": "WARC",
            "WARC-Header-Metadata": {"WARC-Type": "response", "WARC-Target-URI": target},
            "Payload-Metadata": {
                "Actual-Content-Type": "application/http; msgtype=response",
                "HTTP-Response-Metadata": {
                    "Response-Message": {"Status": "200"},
                    "HTML-Metadata": {"Head": head, "Links": links},
                },
            },
        }
    }
    return json.dumps(document).encode()


def _img(url: str, alt: str | None) -> dict[str, str]:
    link = {"path": "IMG@/src", "url": url}
    if alt is not None:
        link["alt"] = alt
    return link


def _link_styles(image_path: str, base_url: str) -> list[tuple[str, str | None]]:
    """(link as written on a page under /pages/, the page's <base href>) for one image path,
    in the four styles a crawl holds, chosen round-robin by the caller."""
    authority = urlsplit(base_url).netloc
    name = image_path.rsplit("/", 1)[-1]
    return [
        (f"{base_url}/{image_path}", None),  # absolute
        (f"../{image_path}", None),  # relative to the page
        (f"/{image_path}", None),  # root-relative
        (f"//{authority}/{image_path}", None),  # protocol-relative
        (name, f"/{image_path.rsplit('/', 1)[0]}/"),  # relative to <base href>
    ]


def write_demo_wat(
    path: Path, images: Sequence[DemoImage], image_root: Path, base_url: str, per_page: int = 3
) -> Path:
    """Pages linking ``images`` in every link style, plus crawl junk; returns ``path``."""
    base_url = base_url.rstrip("/")
    records = [warc_record(0, "warcinfo", None, b"software: openwit demo\r\n")]
    for page, start in enumerate(range(0, len(images), per_page)):
        target = f"{base_url}/pages/page-{page:03d}.html"
        style = page % 5
        base = None
        links = []
        for image in images[start : start + per_page]:
            link, base = _link_styles(image.path.relative_to(image_root).as_posix(), base_url)[
                style
            ]
            links.append(_img(link, image.caption))
        links += [
            _img("data:image/gif;base64,R0lGODlhAQABAAAAACw=", "spacer"),
            _img(f"/static/logo-{page}.png", None),  # no alt text
            _img(f"/static/DSC_{1000 + page:04d}.JPG", f"DSC_{1000 + page:04d}.JPG"),
        ]
        records.append(
            warc_record(len(records), "metadata", target, wat_payload(target, links, base))
        )
    broken = f"{base_url}/pages/broken.html"
    records.append(warc_record(len(records), "metadata", broken, b'{"Envelope": {"Payload'))
    atomic_write_bytes(path, b"".join(records), skip_if_same=True)  # unchanged: build reused
    return path


def write_demo_pool(
    path: Path, images: Sequence[DemoImage], image_root: Path, base_url: str
) -> Path:
    """A JSONL pool (img2dataset's url/caption) of ``images`` plus typical junk rows."""
    base_url = base_url.rstrip("/")
    rows: list[Any] = []
    for image in images:
        url = f"{base_url}/{image.path.relative_to(image_root).as_posix()}"
        rows.append({"url": url, "caption": image.caption})
    junk_url = f"{base_url}/img/missing-{{}}.jpg"
    rows += [
        {"url": junk_url.format(1), "caption": "IMG_4821.JPG"},
        {"url": junk_url.format(2), "caption": "un cercle rouge sur un fond gris"},
        {"url": junk_url.format(3), "caption": "ein blaues Quadrat auf schwarzem Hintergrund"},
        {"url": junk_url.format(4), "caption": "red"},
        {"url": junk_url.format(5), "caption": f"{base_url}/img/00001.jpg"},
        {"url": junk_url.format(6), "caption": "f/2.8 1/250s ISO 200 50mm"},
        {"url": junk_url.format(7), "caption": "a purple cloud drifting over the hills"},
        {"url": "img/relative.jpg", "caption": "a relative URL cannot be downloaded"},
        {"url": junk_url.format(8)},
        "{this line is not json",
    ]
    if rows and isinstance(rows[0], dict):
        rows.append(dict(rows[0]))  # an exact duplicate of the first pair
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    atomic_write_text(path, "\n".join(lines) + "\n", skip_if_same=True)
    return path


def write_demo_inputs(
    out_dir: Path, images: list[DemoImage], image_root: Path, base_url: str
) -> list[dict[str, Any]]:
    """Write the demo's WAT file and pool into ``out_dir``; return the ``inputs:`` entries.

    The first half of ``images`` is linked from the WAT pages, the rest listed in the pool;
    ``image_root`` is the folder the image server serves at ``base_url``.
    """
    half = (len(images) + 1) // 2
    wat = write_demo_wat(
        out_dir / "crawl" / "demo.warc.wat.gz", images[:half], image_root, base_url
    )
    pool = write_demo_pool(out_dir / "pool.jsonl", images[half:], image_root, base_url)
    return [{"path": str(wat)}, {"path": str(pool)}]
