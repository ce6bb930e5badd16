"""Beam's portable runner on this machine: a job service and an external worker pool whose
workers share no disk with the launcher.

Shared by the portable-runner test and ``bench/bench_portable_runner.py``. The worker pool
(``apache_beam.runners.worker.worker_pool_main``) starts in a mount namespace of its own
(``unshare --mount``) where a fresh tmpfs hides the launcher's files: its temporary
directory, or all of /tmp. Workers get S3 credentials from their environment, as on a
cluster; the endpoint comes with the pipeline (``--s3_endpoint_url``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from tests.loopback import free_port, wait_for_port

REPO = Path(__file__).resolve().parent.parent


def can_unshare() -> str | None:
    """Why a mount namespace cannot be made here, or None."""
    if shutil.which("unshare") is None:
        return "no unshare command (util-linux)"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True
    )
    if probe.returncode != 0:
        return f"unshare --mount is not permitted here: {probe.stderr.decode().strip()}"
    return None


def hidden_directory(launcher_tmp: Path) -> Path:
    """What the workers' tmpfs hides: all of /tmp, unless this checkout or its Python lives
    there (a CI clone in /tmp): then the launcher's temporary directory only."""
    python = Path(sys.prefix).resolve()
    if any(Path("/tmp") in (p, *p.parents) for p in (REPO.resolve(), python)):
        return launcher_tmp
    return Path("/tmp")


def _kill(process: subprocess.Popen) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, 9)
    process.wait()


@contextmanager
def isolated_worker_pool(
    launcher_tmp: Path, scratch: Path, credentials: dict[str, str]
) -> Iterator[int]:
    """Beam's external worker pool in its own mount namespace; yields its port.

    ``launcher_tmp`` is the launcher's temporary directory (hidden from the workers, with
    a marker file in ``scratch`` that they must not see); ``credentials`` go into the
    workers' environment (never the endpoint: that travels with the pipeline)."""
    marker = scratch / "launcher-only"
    marker.write_text("the workers must not see this")
    hidden = hidden_directory(launcher_tmp)
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)  # the pool starts a bare `python`
    script = (
        f"mount -t tmpfs tmpfs {hidden} && "
        f"if [ -e {marker} ]; then echo 'the launcher is visible' >&2; exit 3; fi && "
        "cd / && "
        f"exec {sys.executable} -m apache_beam.runners.worker.worker_pool_main "
        f"--service_port={port}"
    )
    env = {**os.environ, **credentials, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("AWS_ENDPOINT_URL", None)
    log = scratch / "worker-pool.log"  # a file: a pipe nobody reads would fill and block
    with log.open("wb") as sink:
        process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        try:
            wait_for_port(port, process, "the worker pool")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}: {log.read_text()[-2000:]}") from None
        yield port
    finally:
        _kill(process)


@contextmanager
def job_service(staging: Path) -> Iterator[int]:
    """Beam's local job service (the portable runner's job endpoint); yields its port."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "apache_beam.runners.portability.local_job_service_main",
            f"--port={port}",
            f"--staging_dir={staging}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_port(port, process, "the job service")
        yield port
    finally:
        _kill(process)


def portable_flags(job_port: int, pool_port: int, s3_endpoint: str | None = None) -> list[str]:
    """``openwit build`` flags for the portable runner with the external workers (and the
    S3 endpoint, which travels with the pipeline)."""
    return [
        "--runner", "PortableRunner",
        "--beam-option", f"job_endpoint=localhost:{job_port}",
        "--beam-option", "environment_type=EXTERNAL",
        "--beam-option", f"environment_config=localhost:{pool_port}",
        *(["--beam-option", f"s3_endpoint_url={s3_endpoint}"] if s3_endpoint else []),
    ]  # fmt: skip
