"""The HTTP client on the wire: the request it sends, and every way a body can end.

A raw TCP server on 127.0.0.1 answers each connection with a scripted list of writes and
pauses, so tests control where the body is cut, how it is split and how slowly it comes.
"""

from __future__ import annotations

import gzip
import ipaddress
import re
import socket
import threading
import time
import zlib

import pytest

from openwit import __version__
from openwit.config import DownloadConfig
from openwit.pipeline.download.fetch import policy as policy_module
from openwit.pipeline.download.fetch.client import (
    TIMEOUT_SLACK_S,
    Fetched,
    FetchFailed,
    HttpClient,
    user_agent,
)
from openwit.pipeline.download.fetch.deadline import Watchdog
from openwit.pipeline.download.fetch.policy import BlockedUrl, UrlPolicy
from tests.download.servers import RecordingNetwork

JPEG = b"\xff\xd8\xff" + bytes(range(256)) * 200  # 51 kB


class ScriptedServer:
    """Answers every connection with ``script``: bytes to send, or a float to sleep."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self.listener.getsockname()[1]
        self.script: list[bytes | float] = []
        self.requests: list[bytes] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def url(self, path: str = "/a.jpg") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(65536)
                if not data:
                    return
                head += data
            self.requests.append(head)
            try:
                for step in self.script:
                    if isinstance(step, float):
                        if self.stop.wait(step):
                            return
                    else:
                        conn.sendall(step)
            except OSError:
                return  # the client gave up, as it should

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


@pytest.fixture
def server():
    scripted = ScriptedServer()
    yield scripted
    scripted.close()


def head(*lines: str) -> bytes:
    return ("\r\n".join(["HTTP/1.0 200 OK", *lines]) + "\r\n\r\n").encode("latin-1")


def client(**settings) -> HttpClient:
    base = {"timeout_s": 2.0, "retries": 0}
    network = RecordingNetwork()
    return HttpClient(DownloadConfig(**{**base, **settings}), UrlPolicy(True), network.connect)


def test_each_request_says_what_the_download_section_says_now(server):
    """The section is a config model that accepts (validated) assignments: a request
    carries the User-Agent (with the contact) and Connection of that moment."""
    server.script = [head("Content-Type: image/jpeg", f"Content-Length: {len(JPEG)}"), JPEG]
    fetcher = client()
    assert isinstance(fetcher.fetch(server.url("/a.jpg")), Fetched)
    fetcher.download.contact = "mailto:data@example.org"
    fetcher.download.keep_alive = False
    assert isinstance(fetcher.fetch(server.url("/b.jpg")), Fetched)
    first, second = server.requests
    host = f"Host: 127.0.0.1:{server.port}\r\n".encode()
    assert first.startswith(b"GET /a.jpg HTTP/1.1\r\n" + host)
    assert f"User-Agent: {user_agent(__version__, 'openwit')}\r\n".encode() in first
    assert b"Connection: keep-alive\r\n" in first
    agent = user_agent(__version__, "openwit", "mailto:data@example.org")
    assert f"User-Agent: {agent}\r\n".encode() in second
    assert b"Connection: close\r\n" in second


class OrderWatchdog(Watchdog):
    """Records, for every alarm disarmed, whether its socket was already closed."""

    def __init__(self) -> None:
        super().__init__()
        self.closed_before_disarm: list[bool] = []

    def disarm(self, alarm) -> None:
        if alarm.sock is not None:
            self.closed_before_disarm.append(alarm.sock.fileno() == -1)
        super().disarm(alarm)


def test_a_socket_is_closed_only_after_its_watchdog_alarm_is_disarmed(server):
    """A socket closed while its alarm is armed frees its number for another connection,
    which the watchdog could then shut down. http.client closes a connection whose answer
    is its last, or whose answer failed: here it must leave that to the client."""
    watchdog = OrderWatchdog()
    download = DownloadConfig(timeout_s=2.0, retries=0)
    fetcher = HttpClient(download, UrlPolicy(True), RecordingNetwork().connect, None, watchdog)
    server.script = [head("Content-Type: image/jpeg", f"Content-Length: {len(JPEG)}"), JPEG]
    assert isinstance(fetcher.fetch(server.url()), Fetched)  # HTTP/1.0: the last answer
    server.script = []  # the server hangs up without an answer
    assert fetcher.fetch(server.url()).reason == "connection_error"
    assert len(watchdog.closed_before_disarm) == 2
    assert not any(watchdog.closed_before_disarm)


def test_paths_a_browser_encodes_go_out_percent_encoded(server):
    server.script = [head("Content-Type: image/jpeg", f"Content-Length: {len(JPEG)}"), JPEG]
    fetcher = client()
    for path in ("/img/ünï.jpg", "/a b.jpg?q=é x", "/\x01.jpg"):
        result = fetcher.fetch(server.url(path))
        assert isinstance(result, Fetched) and result.body == JPEG, result
        assert result.url == server.url(path)  # the URL as given, not as sent
    lines = [request.split(b"\r\n", 1)[0] for request in server.requests]
    assert lines == [
        b"GET /img/%C3%BCn%C3%AF.jpg HTTP/1.1",
        b"GET /a%20b.jpg?q=%C3%A9%20x HTTP/1.1",
        b"GET /%01.jpg HTTP/1.1",
    ]


def redirect(location: bytes) -> bytes:
    return b"HTTP/1.0 302 Found\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize("location", [b"http://[::1", b"http://[::1/a.jpg", b"http://a:b:c/"])
def test_a_redirect_to_a_malformed_location_is_an_invalid_url(server, location):
    server.script = [redirect(location)]
    result = client().fetch(server.url())
    assert isinstance(result, FetchFailed)
    assert result.reason == "invalid_url", result.detail
    assert location.decode() in result.detail


def test_a_redirect_to_a_utf8_location_follows_it_encoded(server):
    server.script = [redirect("/ünï.jpg".encode())]
    result = client(max_redirects=1).fetch(server.url())
    assert (result.reason, result.detail) == ("too_many_redirects", "more than 1")
    assert server.requests[1].startswith(b"GET /%C3%BCn%C3%AF.jpg HTTP/1.1\r\n")


def encoded(body: bytes, coding: str) -> bytes:
    return (
        head(
            "Content-Type: image/jpeg",
            f"Content-Encoding: {coding}",
            f"Content-Length: {len(body)}",
        )
        + body
    )


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        ("gzip", gzip.compress(JPEG)),
        ("x-gzip", gzip.compress(JPEG)),
        ("GZIP", gzip.compress(JPEG[:9]) + gzip.compress(JPEG[9:])),  # two gzip members
        ("deflate", zlib.compress(JPEG)),
        ("deflate", zlib.compress(JPEG)[2:-4]),  # raw deflate, as some servers send it
        ("identity", JPEG),
        ("gzip, gzip", gzip.compress(gzip.compress(JPEG))),
    ],
)
def test_an_encoded_body_is_decoded(server, coding, body):
    server.script = [encoded(body, coding)]
    result = client().fetch(server.url())
    assert isinstance(result, Fetched), result
    assert result.body == JPEG


def test_a_compression_bomb_is_refused_without_decoding_it_all(server):
    bomb = gzip.compress(b"\0" * 50_000_000, 9)  # 50 MB in about 50 kB
    server.script = [encoded(bomb, "gzip")]
    result = client(max_bytes=1_000_000).fetch(server.url())
    assert isinstance(result, FetchFailed)
    assert (result.reason, result.detail) == (
        "too_large",
        f"gzip body of {len(bomb):,} bytes decodes past 1,000,000 bytes",
    )
    # the cap counts decoded bytes: the same image fits one cap and not a smaller one
    server.script = [encoded(gzip.compress(JPEG), "gzip")]
    assert isinstance(client(max_bytes=len(JPEG)).fetch(server.url()), Fetched)
    assert client(max_bytes=len(JPEG) - 1).fetch(server.url()).reason == "too_large"


@pytest.mark.parametrize(
    ("coding", "body", "reason"),
    [
        ("gzip", gzip.compress(JPEG)[:-200], "incomplete_body"),
        ("gzip", JPEG, "bad_response"),  # said gzip, is not
        ("gzip", gzip.compress(JPEG) + b"trailing junk", "bad_response"),
        ("br", JPEG, "unsupported_encoding"),
    ],
)
def test_a_body_that_does_not_decode_is_refused_with_a_reason(server, coding, body, reason):
    server.script = [encoded(body, coding)]
    result = client().fetch(server.url())
    assert isinstance(result, FetchFailed)
    assert result.reason == reason, result.detail
    assert coding in result.detail


@pytest.mark.parametrize("pieces", [1, 2, 7])
def test_a_body_in_pieces_arrives_whole(server, pieces):
    size = -(-len(JPEG) // pieces)
    parts = [JPEG[i : i + size] for i in range(0, len(JPEG), size)]
    script: list[bytes | float] = [head("Content-Type: image/jpeg", f"Content-Length: {len(JPEG)}")]
    for part in parts:  # pauses longer than the timeout slack: the socket timeout is renewed
        script += [part, TIMEOUT_SLACK_S * 1.5]
    server.script = script
    result = client().fetch(server.url())
    assert isinstance(result, Fetched), result
    assert result.body == JPEG and type(result.body) is bytes
    assert result.content_type == "image/jpeg"


def test_a_body_without_content_length_is_read_to_the_end(server):
    server.script = [head("Content-Type: image/jpeg"), JPEG[:1000], 0.02, JPEG[1000:]]
    result = client().fetch(server.url())
    assert isinstance(result, Fetched) and result.body == JPEG


def test_a_chunked_body_is_read(server):
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (JPEG[:5000], JPEG[5000:]))
    server.script = [
        head("Content-Type: image/jpeg", "Transfer-Encoding: chunked").replace(
            b"HTTP/1.0", b"HTTP/1.1"
        ),
        chunks + b"0\r\n\r\n",
    ]
    result = client().fetch(server.url())
    assert isinstance(result, Fetched) and result.body == JPEG


def test_a_body_cut_short_is_incomplete(server):
    server.script = [head("Content-Type: image/jpeg", f"Content-Length: {len(JPEG)}"), JPEG[:7000]]
    result = client().fetch(server.url())
    assert isinstance(result, FetchFailed)
    assert (result.reason, result.detail) == (
        "incomplete_body",
        f"7,000 of {len(JPEG):,} bytes",
    )


def test_an_empty_body_is_not_an_image(server):
    server.script = [head("Content-Type: image/jpeg", "Content-Length: 0")]
    result = client().fetch(server.url())
    assert (result.reason, result.detail) == ("not_an_image", "empty body")


def test_an_undeclared_body_past_the_cap_is_too_large(server):
    server.script = [head("Content-Type: image/jpeg"), JPEG]
    result = client(max_bytes=20_000).fetch(server.url())
    assert (result.reason, result.detail) == ("too_large", "body passed 20,000 bytes")


def test_a_declared_size_past_the_cap_is_refused_before_reading(server):
    server.script = [head("Content-Type: image/jpeg", f"Content-Length: {len(JPEG)}"), JPEG]
    result = client(max_bytes=20_000).fetch(server.url())
    assert result.reason == "too_large"
    assert result.detail == f"Content-Length {len(JPEG):,} > 20,000"


def test_a_trickle_ends_at_the_budget_with_the_bytes_received(server):
    server.script = [head("Content-Type: image/jpeg", f"Content-Length: {len(JPEG)}"), JPEG[:10]]
    server.script += [0.3, JPEG[10:20]] * 20
    started = time.monotonic()
    result = client(timeout_s=1.0).fetch(server.url())
    assert time.monotonic() - started < 1.0 + 1.5
    assert result.reason == "too_slow"
    assert re.fullmatch(r"\d+ bytes when the time ran out", result.detail), result.detail
    assert 10 <= int(result.detail.split()[0]) < len(JPEG)


def test_x_robots_tag_values_are_all_read(server):
    server.script = [
        head(
            "Content-Type: image/jpeg",
            "X-Robots-Tag: otherbot: noai",
            "X-Robots-Tag: noimageai",
            f"Content-Length: {len(JPEG)}",
        ),
        JPEG,
    ]
    result = client().fetch(server.url())
    assert (result.reason, result.detail) == ("opted_out", "X-Robots-Tag: noimageai")
    server.script[0] = head(
        "Content-Type: image/jpeg", "X-Robots-Tag: otherbot: noai", f"Content-Length: {len(JPEG)}"
    )
    assert isinstance(client().fetch(server.url()), Fetched)


def test_repeated_content_type_headers_are_joined_as_http_client_does(server):
    server.script = [
        head("Content-Type: image/jpeg", "Content-Type: text/html", f"Content-Length: {len(JPEG)}"),
        JPEG,
    ]
    result = client().fetch(server.url())
    assert (result.reason, result.detail) == ("not_an_image", "Content-Type image/jpeg, text/html")


def test_a_cached_authority_still_refuses_and_names_each_url():
    policy = UrlPolicy(True)
    good = policy.parse("http://Example.COM:8080/a.jpg")
    again = policy.parse("http://Example.COM:8080/b.jpg?x=1")
    assert (again.host, again.port, again.request_path) == ("example.com", 8080, "/b.jpg?x=1")
    assert (again.scheme, again.literal, again.url) == (good.scheme, None, again.url)
    for url in ("http://example.com:abc/a.jpg", "http://example.com:abc/b.jpg"):
        for _ in range(2):  # refusals are never cached: each names its own URL
            with pytest.raises(BlockedUrl) as caught:
                policy.parse(url)
            assert caught.value.reason == "invalid_url" and url in caught.value.detail


def test_names_are_resolved_again_for_every_url():
    network = RecordingNetwork({"images.example.com": ["127.0.0.1"]})
    policy = UrlPolicy(True, network.resolve)
    for _ in range(3):
        policy.check_url("http://images.example.com/a.jpg")
    assert network.lookups == ["images.example.com"] * 3  # parsing is cached, lookups never


def test_address_classes_are_the_same_from_the_cache():
    cases = ["127.0.0.1", "10.1.2.3", "169.254.169.254", "93.184.216.34", "::ffff:127.0.0.1"]
    for text in cases * 2:
        address = ipaddress.ip_address(text)
        assert policy_module.address_class(address) == policy_module.address_class.__wrapped__(
            address
        )
