"""Training runs as the train and audit DAGs see them: run folders, commands, checkpoints.

A training run started by ``openwit_train`` lives in ``RUNS/<model>-<digest>``, the digest
taken over the shards, the build's config hash and the params that shape the run. A retry,
a rerun after a scheduler restart, or the same dataset published again therefore lands in
the same folder and resumes from ``checkpoints/latest.pt`` (``--resume auto``); another
dataset or other training params start a run of their own. ``RUNS`` is a folder or a
bucket prefix (``s3://bucket/runs``): ``openwit train`` uploads a run there as it goes.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from openwit import fs
from openwit.config import json_hash
from openwit.errors import UserError

#: Params that change what a run computes; they name its folder.
RUN_KEYS = ("model", "steps", "epochs", "batch_size", "precision", "nproc", "lr", "seed")
#: Params the train command takes (the rest only choose shards, sets and folders).
TRAIN_KEYS = (*RUN_KEYS, "save_every", "workers", "device")
PRECISIONS = ("fp32", "bf16", "fp16", "amp")


def run_dir_for(
    runs_root: str | Path, shards: str, config_hash: str | None, params: Mapping[str, Any]
) -> str:
    """The run folder (a path or a URL) of training ``params.model`` on ``shards`` (see the
    module doc)."""
    digest = json_hash(
        {"shards": shards, "config_hash": config_hash, **{k: params.get(k) for k in RUN_KEYS}}
    )[:12]
    model = re.sub(r"[^A-Za-z0-9._-]+", "_", str(params["model"]))
    return fs.join(fs.absolute(runs_root), f"{model}-{digest}")


def check_train_params(params: Mapping[str, Any]) -> None:
    """The checks the params' JSON schema cannot express; :class:`UserError` on a problem."""
    if (params.get("steps") is None) == (params.get("epochs") is None):
        raise UserError("give exactly one of steps and epochs")
    if params.get("precision") not in PRECISIONS:
        raise UserError(f"precision: one of {', '.join(PRECISIONS)}")
    if int(params.get("nproc") or 1) < 1:
        raise UserError("nproc: at least 1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_command(
    python: str, shards: str, run_dir: str, params: Mapping[str, Any], port: int | None = None
) -> list[str]:
    """``openwit train`` resuming from the run's latest checkpoint; under torchrun (one node,
    ``nproc`` processes, rendezvous on loopback) when ``nproc`` is above one."""
    args = [
        "-m",
        "openwit.cli",
        "train",
        "--train-data",
        shards,
        "--model",
        str(params["model"]),
        "--out",
        str(run_dir),
        "--batch-size",
        str(params["batch_size"]),
        "--precision",
        str(params["precision"]),
        "--resume",
        "auto",
    ]
    if params.get("steps") is not None:
        args += ["--steps", str(params["steps"])]
    else:
        args += ["--epochs", str(params["epochs"])]
    for key, flag in (
        ("lr", "--lr"),
        ("save_every", "--save-every"),
        ("seed", "--seed"),
        ("workers", "--workers"),
        ("device", "--device"),
    ):
        if params.get(key) is not None:
            args += [flag, str(params[key])]
    nproc = int(params.get("nproc") or 1)
    if nproc == 1:
        return [python, *args]
    torchrun = [
        python,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        f"--nproc-per-node={nproc}",
        "--master-addr=127.0.0.1",
        f"--master-port={port or free_port()}",
    ]
    return [*torchrun, *args]


def eval_command(
    python: str, checkpoint: str, model: str, eval_sets: Sequence[str], out: str, device: str
) -> list[str]:
    """``openwit eval`` of a checkpoint on ``NAME=PATH`` sets, into ``out`` (eval.json)."""
    command = [python, "-m", "openwit.cli", "eval", "--checkpoint", str(checkpoint)]
    command += ["--model", model, "--out", str(out), "--device", device]
    for item in eval_sets:
        command += ["--eval", item]
    return command


def latest_checkpoint(run_dir: str | Path) -> str | None:
    location = fs.join(str(run_dir), "checkpoints", "latest.pt")
    return location if fs.is_file(location) else None


def run_model(checkpoint: str | Path) -> str | None:
    """The open_clip model name a checkpoint was trained as, from its run's config.json."""
    checkpoint = fs.absolute(checkpoint)
    try:
        return fs.read_json(fs.join(fs.parent(fs.parent(checkpoint)), "config.json")).get("model")
    except (OSError, ValueError, AttributeError):
        return None


def _same_place(a: str | None, b: str) -> bool:
    if not a:
        return False
    if "://" in a or "://" in b:
        return a.rstrip("/") == b.rstrip("/")
    return Path(a).resolve() == Path(b).resolve()


def _runs_in(root: str) -> list[str]:
    """``root`` when it is a run folder (it has config.json), else the run folders in it."""
    if fs.is_file(fs.join(root, "config.json")):
        return [root]
    if fs.is_local(root):
        folder = Path(root)
        if not folder.is_dir():
            return []
        return sorted(str(p) for p in folder.iterdir() if (p / "config.json").is_file())
    depth = root.count("/") + 2  # root/<run>/config.json
    return sorted(
        fs.parent(url)
        for url in fs.list_files(root)
        if url.endswith("/config.json") and url.count("/") == depth
    )


def newest_checkpoint(runs: str | Path, shards: str | None = None) -> tuple[str, str] | None:
    """(checkpoint, open_clip model name) of the newest run under ``runs`` -- a run folder
    or a folder of them, on disk or in a bucket -- that trained on ``shards`` (any run when
    None); None if none."""
    found = []
    for run in _runs_in(fs.absolute(runs)):
        checkpoint = latest_checkpoint(run)
        if checkpoint is None:
            continue
        try:
            config = fs.read_json(fs.join(run, "config.json"))
        except ValueError:
            continue
        if shards is not None and not _same_place(config.get("train_data"), shards):
            continue
        found.append((fs.modified(checkpoint), checkpoint, config.get("model")))
    if not found:
        return None
    _, checkpoint, model = max(found)
    return checkpoint, model


ERROR_PREFIX = "openwit: error: "


def run_streaming(command: Sequence[str], say: Any = print, grace_s: float = 30.0) -> None:
    """Run ``command``, passing each output line to ``say`` as it comes.

    The command runs in a process group of its own, so when this task is stopped (a
    timeout, a kill: any exception here) the whole group -- torchrun, its workers, their
    data loaders -- is ended with it. Exit 2 with ``openwit: error: …`` (a user mistake)
    raises :class:`UserError` with that line; any other failure ``RuntimeError``.
    """
    import os
    import signal
    import subprocess

    process = subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    last_error = ""
    try:
        assert process.stdout is not None
        for line in process.stdout:
            line = line.rstrip("\n")
            if ERROR_PREFIX in line:
                last_error = line.split(ERROR_PREFIX, 1)[1].strip()
            say(line)
        code = process.wait()
    except BaseException:
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(process.pid, sig)
                process.wait(timeout=wait)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        raise
    if code == 2 and last_error:
        raise UserError(last_error)
    if code != 0:
        raise RuntimeError(f"{Path(command[0]).name} {' '.join(command[1:4])} … exited with {code}")
