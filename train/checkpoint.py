"""Checkpoints: written atomically, read with ``weights_only=True``, loadable by open_clip.

``RUN/checkpoints/step_N.pt`` and ``RUN/checkpoints/latest.pt`` hold
``{"epoch", "step", "state_dict", "optimizer", "scaler", "config", "data"}``: tensors and
plain containers only, so ``torch.load(..., weights_only=True)`` reads them, and
open_clip's loader (which takes the ``state_dict`` entry) initialises a model from one.
``latest.pt`` is a hard link to the newest step file where the file system allows it
(written once, not twice), a copy where it does not.

Each file is flushed to the disk (fsync) before it is renamed into place, and the folder
after: a power loss then leaves the old file or the new one, never a name pointing at a
truncated file. Should a file still be broken, ``--resume auto`` falls back to the newest
step file that loads, and says so. Checkpoints are read from a local run folder or from a
bucket's (``openwit.train.run_store`` uploads them there); they are written locally.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from openwit import fs
from openwit.errors import UserError
from openwit.io import atomic_path

log = logging.getLogger(__name__)

LATEST = "latest.pt"


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def _fsync(path: Path) -> None:
    """Flush a file's data, or a folder's entries, to the disk."""
    if os.name != "posix" and path.is_dir():
        return  # folders cannot be opened for fsync on Windows
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(run_dir: Path, state: dict[str, Any]) -> Path:
    """Write ``step_N.pt`` then point ``latest.pt`` at it; both appear whole or not at all,
    also across a power loss (each is on the disk before its name is)."""
    folder = checkpoint_dir(run_dir)
    step_file = folder / f"step_{state['step']}.pt"
    with atomic_path(step_file) as tmp:
        torch.save(state, tmp)
        _fsync(tmp)
    _fsync(folder)
    with atomic_path(folder / LATEST) as tmp:
        tmp.unlink()
        try:
            os.link(step_file, tmp)  # the step file's data is already on the disk
        except OSError:
            shutil.copyfile(step_file, tmp)
            _fsync(tmp)
    _fsync(folder)
    return step_file


def read(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, of a local file or a URL; a file
    that is not a torch file of tensors and plain containers is a one-line
    :class:`UserError`."""
    try:
        if fs.is_local(path):
            return torch.load(fs.local_path(path), map_location="cpu", weights_only=True)
        return torch.load(io.BytesIO(fs.read_bytes(path)), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"checkpoint not found: {path}") from None
    except pickle.UnpicklingError:  # torch's message suggests weights_only=False: not here
        raise UserError(
            f"cannot read checkpoint {path}: not a PyTorch file, or one holding objects other "
            "than tensors and plain containers (openwit loads with weights_only=True)"
        ) from None
    except Exception as error:  # truncated zip, not a torch file
        raise UserError(f"cannot read checkpoint {path}: {first_line(error)}") from None


def first_line(error: BaseException, limit: int = 240) -> str:
    """An exception as one short line (torch's messages run over many lines)."""
    lines = str(error).strip().splitlines()
    text = lines[0].strip() if lines else ""
    text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load(path: str | Path) -> dict[str, Any]:
    """An openwit training checkpoint (a dict with ``state_dict``), read safely."""
    state = read(path)
    if not isinstance(state, dict) or "state_dict" not in state:
        raise UserError(f"{path} is not an openwit training checkpoint (no state_dict)")
    return state


def resume_path(run: str | Path, resume: str | None) -> str | None:
    """The checkpoint to resume from: ``auto`` -> latest.pt of the run (a folder or a URL)
    if there is one, else a path or URL."""
    if resume is None:
        return None
    if resume == "auto":
        latest = fs.join(str(run), "checkpoints", LATEST)
        return latest if fs.is_file(latest) else None
    if not fs.is_file(resume):
        raise UserError(f"--resume {resume}: no such checkpoint")
    return resume


_STEP_FILE = re.compile(r"step_(\d+)\.pt")


def step_files(run: str | Path) -> list[str]:
    """The run's ``checkpoints/step_N.pt`` (not those of its subfolders), newest first."""
    folder = fs.join(str(run), "checkpoints").rstrip("/")
    found = []
    for location in fs.list_files(folder):
        match = _STEP_FILE.fullmatch(location[len(folder) + 1 :])
        if match:
            found.append((int(match.group(1)), location))
    return [location for _, location in sorted(found, reverse=True)]


@dataclass
class Resumed:
    path: str  # a local path or a URL
    state: dict[str, Any]
    unreadable: list[str]  # "name: why" of newer checkpoints that did not load


def load_for_resume(run: str | Path, resume: str | None) -> Resumed | None:
    """The state to resume from, or None for a fresh start.

    A named file must load. ``auto`` tries ``latest.pt``, then the step files from the
    newest down, and takes the first that loads: a checkpoint broken by a crash costs the
    steps since the one before it, not the run. A run stopped between writing a step file
    and pointing ``latest.pt`` at it (in a bucket, while the step file uploads) resumes
    from the step files too.
    """
    if resume != "auto":
        first = resume_path(run, resume)
        return None if first is None else Resumed(first, load(first), [])
    latest = resume_path(run, resume)
    candidates = ([latest] if latest else []) + step_files(run)
    if not candidates:
        return None
    unreadable: list[str] = []
    for path in candidates:
        try:
            return Resumed(path, load(path), unreadable)
        except UserError as error:
            unreadable.append(f"{fs.basename(path)}: {error}")
    raise UserError(
        f"--resume auto: none of the {len(unreadable)} checkpoints in "
        f"{fs.join(str(run), 'checkpoints')} loads ({unreadable[0]})"
    )


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The bare model's weights (no ``module.`` or ``_orig_mod.`` prefixes), on the CPU."""
    return {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
