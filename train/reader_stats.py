"""What a data worker has read: counts for the main process, and why shards gave nothing.

Every batch carries the counts since the batch before (:meth:`ReaderStats.drain`): shards
skipped, samples skipped, and samples *read* (used or skipped), which is what the resume
position counts. Per shard the worker also keeps why it gave no usable sample, so that a
shard set with no usable sample at all stops the run with one line naming the shards and
the reasons, instead of the worker cycling over them forever without a batch.

Warnings about skipped shards are held back until the first usable sample: if none ever
comes, the one error says it all; if one does, they are written then.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import PurePosixPath

log = logging.getLogger(__name__)

#: The counts a batch carries, in this order (a tensor of int64).
STAT_FIELDS = ("worker", "shards_failed", "samples_skipped", "samples_read")
#: Shards named in the error, at most.
SHARDS_NAMED = 5


@dataclass
class ShardReport:
    """What reading one shard (all its passes, in this worker) found."""

    samples: int = 0
    usable: int = 0
    no_image: int = 0
    no_caption: int = 0
    undecodable: int = 0
    error: str | None = None

    def why_unusable(self) -> str:
        if self.error and not self.samples:
            return f"unreadable ({self.error})"
        if not self.samples:
            return "no samples in it"
        parts = [
            f"{n} {what}"
            for n, what in (
                (self.no_image, "without an image"),
                (self.no_caption, "without a caption"),
                (self.undecodable, "whose image does not decode"),
            )
            if n
        ]
        text = f"{self.samples} samples, " + ", ".join(parts)
        if self.no_image and self.no_caption:
            text += " (are each sample's files next to each other in the tar?)"
        if self.error:
            text += f", then {self.error}"
        return text


def describe_error(error: BaseException) -> str:
    """``Type: first line of the message``, at most 300 characters."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")[:300]


@dataclass
class ReaderStats:
    """One data worker's counts and per-shard findings.

    ``all_urls`` is every shard this worker may ever read: once it has tried each of them
    without finding one usable sample, :meth:`end_shard` reports that nothing will come.
    """

    all_urls: frozenset[str] = frozenset()
    shards_failed: int = 0
    samples_skipped: int = 0
    samples_read: int = 0
    usable_found: bool = False
    shards: dict[str, ShardReport] = field(default_factory=dict)
    held_warnings: list[str] = field(default_factory=list)
    warned: set[str] = field(default_factory=set)
    _current: ShardReport | None = None
    _current_url: str = ""
    _current_usable: int = 0
    _current_failed: bool = False

    # --- a shard -----------------------------------------------------------------------
    def start_shard(self, url: str) -> None:
        # The report describes a shard's first pass; later passes only count for batches.
        first_pass = url not in self.shards
        report = self.shards.setdefault(url, ShardReport())
        self._current = report if first_pass else ShardReport()
        self._current_url = url
        self._current_usable = 0
        self._current_failed = False

    def shard_failed(self, url: str, error: BaseException) -> None:
        report = self.shards.setdefault(url, ShardReport())
        report.error = report.error or describe_error(error)
        self._current_failed = True
        self._warn(url, f"skipping shard {url}: {report.error}")

    def end_shard(self) -> str | None:
        """Close the current shard; the error message if no shard can ever give a sample."""
        url, report = self._current_url, self._current
        if report is None:
            return None
        if self._current_failed or not self._current_usable:
            self.shards_failed += 1  # broken, or (this time) not one usable sample
        if not self._current_failed and not self._current_usable:
            self._warn(url, f"skipping shard {url}: {report.why_unusable()}")
        self._current = None
        if not self.usable_found and self.all_urls and self.all_urls <= set(self.shards):
            return self.no_usable_sample()
        return None

    # --- a sample ----------------------------------------------------------------------
    def sample_skipped(self, reason: str) -> None:
        """A sample of the current shard that cannot be used: ``no_image``, ``no_caption`` or
        ``undecodable``; read, and skipped."""
        self.samples_read += 1
        self.samples_skipped += 1
        if self._current is not None:
            self._current.samples += 1
            setattr(self._current, reason, getattr(self._current, reason) + 1)

    def sample_usable(self) -> None:
        """A sample of the current shard with an image and a caption, on its way to the
        shuffle buffer (counted as read when it is batched, or dropped)."""
        if self._current is not None:
            self._current.samples += 1
            self._current.usable += 1
        self._current_usable += 1
        if not self.usable_found:
            self.usable_found = True
            for message in self.held_warnings:
                log.warning("%s", message)
            self.held_warnings.clear()

    def sample_batched(self) -> None:
        self.samples_read += 1

    def sample_dropped(self) -> None:
        """A sample out of the shuffle buffer whose image did not decode after all."""
        self.samples_read += 1
        self.samples_skipped += 1

    def group_error(self, error: BaseException) -> bool:
        """webdataset's handler for a sample it cannot group (a duplicate file name)."""
        self.samples_skipped += 1
        return True

    # --- hand-over ---------------------------------------------------------------------
    def drain(self, worker: int) -> list[int]:
        counts = [worker, self.shards_failed, self.samples_skipped, self.samples_read]
        self.shards_failed = self.samples_skipped = self.samples_read = 0
        return counts

    def no_usable_sample(self) -> str:
        """One line: every shard, none with a usable sample, and why (the first few)."""
        urls = sorted(self.shards)
        folders = {str(PurePosixPath(u).parent) for u in urls}
        if len(folders) == 1:
            where, names = f" in {folders.pop()}", [PurePosixPath(u).name for u in urls]
        else:
            where, names = "", urls
        reasons = [
            f"{name}: {self.shards[url].why_unusable()}"
            for name, url in zip(names[:SHARDS_NAMED], urls[:SHARDS_NAMED])
        ]
        more = f"; and {len(urls) - SHARDS_NAMED} more" if len(urls) > SHARDS_NAMED else ""
        return (
            f"--train-data: none of the {len(urls)} shards{where} holds a usable sample "
            f"(an image and a caption): {'; '.join(reasons)}{more}"
        )

    def _warn(self, url: str, message: str) -> None:
        if url in self.warned:  # one warning per shard, even if it fails every epoch
            return
        self.warned.add(url)
        if self.usable_found:
            log.warning("%s", message)
        else:
            self.held_warnings.append(message)
