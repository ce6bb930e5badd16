"""Connection reuse (HTTP keep-alive) in the fetch client: when a connection is reused,
when it is not, and that a reused one is as bounded and as checked as a fresh one.

Every server listens on 127.0.0.1; connectors here refuse any other address.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import ssl
import subprocess
import time

import pytest

from openwit.config import BuildConfig, DownloadConfig
from openwit.pipeline.download.fetch.client import Fetched, FetchFailed, HttpClient
from openwit.pipeline.download.fetch.policy import BlockedUrl, UrlPolicy
from openwit.pipeline.download.fetch.pool import ConnectionPool
from openwit.pipeline.download.stage import DownloadStage
from tests.download.servers import FaultServer, RecordingNetwork, Route, photo

JPEG = {"Content-Type": "image/jpeg"}
BODIES = {f"/img/{i}.jpg": photo(160 + i, 120, seed=i) for i in range(5)}
LOCAL = ipaddress.ip_address("127.0.0.1")
OTHER = ipaddress.ip_address("127.0.0.2")


def client_for(network: RecordingNetwork | None = None, **settings) -> HttpClient:
    base = {"timeout_s": 2.0, "retry_backoff_s": 0.05}
    network = network or RecordingNetwork()
    return HttpClient(
        DownloadConfig(**{**base, **settings}),
        UrlPolicy(True, network.resolve),
        connector=network.connect,
    )


@pytest.fixture
def server():
    """An HTTP/1.1 server that keeps connections alive, with five images."""
    with FaultServer("HTTP/1.1") as keep_alive:
        for path, body in BODIES.items():
            keep_alive.add(path, Route(body=body, headers=JPEG))
        yield keep_alive


def fetch_images(client: HttpClient, server: FaultServer, count: int, path: str = "") -> None:
    for i in range(count):
        image = path or f"/img/{i % len(BODIES)}.jpg"
        result = client.fetch(server.url(image))
        assert isinstance(result, Fetched), result
        assert result.body == server.routes[image].body and result.attempts == 1


@pytest.mark.parametrize(
    ("keep_alive", "connections", "header"), [(True, 1, "keep-alive"), (False, 20, "close")]
)
def test_sequential_fetches_share_one_connection(server, keep_alive, connections, header):
    client = client_for(keep_alive=keep_alive)
    fetch_images(client, server, 20)
    assert server.connections == connections
    assert {headers["Connection"] for _, headers in server.requests} == {header}
    assert len(client.pool) == (1 if keep_alive else 0)


def test_a_server_closing_after_each_answer_without_saying_so(server):
    server.add(
        "/close.jpg", Route(body=BODIES["/img/0.jpg"], headers=JPEG, action="send_then_close")
    )
    fetch_images(client_for(retries=0), server, 10, "/close.jpg")
    assert server.connections == 10


def test_a_request_on_a_connection_the_server_closed_meanwhile_is_sent_again(server):
    # The server drops a kept-alive connection when the next request arrives on it, as
    # one does that closes an idle connection just as the request is sent: the client
    # sends it once more on a fresh connection, as the same attempt, without a rejection.
    server.add("/drop.jpg", Route(body=BODIES["/img/1.jpg"], headers=JPEG, action="drop_reused"))
    fetch_images(client_for(retries=0), server, 10, "/drop.jpg")
    assert server.connections == 10
    assert server.hits("/drop.jpg") == 19  # 9 dropped, each sent again


def test_error_answers_and_redirects_do_not_keep_their_connection(server):
    server.add("/gone.jpg", Route(404, body=b"not here", headers={"Content-Type": "text/plain"}))
    server.add("/moved.jpg", Route(302, headers={"Location": "/img/0.jpg"}))
    client = client_for(retries=0)
    assert client.fetch(server.url("/gone.jpg")).reason == "http_404"
    fetch_images(client, server, 1)
    assert server.connections == 2  # the 404's connection was closed, not reused
    result = client.fetch(server.url("/moved.jpg"))  # the 302 uses the kept connection,
    assert isinstance(result, Fetched) and result.body == BODIES["/img/0.jpg"]
    assert server.connections == 3  # which is then closed: the image comes on a new one
    fetch_images(client, server, 1)
    assert server.connections == 3


def test_a_reused_connection_is_still_cut_at_the_time_budget(server):
    server.add("/drip.jpg", Route(body=BODIES["/img/0.jpg"][:200], headers=JPEG, action="drip"))
    server.add("/header-drip", Route(action="header_drip"))
    client = client_for(timeout_s=1.0, retries=0)
    for path, reason, connections in (("/drip.jpg", "too_slow", 1), ("/header-drip", "timeout", 2)):
        fetch_images(client, server, 1)
        assert len(client.pool) == 1
        started = time.monotonic()
        result = client.fetch(server.url(path))
        assert isinstance(result, FetchFailed) and result.reason == reason, result
        assert time.monotonic() - started < 1.0 + 1.5
        # on the kept connection, and no second connection after the time ran out
        assert server.connections == connections
        assert len(client.pool) == 0


def test_a_connection_idle_longer_than_the_limit_is_not_reused(server):
    client = client_for()
    client.pool.idle_s = 0.3
    fetch_images(client, server, 2)
    assert server.connections == 1
    time.sleep(0.5)
    fetch_images(client, server, 1)
    assert server.connections == 2


def test_a_kept_connection_to_an_address_not_approved_now_is_not_used(server):
    port = server.httpd.server_address[1]
    network = RecordingNetwork({"img.test": ["127.0.0.1"]})
    tried: list[str] = []

    def only_local(address, port, timeout):  # nothing but the test server's address
        tried.append(str(address))
        if address != LOCAL:
            raise ConnectionRefusedError(f"test: no connection to {address}")
        return network.connect(address, port, timeout)

    client = HttpClient(
        DownloadConfig(timeout_s=2.0, retries=0), UrlPolicy(True, network.resolve), only_local
    )
    url = f"http://img.test:{port}/img/0.jpg"
    assert isinstance(client.fetch(url), Fetched)
    network.names["img.test"] = ["127.0.0.2"]  # the name moved: the kept connection is not it
    assert client.fetch(url).reason == "connection_error"
    assert tried == ["127.0.0.1", "127.0.0.2"]
    assert server.hits("/img/0.jpg") == 1 and len(client.pool) == 1
    network.names["img.test"] = ["127.0.0.1"]
    assert isinstance(client.fetch(url), Fetched)
    assert server.connections == 1 and tried == ["127.0.0.1", "127.0.0.2"]


def test_a_kept_connection_the_policy_refuses_now_is_closed_not_used(server):
    client = client_for()
    fetch_images(client, server, 1)
    refused = []

    def refuse(address):
        refused.append(address)
        raise BlockedUrl("blocked_url", "test")

    client.policy.check_address = refuse
    target = client.policy.parse(server.url("/img/0.jpg"))
    assert client._reusable(target, [LOCAL]) is None
    assert refused == [LOCAL] and len(client.pool) == 0


def test_the_pool_takes_only_the_key_and_addresses_asked_for():
    pool = ConnectionPool()
    mine, theirs = socket.socketpair()
    key = ("http", "img.test", 80)
    pool.put(key, mine, LOCAL)
    assert pool.take(key, [OTHER]) is None
    assert pool.take(("https", "img.test", 80), [LOCAL]) is None
    assert pool.take(("http", "other.test", 80), [LOCAL]) is None
    assert pool.take(("http", "img.test", 8080), [LOCAL]) is None
    assert len(pool) == 1 and mine.fileno() != -1  # left for a fetch that may use it
    assert pool.take(key, [OTHER, LOCAL]) == (mine, LOCAL)
    assert len(pool) == 0
    mine.close()
    theirs.close()


def test_the_pool_limits_and_closes():
    pairs = [socket.socketpair() for _ in range(6)]
    pool = ConnectionPool(max_per_key=2, max_total=3)
    a, b = ("http", "a.test", 80), ("http", "b.test", 80)
    for sock, _ in pairs[:3]:
        pool.put(a, sock, LOCAL)  # the oldest of a is closed for the third
    assert pairs[0][0].fileno() == -1 and len(pool) == 2
    pool.put(b, pairs[3][0], LOCAL)
    pool.put(b, pairs[4][0], LOCAL)  # four in all: the oldest (of a) is closed
    assert pairs[1][0].fileno() == -1 and len(pool) == 3
    assert pool.take(b, [LOCAL]) == (pairs[4][0], LOCAL)  # newest first
    pairs[2][1].close()  # the server closed a's last one while it was idle
    assert pool.take(a, [LOCAL]) is None and pairs[2][0].fileno() == -1
    pool.idle_s = 0.0
    time.sleep(0.01)
    assert pool.take(b, [LOCAL]) is None and pairs[3][0].fileno() == -1  # expired
    pool.idle_s = 4.0
    pool.put(a, pairs[5][0], LOCAL)
    pool.close()
    assert pairs[5][0].fileno() == -1 and len(pool) == 0
    pairs[4][0].close()
    for _, theirs in pairs:
        theirs.close()


@pytest.mark.parametrize(
    "setting",
    [
        {"keep_alive": False},
        {"contact": "mailto:data@example.org"},
        {"threads_per_worker": 4},
        {"per_host_concurrency": 2, "per_host_requests_per_s": 1.0},
    ],
)
def test_operational_settings_do_not_change_the_fingerprint(setting):
    """A setting about speed or politeness reruns nothing, and a resumed download keeps its
    units (the runner resumes an attempt whose fingerprint is unchanged)."""
    on = BuildConfig.model_validate({})
    changed = BuildConfig.model_validate({"download": setting})
    assert DownloadStage().fingerprint(on) == DownloadStage().fingerprint(changed)
    connection = HttpClient(changed.download, UrlPolicy(True))._headers()["Connection"]
    assert connection == ("close" if "keep_alive" in setting else "keep-alive")


def test_a_setting_that_changes_what_is_kept_changes_the_fingerprint():
    on = BuildConfig.model_validate({})
    for setting in ({"max_bytes": 1000}, {"timeout_s": 3.0}, {"user_agent_token": "other"}):
        changed = BuildConfig.model_validate({"download": setting})
        assert DownloadStage().fingerprint(on) != DownloadStage().fingerprint(changed), setting


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for localhost and 127.0.0.1 (its own CA)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl command to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=localhost"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-keyout", str(key), "-out", str(cert)),
            *("-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_connections_are_reused_for_their_host_only(certificate):
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with FaultServer("HTTP/1.1", tls=context) as server:
        server.add("/img/0.jpg", Route(body=BODIES["/img/0.jpg"], headers=JPEG))
        client = client_for(retries=0)
        client.tls = ssl.create_default_context(cafile=str(cert))
        port = server.httpd.server_address[1]
        for _ in range(2):
            for host in ("127.0.0.1", "localhost"):  # one address, two names: two keys
                for _ in range(3):
                    result = client.fetch(f"https://{host}:{port}/img/0.jpg")
                    assert isinstance(result, Fetched), result
                    assert result.body == BODIES["/img/0.jpg"]
        assert server.connections == 2
        assert len(client.pool) == 2
