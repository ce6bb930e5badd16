"""Where a training run keeps its files: a local folder, or a bucket through a local one.

A run folder (``config.json``, ``metrics.jsonl``, ``checkpoints/``, ``eval.json``,
``predictions/``) may be a URL: ``openwit train --out s3://bucket/runs/r1``. The trainer
always writes into a local folder; for a URL that is a temporary working folder, and the
store copies what the run wrote into the bucket as it goes:

- at the start, the config (and, on ``--resume``, the metrics so far are first read back
  from the bucket, so the resumed run appends to them);
- at each checkpoint, the metrics and config first (lines past a checkpoint are dropped on
  resume, so they may run ahead of it), then, on a thread of its own while training goes
  on, the step file streamed from the disk, ``latest.pt`` as a copy the store makes itself
  (S3's own copy: no second upload), and the local copies removed. The next checkpoint
  waits for that upload before it is written, so a run needs local room for one
  checkpoint, and a slow store holds training up only when an upload outlasts the steps
  between two checkpoints (an upload error surfaces there, or at the end, in one line);
- at the end, after the last upload, everything else (the evaluation and its predictions,
  the last metrics).

A resumed run reads its checkpoint from the bucket (``openwit.train.checkpoint``): a run
preempted on one machine goes on on another, from ``latest.pt`` or, if the run stopped
before that copy, from the newest step file. Only the main process writes; every process
reads the checkpoint it resumes from.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from openwit import fs
from openwit.train.checkpoint import LATEST, checkpoint_dir

METRICS, CONFIG = "metrics.jsonl", "config.json"


class RunStore:
    """A run's files: ``location`` as the user named it (a path made absolute, or a URL),
    ``local`` the folder the trainer writes into."""

    def __init__(self, out: str) -> None:
        self.remote = not fs.is_local(out)
        self._uploads: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None
        self.location = fs.absolute(out)
        if self.remote:
            fs.probe(fs.join(self.location, CONFIG))  # a bucket out of reach: now, in one line
            self.local = Path(tempfile.mkdtemp(prefix="openwit-run-"))
            atexit.register(shutil.rmtree, self.local, ignore_errors=True)
        else:
            self.local = Path(self.location)

    def where(self, path: Path) -> str:
        """The location of a file the trainer wrote into ``local``."""
        return fs.join(self.location, path.relative_to(self.local).as_posix())

    def _upload(self, path: Path) -> str:
        url = self.where(path)
        fs.upload_file(path, url)
        return url

    def start(self, resuming: bool) -> None:
        """Before the metrics log opens: a resumed run in a bucket gets its metrics back."""
        if self.remote and resuming:
            with contextlib.suppress(FileNotFoundError):  # no metrics logged before
                (self.local / METRICS).write_bytes(fs.read_bytes(fs.join(self.location, METRICS)))
        self.publish(CONFIG)

    def publish(self, *names: str) -> None:
        """Copy these files of the run (relative names) into the bucket, if the run is in
        one and they exist."""
        if not self.remote:
            return
        for name in names:
            path = self.local / name
            if path.is_file():
                self._upload(path)

    def before_checkpoint(self) -> None:
        """Wait for the previous checkpoint's upload (and raise what it raised)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def checkpoint_saved(self, step_file: Path) -> str:
        """A checkpoint written locally: publish the metrics and config, then upload it and
        point ``latest.pt`` at it in the background; returns where the checkpoint is."""
        if not self.remote:
            return str(step_file)
        self.before_checkpoint()
        self.publish(METRICS, CONFIG)
        if self._uploads is None:
            self._uploads = ThreadPoolExecutor(1, "openwit-checkpoint-upload")
        self._pending = self._uploads.submit(self._upload_checkpoint, step_file)
        return self.where(step_file)

    def _upload_checkpoint(self, step_file: Path) -> None:
        url = self._upload(step_file)
        fs.copy(url, fs.join(fs.parent(url), LATEST))
        for path in (step_file, checkpoint_dir(self.local) / LATEST):
            path.unlink(missing_ok=True)  # the bucket has them; resuming reads them there

    def finish(self) -> None:
        """At the end: the last checkpoint's upload, then every file of the run not
        uploaded yet."""
        if not self.remote:
            return
        self.before_checkpoint()
        checkpoints = checkpoint_dir(self.local)
        for path in sorted(self.local.rglob("*")):
            if path.is_file() and checkpoints not in path.parents:
                self._upload(path)
        if self._uploads is not None:
            self._uploads.shutdown()
