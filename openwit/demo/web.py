"""What the demo's web serves: its images, copies of eval images, crawl junk, and the server.

- ``plant_eval_copies``: a few eval images, transformed as a crawl would (recompressed,
  rescaled), so the overlap audit has something to find.
- ``write_crawl_junk``: images every crawl also finds, each meeting a different check of
  the build: too small, too wide, byte copies and re-encoded copies of other images, images
  whose server opts out of AI use, files that are no image, links to missing files.
- ``ImageServer``: a static HTTP server on 127.0.0.1 serving a folder, for the downloader,
  on a fixed port when it is free, so the URLs (and with them the build) stay the same from
  one demo run to the next. Files under ``optout/`` are sent with ``X-Robots-Tag: noai``.
"""

from __future__ import annotations

import functools
import http.server
import io
import random
import sys
import threading
from pathlib import Path

from openwit.demo.world import SAME, DemoImage, caption_for, render
from openwit.io import atomic_write_bytes

#: The image server's port when it is free: the same URLs on every run, so a rerun of the
#: demo finds its build complete. Any other free port works, but the build then reruns.
PREFERRED_PORT = 47_813
#: Served with an opt-out header (``QuietHandler``): the build rejects them as opted_out.
OPT_OUT_FOLDER = "optout"


def plant_eval_copies(eval_root: Path, dest: Path, count: int, seed: int = 2) -> list[DemoImage]:
    """Copy ``count`` eval images into ``dest/img``, recompressed and rescaled like a crawl.

    Returns them as captioned images (named ``eval-copy-NN.jpg``) for the pool.
    """
    from PIL import Image

    rng = random.Random(seed)
    candidates = sorted(p for p in eval_root.glob("*/*.jpg"))
    chosen = rng.sample(candidates, min(count, len(candidates)))
    folder = dest / "img"
    folder.mkdir(parents=True, exist_ok=True)
    planted = []
    for index, source in enumerate(chosen):
        with Image.open(source) as image:
            scale = rng.uniform(1.1, 1.4)
            resized = image.convert("RGB").resize(
                (int(image.width * scale), int(image.height * scale)), Image.Resampling.BICUBIC
            )
        path = folder / f"eval-copy-{index:02d}.jpg"
        buffer = io.BytesIO()
        resized.save(buffer, "JPEG", quality=rng.randint(70, 85))
        atomic_write_bytes(path, buffer.getvalue(), **SAME)
        shape = source.parent.name
        caption = f"a {shape} I found on the internet"
        planted.append(DemoImage(path, "", shape, "", caption))
    return planted


def write_crawl_junk(root: Path, images: list[DemoImage], seed: int = 3) -> list[DemoImage]:
    """Write junk into ``root`` (beside ``img/``); returns it as captioned images.

    Each caption is a normal demo caption, so the record passes the text filters and the
    query match and meets the check it was made for in the download, image or dedup stage.
    """
    from PIL import Image

    rng = random.Random(seed)
    junk: list[DemoImage] = []

    def add(folder: str, name: str, data: bytes | None, colour: str, shape: str) -> None:
        background = rng.choice(["grey", "white", "black", "wooden"])
        path = root / folder / name
        if data is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, data, **SAME)
        caption = caption_for(rng, colour, shape, background)
        junk.append(DemoImage(path, colour, shape, background, caption))

    for index in range(4):  # under the image checks' minimum side
        colour, shape = rng.choice(["red", "blue"]), rng.choice(["star", "ring"])
        add("img", f"small-{index:02d}.jpg", render(colour, shape, "grey", rng, (150, 110)),
            colour, shape)  # fmt: skip
    for index in range(2):  # a banner: wider than the maximum aspect ratio
        add("img", f"banner-{index:02d}.jpg", render("green", "cross", "white", rng, (800, 200)),
            "green", "cross")  # fmt: skip
    for index, original in enumerate(images[:4]):  # the same bytes under another URL
        add("img", f"copy-{index:02d}.jpg", original.path.read_bytes(), original.colour,
            original.shape)  # fmt: skip
    for index, original in enumerate(images[4:8]):  # re-encoded: a near duplicate
        with Image.open(original.path) as image:
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, "JPEG", quality=55)
        add("img", f"recompressed-{index:02d}.jpg", buffer.getvalue(), original.colour,
            original.shape)  # fmt: skip
    for index in range(3):  # the server says noai
        colour, shape = rng.choice(["yellow", "purple"]), rng.choice(["square", "circle"])
        add(OPT_OUT_FOLDER, f"{index:02d}.jpg", render(colour, shape, "wooden", rng, (320, 240)),
            colour, shape)  # fmt: skip
    for index in range(2):  # an HTML error page saved as .jpg
        add("img", f"broken-{index:02d}.jpg", b"<html><body>Not here</body></html>\n",
            "orange", "triangle")  # fmt: skip
    for index in range(2):  # linked, never uploaded: 404
        add("img", f"gone-{index:02d}.jpg", None, "blue", "square")
    return junk


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder's files without logging every request."""

    protocol_version = "HTTP/1.1"
    # Sent at once, as keep-alive servers send (nginx, Apache): with Nagle's algorithm the
    # body waits for the client's delayed ACK of the head, ~40 ms on a reused connection.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        pass

    def end_headers(self) -> None:
        if self.path.startswith(f"/{OPT_OUT_FOLDER}/"):
            self.send_header("X-Robots-Tag", "noai")
        super().end_headers()


class BacklogServer(http.server.ThreadingHTTPServer):
    # The stdlib's listen backlog of 5 makes a burst of downloader threads wait 1 s for SYN
    # retransmits; a real image host accepts far more.
    request_queue_size = 1024
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that hangs up mid-answer (it read an opt-out header, or gave up on a body
        # it will not use) is ordinary for a web server: no traceback for it.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class ImageServer:
    """Serves a folder over HTTP on 127.0.0.1 from a background thread.

    On ``port`` when it is free, else on any free port (``moved`` is then True); ``port=0``
    asks for any free port straight away.
    """

    def __init__(self, root: Path, port: int = 0) -> None:
        handler = functools.partial(QuietHandler, directory=str(root))
        self.moved = False
        try:
            self.httpd = BacklogServer(("127.0.0.1", port), handler)
        except OSError:  # taken (another demo, another program): any free port will do
            self.httpd = BacklogServer(("127.0.0.1", 0), handler)
            self.moved = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> ImageServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
