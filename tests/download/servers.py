"""Real HTTP servers on 127.0.0.1 for the downloader tests: images and every fault we handle.

Also a recording network (resolver + connector hooks): names resolve from a table, and a
connection to anything outside loopback is recorded and refused instead of made, so no
test sends a packet off the machine even if the URL policy were broken.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import ipaddress
import random
import socket
import ssl
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from openwit.demo.world import render
from openwit.pipeline.download.fetch.client import direct_connect

FIFTY_MB = 50 * 1024 * 1024


def photo(width: int, height: int, seed: int = 0, quality: int = 90) -> bytes:
    """A photo-like JPEG (shaded, noisy background and a shape) of the given size."""
    rng = random.Random(seed)
    colour = rng.choice(["red", "green", "blue", "yellow", "purple", "orange"])
    shape = rng.choice(["circle", "square", "triangle", "star", "cross", "ring"])
    background = rng.choice(["grey", "white", "black", "wooden"])
    return render(colour, shape, background, rng, (width, height))


@functools.cache
def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A small valid PNG that claims ``width x height`` 1-bit pixels (all zero)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    row = b"\x00" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # send | hang | drip | endless | flaky | header_drip, and for keep-alive tests:
    # send_then_close (send, then close the connection without saying so) and
    # drop_reused (the first request of a connection is sent, a later one gets the
    # connection closed without an answer: a server closing an idle connection)
    action: str = "send"


class FaultServer:
    """Serves ``routes`` (path -> Route) on 127.0.0.1, HTTP/1.0, one thread per request.

    ``protocol_version="HTTP/1.1"`` keeps connections alive (one thread per connection);
    ``tls`` serves HTTPS with that server context. ``connections`` counts the accepted
    connections.
    """

    def __init__(
        self, protocol_version: str = "HTTP/1.0", tls: ssl.SSLContext | None = None
    ) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.flaky_seen: set[str] = set()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.connections = 0
        self.scheme = "https" if tls else "http"
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            served = 0  # requests on this handler's connection

            def log_message(self, format: str, *args: object) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with server.lock:
                    server.connections += 1

            def do_GET(self) -> None:
                self.served += 1
                with server.lock:
                    server.requests.append((self.path, dict(self.headers)))
                route = server.routes.get(self.path.split("?")[0])
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    server.answer(self, route)  # the client may give up, as it should

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128  # the default 5 drops SYNs of parallel clients (1 s stalls)

        Handler.protocol_version = protocol_version
        if protocol_version != "HTTP/1.0":  # as keep-alive servers do: no Nagle delay
            Handler.disable_nagle_algorithm = True  # (between the head and the body)
        self.httpd = Server(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def add(self, path: str, route: Route) -> str:
        self.routes[path] = route
        return self.url(path)

    def hits(self, path: str) -> int:
        with self.lock:
            return sum(1 for p, _ in self.requests if p.split("?")[0] == path)

    def answer(self, handler: http.server.BaseHTTPRequestHandler, route: Route | None) -> None:
        if route is None:
            handler.send_error(404, "Not Found")
            return
        if route.action == "hang":
            self.stop.wait(120)
            return
        if route.action == "header_drip":
            for byte in b"HTTP/1.0 200 OK\r\nX-Slow: " + b"a" * 200:
                if self.stop.wait(0.2):
                    return
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
            return
        if route.action == "drop_reused" and getattr(handler, "served", 1) > 1:
            handler.close_connection = True  # closed, no answer
            return
        if route.action == "flaky" and handler.path not in self.flaky_seen:
            self.flaky_seen.add(handler.path)
            handler.send_error(500, "Internal Server Error")
            return
        handler.send_response(route.status)
        for name, value in route.headers.items():
            handler.send_header(name, value)
        if route.action == "endless":
            handler.send_header("Content-Type", "image/jpeg")
            handler.end_headers()
            block = b"\xff" * 65536
            for _ in range(FIFTY_MB // len(block)):
                handler.wfile.write(block)
            return
        if route.action == "drip":
            handler.send_header("Content-Length", str(len(route.body)))
            handler.end_headers()
            for byte in route.body:
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                if self.stop.wait(1.0):
                    return
            return
        handler.send_header("Content-Length", str(len(route.body)))
        handler.end_headers()
        handler.wfile.write(route.body)
        if route.action == "send_then_close":
            handler.close_connection = True  # closed after the answer, without a header

    def __enter__(self) -> FaultServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def add_fault_routes(server: FaultServer) -> dict[str, str]:
    """Every fault of the acceptance list (and a few good images): name -> URL."""
    ok = photo(640, 480, seed=1)
    jpeg = {"Content-Type": "image/jpeg"}
    urls = {
        "ok": server.add("/img/ok.jpg", Route(body=ok, headers=jpeg)),
        "ok_png": server.add(
            "/img/ok.png", Route(body=png_of(400, 300), headers={"Content-Type": "image/png"})
        ),
        "redirect_ok": server.add("/redirect-ok", Route(302, headers={"Location": "/img/ok.jpg"})),
        "retry_then_ok": server.add("/flaky.jpg", Route(body=ok, headers=jpeg, action="flaky")),
        "not_found": server.url("/missing.jpg"),
        "server_error": server.add("/always-500", Route(503, body=b"busy")),
        "never_answers": server.add("/hang", Route(action="hang")),
        "slow_drip": server.add("/drip.jpg", Route(body=ok[:200], headers=jpeg, action="drip")),
        "redirect_loop": server.add("/loop", Route(302, headers={"Location": "/loop"})),
        "redirect_metadata": server.add(
            "/to-metadata",
            Route(302, headers={"Location": "http://169.254.169.254/latest/meta-data/"}),
        ),
        "redirect_file": server.add(
            "/to-file", Route(302, headers={"Location": "file:///etc/passwd"})
        ),
        "truncated_jpeg": server.add(
            "/truncated.jpg", Route(body=ok[: len(ok) // 2], headers=jpeg)
        ),
        "decompression_bomb": server.add(
            "/bomb.png", Route(body=png_bomb(), headers={"Content-Type": "image/png"})
        ),
        "html": server.add(
            "/page.html",
            Route(body=b"<html><body>no</body></html>", headers={"Content-Type": "text/html"}),
        ),
        "html_as_image": server.add(
            "/fake.jpg", Route(body=b"<!doctype html><p>hello</p>" * 10, headers=jpeg)
        ),
        "fifty_mb": server.add("/huge.jpg", Route(action="endless")),
        "noai": server.add("/noai.jpg", Route(body=ok, headers={**jpeg, "X-Robots-Tag": "noai"})),
        "small": server.add("/small.jpg", Route(body=photo(120, 90, seed=3), headers=jpeg)),
        "wide": server.add("/wide.jpg", Route(body=photo(900, 240, seed=4), headers=jpeg)),
        "ftp": "ftp://127.0.0.1/image.jpg",
    }
    return urls


#: The rejection each fault must get (None: the image is kept by the download stage).
EXPECTED_DOWNLOAD = {
    "ok": None,
    "ok_png": None,
    "redirect_ok": None,
    "retry_then_ok": None,
    "small": None,
    "wide": None,
    "not_found": "http_404",
    "server_error": "http_5xx",
    "never_answers": "timeout",
    "slow_drip": "too_slow",
    "redirect_loop": "too_many_redirects",
    "redirect_metadata": "blocked_url",
    "redirect_file": "blocked_url",
    "truncated_jpeg": "decode_error",
    "decompression_bomb": "decompression_bomb",
    "html": "not_an_image",
    "html_as_image": "not_an_image",
    "fifty_mb": "too_large",
    "noai": "opted_out",
    "ftp": "blocked_url",
}


def png_of(width: int, height: int, mode: str = "RGBA") -> bytes:
    from PIL import Image

    image = Image.new(mode, (width, height), (30, 120, 200, 128) if mode == "RGBA" else 100)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


class RecordingNetwork:
    """Resolver and connector hooks: a name table, and connections recorded, not made,
    unless they go to loopback."""

    def __init__(self, names: dict[str, list[str]] | None = None) -> None:
        self.names = dict(names or {})
        self.lookups: list[str] = []
        self.attempts: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def resolve(self, host: str, port: int) -> list[str]:
        with self.lock:
            self.lookups.append(host)
        if host not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} is not in the test's name table")
        return self.names[host]

    def connect(self, address, port: int, timeout: float) -> socket.socket:
        with self.lock:
            self.attempts.append((str(address), port))
        if not ipaddress.ip_address(address).is_loopback:
            raise ConnectionRefusedError(f"recording network: no connection to {address}")
        return direct_connect(address, port, timeout)

    def off_machine_attempts(self) -> list[tuple[str, int]]:
        return [a for a in self.attempts if not ipaddress.ip_address(a[0]).is_loopback]


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    started = time.monotonic()
    result = fn()
    return result, time.monotonic() - started
