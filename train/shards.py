"""Which shards a run reads, how many samples each holds, and in what order each worker reads them.

A training data spec is a shard folder (every ``*.tar`` directly in it) or brace patterns
(``/data/shards/{00000..00999}.tar``), several joined with ``::`` as open_clip_train takes
them. A folder or a shard may be a local path or a URL of a store the build writes to
(``s3://bucket/build/shards``, ``gs://...``): those are listed and read through
:mod:`openwit.fs`, with the build's credentials and endpoint, so a build in a bucket trains
as it is. ``pipe:`` commands and ``http(s)://`` shards go to webdataset's ``gopen``
(:func:`open_shard`). Sample counts come from ``sizes.json`` beside the shards
(open_clip_train's convention, which openwit's shard writer follows). A shard that is named
but missing is not an error here: the reader skips it with a warning and counts it.

The order is a pure function of (seed, epoch), so every process and every restart agrees on
it, and a resumed run can skip the shards it has already read (:func:`worker_stream`).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from openwit import fs
from openwit.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardList:
    urls: tuple[str, ...]
    sizes: tuple[int | None, ...]  # samples per shard, None where no sizes.json says

    @property
    def total_samples(self) -> int | None:
        """Samples in all shards, or None if any shard's size is unknown."""
        if any(size is None for size in self.sizes):
            return None
        return sum(self.sizes)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.urls)


#: Schemes webdataset's ``gopen`` reads (a command, or a web or cluster server); every
#: other shard URL is a file of a store :mod:`openwit.fs` reads.
GOPEN_SCHEMES = ("pipe", "http", "https", "ais", "htgs", "scp", "sftp", "ftps")


def read_by_gopen(url: str) -> bool:
    return url.startswith("pipe:") or fs.scheme(url) in GOPEN_SCHEMES


def open_shard(url: str) -> IO[bytes]:
    """A binary stream of one shard, from wherever its URL points."""
    if read_by_gopen(url):
        from webdataset.gopen import gopen

        return gopen(url)
    return fs.open_input(url)


def _expand(pattern: str) -> list[str]:
    import braceexpand

    return list(braceexpand.braceexpand(pattern))


def _names_a_folder(part: str) -> bool:
    """A local directory, or a store URL that names no shard (no ``.tar``, no braces)."""
    if fs.is_local(part):
        return fs.local_path(part).is_dir()
    if read_by_gopen(part):
        return False
    return not part.endswith(".tar") and "{" not in part


class _Folders:
    """What a run needs to know of the folders its shards are in, looked up once a folder:
    its files (its shards, which named shards exist) and its ``sizes.json``. A folder in a
    bucket is listed once (a listing is requests); a local one is asked directly."""

    def __init__(self) -> None:
        self.files: dict[str, set[str]] = {}
        self.sizes: dict[str, dict[str, int]] = {}

    def listing(self, folder: str) -> set[str]:
        """The files under a folder in a bucket."""
        if folder not in self.files:
            self.files[folder] = set(fs.list_files(folder))
        return self.files[folder]

    def tars_in(self, folder: str) -> list[str]:
        """The ``*.tar`` files directly in ``folder``, sorted."""
        if fs.is_local(folder):
            return sorted(str(p) for p in fs.local_path(folder).glob("*.tar"))
        folder = folder.rstrip("/")
        found = (u for u in self.listing(folder) if fs.parent(u) == folder)
        return sorted(u for u in found if u.endswith(".tar"))

    def exists(self, url: str) -> bool:
        if fs.is_local(url):
            return fs.local_path(url).is_file()
        return url in self.listing(fs.parent(url))

    def size_of(self, url: str) -> int | None:
        folder = fs.parent(url)
        if folder not in self.sizes:
            self.sizes[folder] = self._read_sizes(folder)
        return self.sizes[folder].get(fs.basename(url))

    def _read_sizes(self, folder: str) -> dict[str, int]:
        path = fs.join(folder, "sizes.json")
        if not self.exists(path):
            return {}
        try:
            raw = fs.read_json(path)
            return {str(k): int(v) for k, v in raw.items()}
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("ignoring unreadable %s: %s", path, exc)
            return {}


def list_shards(spec: str) -> ShardList:
    """The shards named by ``spec`` with their sizes; a UserError if it names none that exist."""
    spec = spec.strip()
    if not spec:
        raise UserError("--train-data is empty")
    urls: list[str] = []
    folders = _Folders()
    for part in spec.split("::"):
        if _names_a_folder(part):
            found = folders.tars_in(part)
            if not found:
                raise UserError(f"--train-data {part}: no *.tar shards in this folder")
            urls.extend(found)
        else:
            urls.extend(_expand(part))
    ours = [u for u in urls if not read_by_gopen(u)]  # files openwit reads (local or a store)
    if ours and not any(folders.exists(u) for u in ours):
        raise UserError(f"--train-data {spec}: none of the {len(urls)} shards named exists")
    sizes = tuple(None if read_by_gopen(u) else folders.size_of(u) for u in urls)
    return ShardList(tuple(urls), sizes)


def epoch_order(n_shards: int, seed: int, epoch: int) -> list[int]:
    """Shard indices in the order epoch ``epoch`` reads them (the same in every process)."""
    order = list(range(n_shards))
    random.Random(f"openwit-shards-{seed}-{epoch}").shuffle(order)
    return order


@dataclass(frozen=True)
class Slot:
    """One reader of the data: a data worker of one process (rank)."""

    rank: int
    world_size: int
    worker: int
    workers: int

    @property
    def index(self) -> int:
        return self.rank * self.workers + self.worker

    @property
    def count(self) -> int:
        return self.world_size * self.workers


def slot_share(order: list[int], slot: Slot) -> list[int]:
    """The shards of one epoch that ``slot`` reads: every count-th, so all slots stay even."""
    return order[slot.index :: slot.count]


@dataclass(frozen=True)
class ShardTask:
    url: str
    skip: int = 0  # samples at the start of the shard already trained on (resume)
    epoch: int = 0


def worker_stream(
    shards: ShardList, slot: Slot, seed: int, skip_samples: int = 0
) -> Iterator[ShardTask]:
    """The endless shard sequence of one slot: its share of epoch 0, then of epoch 1, ...

    ``skip_samples`` (resume) skips, shard by shard, the samples this slot had delivered:
    whole shards by their sizes, then the first samples of the shard it stopped in. Needs
    every size; :func:`can_skip` says whether it can.
    """
    epoch = 0
    while True:
        share = slot_share(epoch_order(len(shards), seed, epoch), slot)
        if not share:
            raise ValueError(f"slot {slot} has no shards: {len(shards)} shards")
        for index in share:
            skip = 0
            if skip_samples:
                size = shards.sizes[index] or 0
                if skip_samples >= size:
                    skip_samples -= size
                    continue
                skip, skip_samples = skip_samples, 0
            yield ShardTask(shards.urls[index], skip, epoch)
        epoch += 1


def resampled_stream(shards: ShardList, slot: Slot, seed: int, restart: int) -> Iterator[ShardTask]:
    """Shards drawn with replacement, seeded per slot and per (re)start of the run."""
    rng = random.Random(f"openwit-resampled-{seed}-{slot.index}-{restart}")
    while True:
        yield ShardTask(shards.urls[rng.randrange(len(shards))])


def can_skip(shards: ShardList) -> bool:
    return shards.total_samples is not None


def plan_readers(n_shards: int, world_size: int, workers: int, resampled: bool) -> tuple[int, bool]:
    """(workers per process, resampled) such that every reader has at least one shard.

    With fewer shards than readers, some workers would wait forever for a shard: fewer
    workers are used, and with fewer shards than processes, sampling with replacement.
    """
    if resampled:
        return workers, True
    if n_shards < world_size:
        log.warning(
            "%d shards for %d processes: drawing shards with replacement (--resampled)",
            n_shards,
            world_size,
        )
        return workers, True
    readers = max(1, workers)
    if n_shards < world_size * readers:
        fitted = max(1, n_shards // world_size)
        log.warning(
            "%d shards cannot feed %d workers x %d processes; using %d workers per process",
            n_shards,
            readers,
            world_size,
            fitted,
        )
        return (fitted if workers > 0 else 0), False
    return workers, False
