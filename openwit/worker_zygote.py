"""A zygote: the process the local pool's workers are forked from, which can prepare state
for a later stage's workers while earlier stages run.

Some stages build the same large object in every worker before their first unit: the match
stage's automaton of 500k queries takes about 2 s of CPU to build, in every worker at the
same moment, so on any number of cores it adds 2 s to the stage. The zygote, forked from
the launcher once it has imported Beam and the stages (:mod:`openwit.worker_fork`), builds
such objects once, in a thread of the lowest priority (it takes the CPU the workers leave
idle: the launcher's planning between passes), and when the stage starts the pool forks
its workers anew from the zygote: they start with the object built, sharing its pages.

The launcher talks to the zygote over a socket pair, a JSON line per request:
``prepare`` (call ``module:function`` with arguments), ``fork`` (``count`` new workers;
the reply is their pids and ports) and ``stop`` (close those workers' pipes: they leave).
The zygote holds the write end of each worker's pipe, and leaves when the launcher does
(end of file on its socket), closing them all: no worker outlives the launcher.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

from openwit import worker_fork
from openwit.errors import WorkerLost

#: The longest a refresh waits for the zygote to finish what it prepares (a build of 500k
#: queries takes about 2 s); past it the stage keeps its workers, which build it themselves.
PREPARE_WAIT_S = 120.0
#: What a lost zygote is called in the error a user reads.
ZYGOTE = "the process the workers are forked from in openwit's local pool"


class ZygoteWorker(worker_fork.WorkerProcess):
    """A worker forked by the zygote (the launcher's grandchild); the zygote stops it."""

    stdin = stdout = None

    def __init__(self, pid: int, port: int) -> None:
        self.pid, self.port = pid, port

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                state = "gone"
            if state in ("Z", "X", "gone"):
                self.returncode = 0
        return self.returncode


class Zygote:
    """The launcher's handle on its zygote process (check :func:`worker_fork.can_fork`)."""

    def __init__(self) -> None:
        launcher_end, zygote_end = socket.socketpair()
        pid = worker_fork.fork_process(
            lambda: _zygote_main(zygote_end), close_in_child=(launcher_end,)
        )
        zygote_end.close()
        worker_fork.note_launcher_end(launcher_end)
        self.process, self.socket = worker_fork.ChildProcess(pid), launcher_end
        self.reader, self.writer = launcher_end.makefile("r"), launcher_end.makefile("w")
        #: Whether something was prepared since the last workers were forked.
        self.prepared = False

    def _send(self, request: dict[str, Any]) -> None:
        self.writer.write(json.dumps(request) + "\n")
        self.writer.flush()

    def prepare(self, target: str, args: list[Any], fs_options: dict[str, Any]) -> None:
        self._send({"op": "prepare", "target": target, "args": args, "fs": fs_options})
        self.prepared = True

    def fork(self, count: int) -> list[ZygoteWorker] | None:
        """``count`` new workers, once what is being prepared is done; None when that is
        still not done after ``PREPARE_WAIT_S`` (the workers build it themselves then)."""
        self._send({"op": "fork", "count": count})
        line = self.reader.readline()
        if not line:
            raise WorkerLost.of(ZYGOTE, self.pid, self.process.poll())
        reply = json.loads(line)
        if reply.get("busy"):
            return None
        self.prepared = False
        return [ZygoteWorker(pid, port) for pid, port in zip(reply["pids"], reply["ports"])]

    def stop(self, pids: list[int]) -> None:
        self._send({"op": "stop", "pids": pids})

    def close(self) -> None:
        """End of file for the zygote: it stops its workers and leaves."""
        for handle in (self.writer, self.reader, self.socket):
            with contextlib.suppress(OSError):
                handle.close()
        worker_fork.wait_or_kill(self.process, 10)

    @property
    def pid(self) -> int:
        return self.process.pid


def _zygote_main(commands: socket.socket) -> None:
    worker_fork.note_launcher_end(commands)  # the workers close their copies
    reader, writer = commands.makefile("r"), commands.makefile("w")
    workers: dict[int, worker_fork.ForkedWorker] = {}
    stopped: list[worker_fork.ForkedWorker] = []
    preparing: threading.Thread | None = None
    for line in reader:  # ends when the launcher is gone or done
        request = json.loads(line)
        if request["op"] == "prepare":
            if preparing is not None:
                preparing.join()
            preparing = threading.Thread(target=_prepare, args=(request,), daemon=True)
            preparing.start()
        elif request["op"] == "fork":
            if preparing is not None:  # fork from one thread only, with the work done
                preparing.join(PREPARE_WAIT_S)
                if preparing.is_alive():  # stuck (a bucket that does not answer?)
                    writer.write(json.dumps({"busy": True}) + "\n")
                    writer.flush()
                    continue
                preparing = None
            forked = worker_fork.fork_workers(request["count"])
            ports = [worker_fork.read_port(worker) for worker in forked]
            workers.update((worker.pid, worker) for worker in forked)
            pids = [worker.pid for worker in forked]
            writer.write(json.dumps({"pids": pids, "ports": ports}) + "\n")
            writer.flush()
        elif request["op"] == "stop":
            for pid in request["pids"]:
                worker = workers.pop(pid, None)
                if worker is not None:
                    worker.close()
                    stopped.append(worker)
        stopped = [worker for worker in stopped if worker.poll() is None]  # reap
    for worker in [*workers.values(), *stopped]:
        worker.close()
    for worker in [*workers.values(), *stopped]:
        worker_fork.wait_or_kill(worker, 5)


def _prepare(request: dict[str, Any]) -> None:
    """Call the request's ``module:function``, at the lowest priority of this thread (Linux
    gives each thread its own). Best effort: on failure the workers build it themselves."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    try:
        from openwit import fs

        fs.configure(request["fs"])
        module, function = request["target"].split(":")
        getattr(importlib.import_module(module), function)(*request["args"])
    except Exception:  # the stage's workers build it themselves, and meet any error there
        logging.getLogger(__name__).debug("preparing %s failed", request["target"], exc_info=True)
