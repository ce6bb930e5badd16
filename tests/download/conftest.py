"""Fixtures of the download tests: the fault server and client settings with short budgets."""

from __future__ import annotations

import pytest

from tests.download.servers import FaultServer, add_fault_routes


@pytest.fixture(scope="module")
def faults():
    """A loopback server with every fault route; yields ``(server, {name: url})``."""
    with FaultServer() as server:
        yield server, add_fault_routes(server)
