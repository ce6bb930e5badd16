"""A real Airflow on loopback for one test: api-server, scheduler, dag-processor, triggerer.

Each component is its own process (LocalExecutor, SQLite metadata database in a temporary
AIRFLOW_HOME); the api-server listens on 127.0.0.1 only, and the scheduler and triggerer
skip their log servers (which would listen on every interface). :meth:`stop` ends every
process in a component's process group or carrying this AIRFLOW_HOME in its environment
-- the components, the task processes the executor forked and the pipelines they started
-- so nothing outlives the test, whatever happened in it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil

COMPONENTS = {
    "api-server": ["api-server", "--host", "127.0.0.1", "--workers", "1"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AirflowCluster:
    def __init__(self, home: Path, dags_folder: Path, extra_env: dict[str, str]) -> None:
        self.home = home
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            **extra_env,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "socket.gethostname",  # no DNS lookup
            "AIRFLOW__API__BASE_URL": self.base,
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_SEC": "5",
        }
        self.processes: dict[str, subprocess.Popen] = {}
        self._token: str | None = None

    # -- processes -----------------------------------------------------------------------
    def airflow(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )

    def start(self) -> AirflowCluster:
        self.home.mkdir(parents=True, exist_ok=True)
        self.airflow("db", "migrate", timeout=300)
        for name, args in COMPONENTS.items():
            log = open(self.home / f"{name}.log", "wb")  # noqa: SIM115 - closed by the child
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "airflow", *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log.close()
        return self

    def ours(self) -> list[psutil.Process]:
        """Every live process started for this cluster: in a component's process group, or
        carrying our AIRFLOW_HOME. (The environment alone misses some: the executor's
        workers rename themselves with setproctitle, which overwrites the memory
        /proc/PID/environ reads, so an idle LocalExecutor worker shows no environment.)"""
        groups = {process.pid for process in self.processes.values()}
        found = []
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError):
                if process.pid == os.getpid():
                    continue
                in_group = os.getpgid(process.pid) in groups
                if in_group or process.environ().get("AIRFLOW_HOME") == str(self.home):
                    found.append(process)
        return found

    def stop(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
        for process in self.processes.values():  # what ignored SIGTERM (an idle worker)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        leftovers = self.ours()
        for process in leftovers:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(leftovers, timeout=10)
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)

    def __enter__(self) -> AirflowCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def logs(self, tail: int = 4000) -> str:
        parts = []
        for name in COMPONENTS:
            path = self.home / f"{name}.log"
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"--- {name} ---\n{text[-tail:]}")
        return "\n".join(parts)

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}\n{self.logs()}")

    # -- REST API --------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data, headers, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def wait(self, what: str, probe: Any, deadline: float, every: float = 2.0) -> Any:
        """Call ``probe`` until it returns something truthy; fail with the logs at the
        deadline (a ``time.monotonic()`` value) or when a component died."""
        while True:
            self.check_alive()
            with contextlib.suppress(urllib.error.URLError, ConnectionError, OSError):
                result = probe()
                if result:
                    return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"gave up waiting for {what}\n{self.logs()}")
            time.sleep(every)

    def login(self, deadline: float) -> None:
        def token() -> str | None:
            return self.request("GET", "/auth/token").get("access_token")

        self._token = self.wait("the api-server", token, deadline)

    def wait_for_dags(self, dag_ids: list[str], deadline: float) -> None:
        def parsed() -> bool:
            found = self.request("GET", "/api/v2/dags?limit=100")["dags"]
            return set(dag_ids) <= {d["dag_id"] for d in found}

        self.wait(f"the dag-processor to parse {dag_ids}", parsed, deadline)

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        run = self.request(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf}
        )
        return run["dag_run_id"]

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns")["dag_runs"]

    def wait_for_run(self, dag_id: str, deadline: float, run_id: str | None = None) -> dict:
        """The run (``run_id``, or the first one) once it has finished."""

        def finished() -> dict | None:
            for run in self.runs(dag_id):
                if run_id in (None, run["dag_run_id"]) and run["state"] in ("success", "failed"):
                    return run
            return None

        return self.wait(f"a finished run of {dag_id}", finished, deadline)

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        return {t["task_id"]: t["state"] for t in self.request("GET", path)["task_instances"]}
