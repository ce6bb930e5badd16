"""CPU per fetch of the download's HTTP client: the request head built by hand against
http.client building it (``HTTPConnection.request`` + ``getresponse``), on loopback.

The client lets http.client write its requests; until 2026-12 it built the bytes itself
(the header lines cached, one ``sendall``, ``HTTPResponse`` read directly), which the
subclass here does again, only to measure what it would save (docs/decisions.md has the
decision). Everything else is the same client (policy, watchdog, keep-alive pool, body
loop): only how the request goes out and the answer's head is read differs.
The server runs in its own process (HTTP/1.1, keep-alive, no Nagle delay, one ~15 kB
JPEG body for every path), so the client process's CPU time (``time.process_time``, all
its threads) is the client's cost. The variants alternate, ``REPEATS`` times each, and the
medians are reported; the machine is shared, so read the ratio, not the absolute times.

Figures:
- ``fetch_client_cpu_ms_per_fetch``: 32 threads, like the download stage; the request
  built by hand against the client as it is.
- ``fetch_request_head_us``: building and sending one request head alone (into a socket
  that discards it): the part the two variants differ in.
"""

from __future__ import annotations

import http.client
import http.server
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import emit, guarded_env, install_guard

install_guard()

FETCHES = 3000
THREADS = 32
REPEATS = 3
HEADS = 20000
BODY_BYTES = 15_000


def serve_forever(port: int) -> None:
    """The benchmark's server: the same JPEG-sized body for every GET."""
    from openwit.demo_data import BacklogServer

    body = b"\xff\xd8\xff\xe0" + bytes(range(256)) * (BODY_BYTES // 256)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    BacklogServer(("127.0.0.1", port), Handler).serve_forever()


def start_server() -> tuple[subprocess.Popen, int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, str(Path(__file__).resolve()), "--serve", str(port)]
    server = subprocess.Popen(command, env=guarded_env(), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, port
        except OSError:
            if time.monotonic() > deadline:
                server.kill()
                raise
            time.sleep(0.1)


def _plain(text: str) -> bool:
    """Printable ASCII without spaces: what http.client sends as it is, unchecked."""
    return text.isascii() and text.isprintable() and " " not in text


def hand_client_class() -> type:
    from openwit.pipeline.download.fetch.client import HttpClient

    class HandRequestClient(HttpClient):
        """The same client, with the request bytes built by hand: http.client's bytes
        (its Host rule: the port unless it is 80), the header lines after Host built once,
        anything not plain left to http.client."""

        head: tuple[tuple[str, str, bool], bytes] | None = None

        def request_bytes(self, target) -> bytes:  # type: ignore[no-untyped-def]
            download = self.download
            said = (download.user_agent_token, download.contact, download.keep_alive)
            if self.head is None or self.head[0] != said:
                lines = "".join(f"{k}: {v}\r\n" for k, v in self._headers().items())
                self.head = (said, (lines + "\r\n").encode("ascii"))
            path, host = target.request_path, target.host
            if not (_plain(path) and path.startswith("/") and _plain(host)) or "%" in host:
                return b""
            if ":" in host:
                host = f"[{host}]"
            if target.port != http.client.HTTP_PORT:
                host = f"{host}:{target.port}"
            return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n".encode("ascii") + self.head[1]

        def _send(self, sock, target):  # type: ignore[no-untyped-def]
            request = self.request_bytes(target)
            if not request:
                return super()._send(sock, target)
            sock.sendall(request)
            response = http.client.HTTPResponse(sock, method="GET")
            try:
                response.begin()
            except BaseException:
                response.close()
                raise
            return response

    return HandRequestClient


def cpu_per_fetch(client_class: type, port: int) -> float:
    """Client CPU seconds per fetch, ``FETCHES`` fetches from ``THREADS`` threads."""
    from openwit.config import DownloadConfig
    from openwit.pipeline.download.fetch.client import Fetched
    from openwit.pipeline.download.fetch.policy import UrlPolicy

    client = client_class(DownloadConfig(retries=0), UrlPolicy(True))
    urls = [f"http://127.0.0.1:{port}/img/{i}.jpg" for i in range(FETCHES)]
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(client.fetch, urls[:THREADS]))  # warm up: connections, caches
        started = time.process_time()
        results = list(pool.map(client.fetch, urls))
        used = time.process_time() - started
    client.close_idle_connections()
    failed = [r for r in results if not isinstance(r, Fetched)]
    if failed:
        raise RuntimeError(f"{len(failed)} fetches failed, e.g. {failed[0]}")
    return used / FETCHES


class _Discard:
    def __init__(self) -> None:
        self.sent = b""

    def sendall(self, data: bytes) -> None:
        self.sent = data


def head_seconds(port: int) -> tuple[float, float, bool]:
    """Seconds per request head: built by hand (the client's cache warm) and by
    ``HTTPConnection.request``, each sent into a socket that discards it; and whether
    both gave the same bytes."""
    from openwit.config import DownloadConfig
    from openwit.pipeline.download.fetch.policy import UrlPolicy

    client = hand_client_class()(DownloadConfig(), UrlPolicy(True))
    target = client.policy.parse(f"http://127.0.0.1:{port}/img/000000123.jpg")
    sink = _Discard()

    def by_hand() -> None:
        for _ in range(HEADS):
            sink.sendall(client.request_bytes(target))

    def by_library() -> None:
        for _ in range(HEADS):
            conn = http.client.HTTPConnection(target.host, target.port)
            conn.sock = sink
            conn.request("GET", target.request_path, headers=client._headers())

    times: dict[str, list[float]] = {"hand": [], "library": []}
    sent = {}
    for _ in range(REPEATS):
        for name, fn in (("hand", by_hand), ("library", by_library)):
            started = time.process_time()
            fn()
            times[name].append((time.process_time() - started) / HEADS)
            sent[name] = sink.sent
    same = sent["hand"] == sent["library"]
    return statistics.median(times["hand"]), statistics.median(times["library"]), same


def main() -> None:
    from openwit.pipeline.download.fetch.client import HttpClient

    hand = hand_client_class()
    server, port = start_server()
    try:
        runs: dict[str, list[float]] = {"hand": [], "library": []}
        for _ in range(REPEATS):
            for name, client_class in (("hand", hand), ("library", HttpClient)):
                runs[name].append(cpu_per_fetch(client_class, port))
        ours, lib = statistics.median(runs["hand"]), statistics.median(runs["library"])
        emit(
            "fetch_client_cpu_ms_per_fetch",
            ours * 1000,
            "ms",
            "the client as it is: http.client writes the request (HTTPConnection.request)",
            lib * 1000,
            fetches=FETCHES,
            threads=THREADS,
            repeats=REPEATS,
            hand_runs_ms=[round(v * 1000, 4) for v in runs["hand"]],
            library_runs_ms=[round(v * 1000, 4) for v in runs["library"]],
            saved_ms=round((lib - ours) * 1000, 4),
        )
        hand_head, lib_head, same = head_seconds(port)
        emit(
            "fetch_request_head_us",
            hand_head * 1e6,
            "us",
            "HTTPConnection.request building and sending the same head",
            lib_head * 1e6,
            heads=HEADS,
            same_bytes=same,
        )
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve_forever(int(sys.argv[2]))
    else:
        main()
