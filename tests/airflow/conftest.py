"""The Airflow tests run Airflow in subprocesses only (see driver.py and cluster.py)."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(autouse=True)
def airflow_stays_out_of_the_test_process():
    """Importing Airflow configures logging and a database process-wide; the rest of the
    session must not inherit that, so no test here may import it in-process."""
    yield
    assert "airflow" not in sys.modules, "a test imported Airflow into the pytest process"
