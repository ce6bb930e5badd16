"""The HTTP client against a real loopback server: every fault gets its reason, in bounded time."""

from __future__ import annotations

import ipaddress
import itertools
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openwit import __version__
from openwit.config import DownloadConfig
from openwit.pipeline.download.fetch import policy as policy_module
from openwit.pipeline.download.fetch.client import (
    Fetched,
    FetchFailed,
    HttpClient,
    direct_connect,
    user_agent,
)
from openwit.pipeline.download.fetch.hosts import HostLimiter
from openwit.pipeline.download.fetch.policy import UrlPolicy
from openwit.pipeline.download.fetch.robots import opted_out
from tests.download.servers import RecordingNetwork, Route

BUDGET = 2.0
SLACK = 3.0  # scheduling on a loaded 2-core machine; a per-read timeout would take minutes


def client_for(network: RecordingNetwork | None = None, **settings) -> HttpClient:
    base = {"timeout_s": BUDGET, "retry_backoff_s": 0.05}
    network = network or RecordingNetwork()
    return HttpClient(
        DownloadConfig(**{**base, **settings}),
        UrlPolicy(True, network.resolve),
        connector=network.connect,
    )


FETCH_FAULTS = {
    "not_found": "http_404",
    "server_error": "http_5xx",
    "never_answers": "timeout",
    "slow_drip": "too_slow",
    "redirect_loop": "too_many_redirects",
    "redirect_metadata": "blocked_url",
    "redirect_file": "blocked_url",
    "html": "not_an_image",
    "fifty_mb": "too_large",
    "noai": "opted_out",
    "ftp": "blocked_url",
}


@pytest.mark.parametrize(("fault", "reason"), sorted(FETCH_FAULTS.items()))
def test_each_fault_is_a_rejection_with_its_reason(faults, fault, reason):
    _, urls = faults
    network = RecordingNetwork()
    started = time.monotonic()
    result = client_for(network).fetch(urls[fault])
    elapsed = time.monotonic() - started
    assert isinstance(result, FetchFailed), result
    assert result.reason == reason, result.detail
    assert elapsed < BUDGET + SLACK  # bounded by the budget, whatever the server does
    assert network.off_machine_attempts() == []


def test_a_good_image_and_a_redirect_to_it_are_fetched(faults):
    server, urls = faults
    client = client_for()
    direct = client.fetch(urls["ok"])
    redirected = client.fetch(urls["redirect_ok"])
    assert isinstance(direct, Fetched) and isinstance(redirected, Fetched)
    assert direct.body == redirected.body == server.routes["/img/ok.jpg"].body
    assert redirected.url.endswith("/img/ok.jpg")
    assert direct.content_type == "image/jpeg"


def test_500_then_200_is_retried_once(faults):
    server, urls = faults
    url = urls["retry_then_ok"] + "?case=retry"
    result = client_for().fetch(url)
    assert isinstance(result, Fetched)
    assert result.attempts == 2
    assert server.hits("/flaky.jpg") >= 2


def test_4xx_is_not_retried_and_5xx_is_retried_up_to_the_limit(faults):
    server, urls = faults
    before_404, before_503 = server.hits("/missing.jpg"), server.hits("/always-500")
    assert client_for(retries=3).fetch(urls["not_found"]).attempts == 1
    failed = client_for(retries=3).fetch(urls["server_error"])
    assert failed.reason == "http_5xx" and failed.attempts == 4
    assert server.hits("/missing.jpg") - before_404 == 1
    assert server.hits("/always-500") - before_503 == 4


def test_headers_sent_one_byte_at_a_time_still_end_at_the_budget(faults):
    server, _ = faults
    url = server.add("/header-drip", Route(action="header_drip"))
    started = time.monotonic()
    result = client_for(timeout_s=1.0).fetch(url)
    assert isinstance(result, FetchFailed) and result.reason == "timeout"
    assert time.monotonic() - started < 1.0 + SLACK


def test_declared_size_over_the_cap_is_refused_before_reading(faults):
    server, _ = faults
    url = server.add("/declared.jpg", Route(body=b"\xff\xd8\xff" + b"0" * 5000))
    result = client_for(max_bytes=1000).fetch(url)
    assert result.reason == "too_large" and "Content-Length" in result.detail


def test_redirect_count_is_limited_by_the_setting(faults):
    server, _ = faults
    for hop in range(3):
        server.add(f"/chain{hop}", Route(302, headers={"Location": f"/chain{hop + 1}"}))
    server.add("/chain3", Route(body=b"\xff\xd8\xffdata"))
    assert isinstance(client_for(max_redirects=3).fetch(server.url("/chain0")), Fetched)
    assert client_for(max_redirects=2).fetch(server.url("/chain0")).reason == "too_many_redirects"


def test_user_agent_is_descriptive_and_carries_the_contact(faults):
    server, urls = faults
    agent = user_agent("0.1.0", "openwit", "mailto:data@example.org")
    assert agent == (
        "openwit/0.1.0 (image-text dataset builder; compatible; openwit; +mailto:data@example.org)"
    )
    client_for(contact="mailto:data@example.org").fetch(urls["ok"] + "?ua=1")
    sent = [headers for path, headers in server.requests if path.endswith("?ua=1")]
    assert sent[-1]["User-Agent"] == user_agent(__version__, "openwit", "mailto:data@example.org")


def test_x_robots_tag_reading_matches_img2dataset():
    from email.message import Message

    from img2dataset.downloader import is_disallowed

    directives = ["noai", "noimageai", "noindex", "noimageindex"]
    cases = [
        ["noai"],
        ["NoImageAI"],
        ["noindex, nofollow"],
        ["nofollow"],
        ["openwit: noai"],
        ["otherbot: noai"],
        ["otherbot: noai", "noimageindex"],
        ["unavailable_after: 25 Jun 2010 15:00:00 PST"],
        [],
    ]
    for values in cases:
        headers = Message()
        for value in values:
            headers["X-Robots-Tag"] = value
        expected = is_disallowed(headers, "openwit", set(directives))
        assert (opted_out(values, "openwit", directives) is not None) == expected, values


def test_a_public_name_resolving_to_loopback_is_refused_by_default(faults):
    server, _ = faults
    port = server.httpd.server_address[1]
    network = RecordingNetwork({"images.example.com": ["127.0.0.1"]})
    url = f"http://images.example.com:{port}/img/ok.jpg"
    refused = HttpClient(DownloadConfig(), UrlPolicy(False, network.resolve), network.connect)
    assert refused.fetch(url).reason == "blocked_url"
    assert network.attempts == []
    allowed = HttpClient(DownloadConfig(), UrlPolicy(True, network.resolve), network.connect)
    result = allowed.fetch(url)
    assert isinstance(result, Fetched)
    assert network.attempts == [("127.0.0.1", port)]
    assert server.requests[-1][1]["Host"] == f"images.example.com:{port}"


def test_non_loopback_targets_never_reach_the_connector():
    network = RecordingNetwork(
        {"cdn.example.org": ["93.184.216.34"], "metadata.example.com": ["169.254.169.254"]}
    )
    client = HttpClient(
        DownloadConfig(timeout_s=1), UrlPolicy(False, network.resolve), network.connect
    )
    for url in (
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/a.jpg",
        "http://metadata.example.com/a.jpg",
        "http://0xa9fea9fe/",
    ):
        assert client.fetch(url).reason == "blocked_url"
    # A public address passes the policy and reaches the hook, which records instead of
    # connecting: this is all a test may ever do with a non-loopback address.
    assert client.fetch("http://cdn.example.org/a.jpg").reason == "connection_error"
    assert network.off_machine_attempts() == [("93.184.216.34", 80)]


def test_connect_hook_catches_what_a_broken_policy_lets_through(monkeypatch):
    network = RecordingNetwork()
    monkeypatch.setattr(policy_module, "address_class", lambda address: "public")
    client = HttpClient(DownloadConfig(timeout_s=1), UrlPolicy(False), network.connect)
    result = client.fetch("http://169.254.169.254/latest/meta-data/")
    assert result.reason == "connection_error"
    assert network.off_machine_attempts() == [("169.254.169.254", 80)]  # recorded, not sent


def test_the_peer_address_is_checked_after_connecting(faults):
    server, _ = faults
    port = server.httpd.server_address[1]

    def lying_connector(address, port, timeout):  # asked for 127.0.0.2, goes elsewhere
        return direct_connect(ipaddress.ip_address("127.0.0.1"), port, timeout)

    client = HttpClient(DownloadConfig(), UrlPolicy(True), lying_connector)
    result = client.fetch(f"http://127.0.0.2:{port}/img/ok.jpg")
    assert result.reason == "blocked_url"
    assert "connected to 127.0.0.1, not 127.0.0.2" in result.detail


def test_host_limiter_caps_requests_in_flight_per_host():
    limiter = HostLimiter(max_concurrent=2)
    peak, active, lock = [0], [0], threading.Lock()

    def work():
        with limiter.slot("example.com"):
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.02)
            with lock:
                active[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak[0] == 2
    assert limiter.in_flight("example.com") == 0


def test_host_limiter_spaces_requests_to_the_rate():
    limiter = HostLimiter(max_concurrent=10, requests_per_s=20)
    starts = []
    for _ in range(5):
        with limiter.slot("example.com"):
            starts.append(time.monotonic())
        with limiter.slot("other.example.com"):
            pass  # another host is not held back
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.045


def test_a_url_with_non_ascii_characters_is_downloaded_and_stored_as_given(faults):
    from openwit.config import ImageConfig
    from openwit.funnel import Rejection
    from openwit.pipeline.download.downloader import Downloader
    from tests.download.servers import photo

    server, _ = faults
    image = Route(body=photo(320, 240, seed=5), headers={"Content-Type": "image/jpeg"})
    server.add("/img/%C3%BCn%C3%AF%20x.jpg", image)  # the path as a browser sends it
    download = DownloadConfig(timeout_s=BUDGET, allow_private_networks=True, threads_per_worker=2)
    url = server.url("/img/ünï x.jpg")  # as Wikimedia pages link it
    outcome = Downloader(download, ImageConfig(), 1).submit({"uid": "u1", "url": url}).result()
    assert not isinstance(outcome.result, Rejection), outcome.result
    assert outcome.result["url"] == url
    assert (outcome.result["width"], outcome.result["height"]) == (256, 192)
    assert server.hits("/img/%C3%BCn%C3%AF%20x.jpg") == 1


def test_the_downloader_stores_the_hashes_of_the_bytes_it_stores(faults):
    """pHash and dHash are taken from the stored bytes, once, in the download: the same
    function the audit applies to images read back from the shards."""
    from openwit.config import ImageConfig
    from openwit.hashes.images import bytes_hashes
    from openwit.pipeline.download.downloader import Downloader
    from tests.download.servers import photo

    server, _ = faults
    server.add(
        "/img/hashed.jpg",
        Route(body=photo(640, 480, seed=9), headers={"Content-Type": "image/jpeg"}),
    )
    download = DownloadConfig(timeout_s=BUDGET, allow_private_networks=True, threads_per_worker=2)
    record = {"uid": "u1", "url": server.url("/img/hashed.jpg")}
    stored = Downloader(download, ImageConfig(), 1).submit(record).result().result
    assert (stored["phash"], stored["dhash"]) == bytes_hashes(stored["image"])


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 120), min_size=1, max_size=60),
    limit=st.integers(1, 200),
    waiting_threads=st.integers(1, 12),
)
def test_the_byte_budget_lets_every_body_through_and_holds_at_most_its_limit(
    sizes, limit, waiting_threads
):
    """Network threads wait in ``add`` while a pixel thread frees bodies one at a time (it
    wakes one waiter, and a waiter that got in wakes the next): every body gets through,
    and the bytes held never pass the limit unless one body alone does."""
    import queue

    from openwit.pipeline.download.downloader import ByteBudget

    held_after_add = []

    class Recorded(ByteBudget):
        def add(self, size: int) -> None:
            with self._changed:  # re-entrant: what ``add`` left, before anyone else moves
                super().add(size)
                held_after_add.append((self.held, size))

    budget = Recorded(limit)
    handed_over: queue.Queue[int] = queue.Queue()
    todo = iter(sizes)
    todo_lock = threading.Lock()

    def network_thread() -> None:
        while True:
            with todo_lock:
                size = next(todo, None)
            if size is None:
                return
            budget.add(size)
            handed_over.put(size)

    def pixel_thread() -> None:
        for _ in sizes:
            budget.remove(handed_over.get(timeout=10))

    threads = [threading.Thread(target=network_thread) for _ in range(waiting_threads)]
    threads.append(threading.Thread(target=pixel_thread))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not any(thread.is_alive() for thread in threads), "a thread never got through"
    assert budget.held == 0
    assert len(held_after_add) == len(sizes)
    assert all(held <= limit or held == size for held, size in held_after_add)
