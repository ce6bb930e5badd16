"""Helpers of the Airflow tests: is Airflow here, a migrated AIRFLOW_HOME, the driver."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_FOLDER = REPO / "airflow_dags"
DRIVER = Path(__file__).with_name("driver.py")

AIRFLOW_INSTALLED = importlib.util.find_spec("airflow") is not None
# CI installs the `airflow` extra (make test): there a missing Airflow is a failure.
requires_airflow = pytest.mark.skipif(
    not AIRFLOW_INSTALLED and not os.environ.get("CI"),
    reason="Airflow is not installed (pip install -e '.[airflow]'; make test installs it)",
)


def airflow_settings(home: Path, **extra: str) -> dict[str, str]:
    """Airflow and openwit settings of a test deployment in ``home`` (retries 1 s apart)."""
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAG_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "OPENWIT_AIRFLOW_RETRY_DELAY_S": "1",
        # Airflow's default resolves this machine's name (a DNS lookup the tests' network
        # guard refuses); the bare name is all a one-machine deployment needs.
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "socket.gethostname",
        "NO_ALBUMENTATIONS_UPDATE": "1",
        **extra,
    }


def migrate(settings: dict[str, str]) -> None:
    Path(settings["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env={**os.environ, **settings},
        check=True,
        capture_output=True,
        timeout=300,
    )


def run_driver(settings: dict[str, str], out: Path, *args: str, timeout: float = 480) -> Any:
    """Run driver.py with ``args`` (see its doc); returns its JSON. Its processes log any
    traffic attempt outside loopback to a file of their own (module fixtures run outside
    the per-test guard), which must stay empty."""
    guard_log = out.with_suffix(".netguard")
    result = subprocess.run(
        [sys.executable, str(DRIVER), *args, str(out)],
        env={**os.environ, **settings, "OPENWIT_NETGUARD_LOG": str(guard_log)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    log = out.with_suffix(".log")
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise AssertionError(
            f"driver {args[:2]} failed ({result.returncode}):\n{log.read_text()[-6000:]}"
        )
    attempts = guard_log.read_text() if guard_log.exists() else ""
    assert not attempts.strip(), f"network traffic outside loopback was attempted:\n{attempts}"
    return json.loads(out.read_text())


def run_dag(settings: dict[str, str], out: Path, dag_id: str, conf: dict[str, Any]) -> Any:
    """``dag.test(run_conf=conf)`` of ``dag_id``; its log is ``out`` with .log."""
    return run_driver(settings, out, "test", dag_id, json.dumps(conf))
