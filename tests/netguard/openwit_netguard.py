"""A last line of defence for tests: no connection or name lookup leaves 127.0.0.0/8 or ::1.

Installed in the pytest process by tests/conftest.py and in every Python subprocess a test
starts (Beam workers, torchrun, the CLI) through sitecustomize.py beside this file. A blocked
attempt raises ``ConnectionRefusedError`` / ``socket.gaierror`` in the code under test and is
appended to the file named by ``OPENWIT_NETGUARD_LOG``; conftest fails the test that caused
it. Code under test has its own guards (the downloader's URL policy); reaching this one
means a guard failed.
"""

from __future__ import annotations

import ipaddress
import os
import socket

_LOCAL_NAMES = {"localhost", "localhost.", "ip6-localhost", "ip6-loopback"}
_installed = False


def _is_loopback_host(host: object) -> bool:
    if host is None or host == "":
        return True  # bind-style lookups for the wildcard address
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _record(what: str) -> None:
    path = os.environ.get("OPENWIT_NETGUARD_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()} {what}\n")


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_sendto = socket.socket.sendto

    def guarded_getaddrinfo(host, *args, **kwargs):
        if not _is_loopback_host(host):
            _record(f"lookup {host!r}")
            raise socket.gaierror(socket.EAI_NONAME, f"test network guard: lookup of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    def _check(sock: socket.socket, address: object) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
            if not _is_loopback_host(address[0]):
                _record(f"connect {address[0]!r}")
                raise ConnectionRefusedError(f"test network guard: connect to {address[0]!r}")

    def guarded_connect(self, address):
        _check(self, address)
        return real_connect(self, address)

    def guarded_connect_ex(self, address):
        _check(self, address)
        return real_connect_ex(self, address)

    def guarded_sendto(self, data, *args):
        _check(self, args[-1])
        return real_sendto(self, data, *args)

    socket.getaddrinfo = guarded_getaddrinfo
    socket.socket.connect = guarded_connect
    socket.socket.connect_ex = guarded_connect_ex
    socket.socket.sendto = guarded_sendto
