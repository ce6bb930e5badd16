"""The URL policy: schemes, every spelling of an address, private networks, resolver hooks."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openwit.pipeline.download.fetch.policy import (
    BlockedUrl,
    UrlPolicy,
    address_class,
    parse_ipv4_any_spelling,
)
from tests.download.servers import RecordingNetwork

#: A public-looking name that resolves to loopback: a DNS-rebinding attacker's setup.
NAMES = {
    "images.example.com": ["127.0.0.1"],
    "cdn.example.org": ["93.184.216.34"],
    "rebind.example.net": ["93.184.216.34", "10.0.0.7"],
    "metadata.example.com": ["169.254.169.254"],
}

# (url, allowed by default, allowed with allow_private_networks)
POLICY_TABLE = [
    ("file:///etc/passwd", False, False),
    ("ftp://127.0.0.1/a.jpg", False, False),
    ("gopher://127.0.0.1/", False, False),
    ("javascript:alert(1)", False, False),
    ("http://127.0.0.1/a.jpg", False, True),
    ("http://127.8.9.10/a.jpg", False, True),
    ("http://2130706433/a.jpg", False, True),  # decimal
    ("http://0x7f.1/a.jpg", False, True),  # hex, short form
    ("http://0177.0.0.01/a.jpg", False, True),  # octal
    ("http://0x7f000001/a.jpg", False, True),
    ("http://127.1/a.jpg", False, True),
    ("http://[::1]/a.jpg", False, True),
    ("http://[::ffff:127.0.0.1]/a.jpg", False, True),  # IPv4-mapped IPv6
    ("http://[::ffff:7f00:1]/a.jpg", False, True),
    ("http://[2002:7f00:1::]/a.jpg", False, True),  # 6to4 of 127.0.0.1
    ("http://localhost/a.jpg", False, True),
    ("http://localhost./a.jpg", False, True),
    ("http://LOCALHOST:8080/a.jpg", False, True),
    ("http://images.localhost/a.jpg", False, True),
    ("http://images.example.com/a.jpg", False, True),  # resolves to 127.0.0.1
    ("http://10.0.0.1/a.jpg", False, True),
    ("http://192.168.1.20/a.jpg", False, True),
    ("http://172.16.5.4/a.jpg", False, True),
    ("http://100.64.1.1/a.jpg", False, True),  # carrier-grade NAT
    ("http://[fd00::1]/a.jpg", False, True),  # unique local
    ("http://rebind.example.net/a.jpg", False, True),  # one public, one private address
    ("http://169.254.169.254/latest/meta-data/", False, False),  # cloud metadata
    ("http://2852039166/latest/meta-data/", False, False),  # the same, decimal
    ("http://0xa9.0xfe.0xa9.0xfe/", False, False),  # the same, hex
    ("http://[::ffff:169.254.169.254]/", False, False),
    ("http://[64:ff9b::a9fe:a9fe]/", False, False),  # NAT64 of the metadata address
    ("http://metadata.example.com/", False, False),
    ("http://[fe80::1%25eth0]/a.jpg", False, False),  # link-local with zone
    ("http://0.0.0.0/a.jpg", False, False),
    ("http://0/a.jpg", False, False),
    ("http://[::]/a.jpg", False, False),
    ("http://224.0.0.1/a.jpg", False, False),  # multicast
    ("http://[ff02::1]/a.jpg", False, False),
    ("http://255.255.255.255/a.jpg", False, False),  # broadcast
    ("http://240.0.0.1/a.jpg", False, False),  # reserved
    ("http://[::127.0.0.1]/a.jpg", False, False),  # deprecated IPv4-compatible form
    ("http://93.184.216.34/a.jpg", True, True),
    ("https://cdn.example.org/a.jpg", True, True),
    ("http://[2606:4700::1111]/a.jpg", True, True),
]


def verdict(policy: UrlPolicy, url: str) -> bool:
    try:
        policy.check_url(url)
    except BlockedUrl as exc:
        assert exc.reason in ("blocked_url", "invalid_url")
        return False
    return True


@pytest.mark.parametrize(("url", "default", "private"), POLICY_TABLE)
def test_url_policy_table(url, default, private):
    network = RecordingNetwork(NAMES)
    assert verdict(UrlPolicy(False, network.resolve), url) is default
    assert verdict(UrlPolicy(True, network.resolve), url) is private
    assert network.attempts == []  # the policy only looks; it never connects


def test_blocked_urls_carry_a_reason_a_person_can_read():
    policy = UrlPolicy(False, RecordingNetwork(NAMES).resolve)
    with pytest.raises(BlockedUrl, match="link-local") as caught:
        policy.check_url("http://169.254.169.254/")
    assert caught.value.reason == "blocked_url"
    with pytest.raises(BlockedUrl, match="allow_private_networks is off"):
        policy.check_url("http://127.0.0.1/")
    with pytest.raises(BlockedUrl, match="scheme 'file'"):
        policy.check_url("file:///etc/passwd")


@pytest.mark.parametrize(
    "url",
    [
        "http://1.2.3.256/",
        "http://1.2.3.4.5/",
        "http://foo.1/",
        "http://0x100000000/",
        "http:///nohost",
        "http://a b.com/",
        "http://exa_mple..com/",
        "http://host:0/",
        "http://host:99999/",
        "",
    ],
)
def test_malformed_urls_are_invalid(url):
    with pytest.raises(BlockedUrl) as caught:
        UrlPolicy(True, RecordingNetwork(NAMES).resolve).check_url(url)
    assert caught.value.reason == "invalid_url"


def test_credentials_in_urls_are_refused():
    with pytest.raises(BlockedUrl, match="credentials"):
        UrlPolicy(True).parse("http://user:secret@127.0.0.1/a.jpg")


def test_unknown_names_are_dns_errors_and_no_real_lookup_happens():
    network = RecordingNetwork(NAMES)
    with pytest.raises(BlockedUrl) as caught:
        UrlPolicy(False, network.resolve).check_url("http://nowhere.example/a.jpg")
    assert caught.value.reason == "dns_error"
    assert network.lookups == ["nowhere.example"]


def test_numeric_hosts_never_reach_the_resolver():
    network = RecordingNetwork(NAMES)
    policy = UrlPolicy(True, network.resolve)
    for url in ("http://2130706433/", "http://0x7f.1/", "http://[::1]/", "http://localhost/"):
        policy.check_url(url)
    assert network.lookups == []


def test_target_keeps_host_port_and_path():
    target = UrlPolicy(True).parse("http://EXAMPLE.com:8080/a/b.jpg?x=1#frag")
    assert (target.host, target.port, target.request_path) == ("example.com", 8080, "/a/b.jpg?x=1")
    assert target.host_header == "example.com:8080"
    assert UrlPolicy(True).parse("https://[::1]/").host_header == "[::1]"
    assert UrlPolicy(True).parse("http://0x7f.1/").host == "127.0.0.1"


def test_international_names_become_punycode():
    target = UrlPolicy(False).parse("http://bücher.example/a.jpg")
    assert target.host == "xn--bcher-kva.example"


# -- every spelling of an IPv4 address, against the C library's own parser -----------------
def _spell(number: int, base: int) -> str:
    if base == 16:
        return hex(number)
    if base == 8:
        return "0" + format(number, "o")
    return str(number)


@st.composite
def ipv4_spellings(draw):
    value = draw(st.integers(0, 2**32 - 1))
    parts = draw(st.integers(1, 4))
    octets = list(value.to_bytes(4, "big"))
    head = octets[: parts - 1]
    tail = int.from_bytes(bytes(octets[parts - 1 :]), "big")
    numbers = [*head, tail]
    bases = draw(st.lists(st.sampled_from([8, 10, 16]), min_size=parts, max_size=parts))
    return value, ".".join(_spell(n, b) for n, b in zip(numbers, bases))


@given(ipv4_spellings())
def test_every_ipv4_spelling_parses_to_its_address(case):
    value, spelling = case
    assert parse_ipv4_any_spelling(spelling) == ipaddress.IPv4Address(value)
    assert socket.inet_aton(spelling) == value.to_bytes(4, "big")  # the C resolver agrees


@given(st.text(alphabet="0123456789abcdefx.", min_size=1, max_size=20))
def test_ipv4_parser_agrees_with_inet_aton_or_refuses(host):
    try:
        ours = parse_ipv4_any_spelling(host)
    except BlockedUrl:
        return  # refused as invalid: never fetched, whatever the C library would do
    if ours is None:
        return  # a name: it goes to the resolver and its addresses are checked
    # One trailing dot is allowed (as browsers do); inet_aton does not take it.
    assert socket.inet_aton(host.removesuffix(".")) == ours.packed


@given(st.integers(0, 2**32 - 1))
def test_ipv4_mapped_ipv6_is_judged_by_its_ipv4_address(value):
    v4 = ipaddress.IPv4Address(value)
    mapped = ipaddress.IPv6Address(f"::ffff:{v4}")
    assert address_class(mapped) == address_class(v4)


# -- URLs as browsers send them -------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "request_path"),
    [
        ("http://example.com/img/ünï.jpg", "/img/%C3%BCn%C3%AF.jpg"),
        ("http://example.com/a b.jpg?q=a b", "/a%20b.jpg?q=a%20b"),
        ("http://example.com/dir/b%20c.jpg?x=1&y=%C3%A9", "/dir/b%20c.jpg?x=1&y=%C3%A9"),
        (
            "http://example.com/файл.png?имя=значение",
            "/%D1%84%D0%B0%D0%B9%D0%BB.png?"
            "%D0%B8%D0%BC%D1%8F=%D0%B7%D0%BD%D0%B0%D1%87%D0%B5%D0%BD%D0%B8%D0%B5",
        ),
        (
            "http://example.com/<a>\"`{}'.jpg?<b>\"'`{}",
            "/%3Ca%3E%22%60%7B%7D'.jpg?%3Cb%3E%22%27`{}",
        ),
        ("http://example.com/\x01\x7f.jpg", "/%01%7F.jpg"),
        ("http://example.com/%zz%.jpg", "/%zz%.jpg"),  # a stray % is sent as written
        ("http://example.com/a\ud800.jpg", "/a%EF%BF%BD.jpg"),  # a lone surrogate: U+FFFD
        ("http://example.com/a.jpg#frag ment", "/a.jpg"),
        ("http://example.com", "/"),
        (" http://example.com/a b.jpg ", "/a%20b.jpg"),
    ],
)
def test_paths_and_queries_are_percent_encoded_as_browsers_do(url, request_path):
    target = UrlPolicy(True).parse(url)
    assert target.request_path == request_path
    assert target.request_path.isascii() and target.request_path.isprintable()
    assert target.url == url.strip()


@given(st.text(min_size=0, max_size=40).filter(lambda t: not set(t) & set("\r\n\t\x00#?")))
def test_any_path_becomes_a_plain_request_target(path):
    target = UrlPolicy(True).parse(f"http://example.com/{path}")
    assert target.request_path.startswith("/")
    assert target.request_path.isascii() and target.request_path.isprintable()
    assert " " not in target.request_path


@pytest.mark.parametrize(
    "url",
    [
        "http://１２７.０.０.１/a.jpg",  # full-width digits: IDNA maps them to 127.0.0.1
        "http://０ｘ７ｆ.１/a.jpg",
        "http://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/a.jpg",  # circled letters: "localhost"
        "http://１６９.２５４.１６９.２５４/latest/meta-data/",
        "http://%31%32%37.0.0.1/a.jpg",  # a percent-encoded host is no host we fetch
        "http://127.0.0.1%2f@example.com/",
    ],
)
def test_international_and_encoded_hosts_never_reach_private_addresses(url):
    network = RecordingNetwork(NAMES)
    assert verdict(UrlPolicy(False, network.resolve), url) is False
    assert network.lookups == [] and network.attempts == []


def test_an_international_host_that_spells_an_address_is_that_address():
    network = RecordingNetwork(NAMES)
    target = UrlPolicy(True, network.resolve).parse("http://１２７.０.０.１:8080/ü.jpg")
    assert (target.host, target.literal) == ("127.0.0.1", ipaddress.IPv4Address("127.0.0.1"))
    assert UrlPolicy(True, network.resolve).check_url("http://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/") == [
        ipaddress.IPv4Address("127.0.0.1")
    ]
    assert network.lookups == []
