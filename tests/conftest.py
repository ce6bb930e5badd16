"""Shared test set-up: the loopback-only network guard and small helpers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NETGUARD_DIR = REPO / "tests" / "netguard"
sys.path.insert(0, str(NETGUARD_DIR))

import openwit_netguard  # noqa: E402

os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(NETGUARD_DIR), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
)
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# Builds in tests run in the test process (in_memory) unless a test asks for openwit's local
# worker pool: starting one per build would add seconds to each of the suite's many small
# builds. tests/foundation/test_workers.py and the runner-independence tests use the pool.
os.environ.setdefault("OPENWIT_WORKERS", "0")
openwit_netguard.install()


@pytest.fixture(autouse=True)
def no_traffic_outside_loopback(tmp_path_factory: pytest.TempPathFactory):
    """Fail the test if it (or a subprocess it started) tried to leave loopback."""
    log = tmp_path_factory.mktemp("netguard") / "attempts.log"
    os.environ["OPENWIT_NETGUARD_LOG"] = str(log)
    yield
    os.environ.pop("OPENWIT_NETGUARD_LOG", None)
    if log.exists() and log.read_text().strip():
        pytest.fail(f"network traffic outside loopback was attempted:\n{log.read_text()}")
