"""A stage attempt's commit record: how the runner commits without renaming a directory.

A stage writes only into its own attempt directory, ``OUT/stages/<stage>/<attempt>/`` (and
the directories it publishes into, such as ``OUT/shards/``). To commit, the runner writes
the attempt's file list with each file's size (``<attempt>/_commit.json``, this module), then
the manifest naming the attempt (:mod:`openwit.runner`): the manifest is written last, so a
reader that trusts only the attempt it names never sees a half-written stage, on a disk or in
a bucket. The same record later says whether the committed files are still intact.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from openwit import fs
from openwit.builddir import COMMIT_FILE


def new_attempt() -> str:
    """A fresh attempt id: sortable by start time, unique across machines."""
    return datetime.now(UTC).strftime("a%Y%m%dT%H%M%S-") + uuid.uuid4().hex[:6]


def relative(build_dir: str, url: str) -> str:
    """``url`` relative to the build directory (how commit records name files)."""
    return url[len(build_dir.rstrip("/")) + 1 :]


def finished_units(attempt: str) -> int:
    """Work units of the attempt whose done marker is written."""
    return sum(1 for url in fs.list_files(attempt) if fs.basename(url).startswith("done-"))


def write_commit(
    build_dir: str, attempt: str, published_dirs: Iterable[str], published: dict[str, int]
) -> str:
    """Write the attempt's file list with sizes (the attempt's files, those in each of
    ``published_dirs`` and the ``published`` files the stage reported); returns its URL.
    The manifest, saved next, makes it the committed attempt."""
    files = {relative(build_dir, url): size for url, size in fs.list_files(attempt).items()}
    for prefix in published_dirs:
        for url, size in fs.list_files(prefix).items():
            files[relative(build_dir, url)] = size
    files.update(published)
    commit = fs.join(attempt, COMMIT_FILE)
    fs.write_json(commit, dict(sorted(files.items())), skip_if_same=False)
    return commit


def damage(build_dir: str, entry: dict[str, Any]) -> list[str]:
    """What is missing or changed among a committed stage's files (empty: intact).

    One listing of the attempt directory (and of each directory the stage published into)
    against the sizes recorded at commit: cheap on a disk and in a bucket.
    """
    attempt = entry.get("attempt")
    if not attempt:
        return ["no committed attempt recorded"]
    try:
        committed: dict[str, int] = fs.read_json(fs.join(build_dir, entry["commit"]))
    except (KeyError, FileNotFoundError, OSError, ValueError):
        return [f"{entry.get('commit', 'its commit record')} is missing"]
    present: dict[str, int] = {}
    for prefix in {rel.rsplit("/", 1)[0] for rel in committed}:
        for url, size in fs.list_files(fs.join(build_dir, prefix)).items():
            present[relative(build_dir, url)] = size
    problems = []
    for rel, size in sorted(committed.items()):
        if rel not in present:
            problems.append(f"{rel} is missing")
        elif present[rel] != size:
            problems.append(f"{rel} has {present[rel]:,} bytes, {size:,} when committed")
    return problems


def remove_other_attempts(stage_root: str, attempt: str) -> None:
    """Delete every attempt of the stage but ``attempt`` (abandoned or superseded ones)."""
    keep = attempt.rstrip("/") + "/"
    stale = [u for u in fs.list_files(stage_root) if not u.startswith(keep)]
    fs.delete(stale)
    if fs.is_local(stage_root):  # empty directories are left on a disk, not in a bucket
        root = fs.local_path(stage_root)
        for child in root.iterdir():
            if child.is_dir() and fs.join(str(root), child.name) != attempt.rstrip("/"):
                fs.delete_tree(str(child))
