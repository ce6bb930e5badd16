"""Ctrl-C during the download: one line, exit 130 at once, the stage failed and resumable.

The images are on a server that accepts connections and never answers, so every fetch
would wait for its whole time limit. Before, an interrupted build either printed Beam's
traceback and then waited for the launcher's download threads to drain their queue (100
URLs: 68 s), or, when the workers did the downloads, left with 130 and no word.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.candidates.test_build import write_queries
from tests.conftest import REPO


@pytest.fixture
def silent_server():
    """A TCP server on 127.0.0.1 that accepts every connection and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    listener.close()


def heeds_ctrl_c() -> None:
    """In the build's process: SIGINT as a terminal gives it. A suite started in the
    background of a shell without job control inherits SIGINT ignored, and so would the
    build (the test then timed out, 2026-12-07): the test must not depend on how the suite
    was started."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(
    "images",
    [100, 600],  # one unit, downloaded in the launcher; several, in the worker pool
)
def test_ctrl_c_during_the_download_is_one_line_and_exit_130_at_once(
    tmp_path, silent_server, images
):
    with (tmp_path / "pool.jsonl").open("w") as handle:
        for index in range(images):
            record = {"url": f"{silent_server}/{index}.jpg", "caption": f"a red dog {index}"}
            handle.write(json.dumps(record) + "\n")
    write_queries(tmp_path / "queries.parquet", ["red", "dog"])
    config = {
        "out": str(tmp_path / "out"),
        "queries": str(tmp_path / "queries.parquet"),
        "inputs": [{"path": str(tmp_path / "pool.jsonl")}],
        "text": {"min_lang_score": 0.0},
        "download": {"allow_private_networks": True, "retries": 0, "timeout_s": 60},
    }
    (tmp_path / "build.yaml").write_text(json.dumps(config))
    process = subprocess.Popen(
        [sys.executable, "-m", "openwit.cli", "build", "--config", str(tmp_path / "build.yaml")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=heeds_ctrl_c,
    )  # fmt: skip
    manifest = tmp_path / "out" / "manifest.json"
    deadline = time.monotonic() + 120
    while True:  # until the download stage has started and its fetches are waiting
        assert process.poll() is None, process.communicate()
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the download stage never started: {process.communicate()}")
        stages = json.loads(manifest.read_text())["stages"] if manifest.exists() else {}
        if stages.get("download", {}).get("status") == "running":
            break
        time.sleep(0.1)
    time.sleep(2)

    process.send_signal(signal.SIGINT)
    interrupted = time.monotonic()
    try:
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:  # failed: leave no build running behind the test
            process.kill()
            process.communicate()
    seconds = time.monotonic() - interrupted

    assert process.returncode == 130
    # Not a timing: no fetch was waited for to its 60 s limit (before, the queue drained).
    assert seconds < 30, f"{seconds:.1f} s to leave"
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-2].split() == ["download", "failed:", "interrupted"]
    assert lines[-1].startswith("openwit: interrupted (a build keeps the work units")
    entry = json.loads(manifest.read_text())
    assert entry["stages"]["download"]["status"] == "failed" and not entry["complete"]
