"""Funnel accounting: every record that enters a stage leaves it as output or as a rejection.

The funnel law (CONTRACTS.md): for every stage ``in == out + sum(rejected)``, and each stage's
``out`` is the next stage's ``in``. Counts are taken from the files a stage wrote, not from
runner metrics, so they are exact on every Beam runner.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from openwit.errors import FunnelLawError

_REASON = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record that a stage did not pass on, and why.

    ``reason`` is a short snake_case word (``not_english``, ``http_404``); ``detail`` is free
    text for a person (the HTTP status line, the detected language, ...).
    """

    uid: str
    stage: str
    reason: str
    detail: str = ""

    def __post_init__(self) -> None:
        if not _REASON.match(self.reason):
            raise ValueError(f"rejection reason must be snake_case, got {self.reason!r}")

    def as_record(self) -> dict[str, str]:
        return {"uid": self.uid, "stage": self.stage, "reason": self.reason, "detail": self.detail}

    @classmethod
    def stage_error(cls, uid: str, stage: str, exc: BaseException) -> Rejection:
        """A record on which the stage's own code raised: counted, never silently dropped."""
        return cls(uid, stage, "stage_error", f"{type(exc).__name__}: {exc}"[:500])


class Rejected(Exception):
    """Raised by a core's helper to reject the record in hand: ``reason`` is the rejection
    reason (snake_case), ``detail`` the text for a person."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass
class StageCounts:
    """Records in, out and rejected (by reason) for one stage."""

    stage: str
    n_in: int
    n_out: int
    rejected: dict[str, int] = field(default_factory=dict)

    @property
    def n_rejected(self) -> int:
        return sum(self.rejected.values())

    @property
    def balanced(self) -> bool:
        return self.n_in == self.n_out + self.n_rejected

    def to_json(self) -> dict[str, Any]:
        return {
            "in": self.n_in,
            "out": self.n_out,
            "rejected": dict(sorted(self.rejected.items())),
        }

    @classmethod
    def from_json(cls, stage: str, data: Mapping[str, Any]) -> StageCounts:
        return cls(stage, int(data["in"]), int(data["out"]), dict(data.get("rejected", {})))


class Funnel:
    """The counts of every stage of a build, in stage order."""

    def __init__(self, stages: Iterable[StageCounts] = ()) -> None:
        self.stages: dict[str, StageCounts] = {}
        for counts in stages:
            self.add(counts)

    def add(self, counts: StageCounts) -> None:
        self.stages[counts.stage] = counts

    def violations(self) -> list[str]:
        """Every way the counts break the funnel law, as sentences; empty when it holds."""
        problems = []
        previous: StageCounts | None = None
        for counts in self.stages.values():
            if not counts.balanced:
                problems.append(
                    f"stage {counts.stage}: in={counts.n_in} but out={counts.n_out} + "
                    f"rejected={counts.n_rejected} = {counts.n_out + counts.n_rejected}"
                )
            if any(n < 0 for n in (counts.n_in, counts.n_out, *counts.rejected.values())):
                problems.append(f"stage {counts.stage}: negative count")
            if previous is not None and previous.n_out != counts.n_in:
                problems.append(
                    f"stage {counts.stage}: in={counts.n_in} but stage {previous.stage} "
                    f"passed on out={previous.n_out}"
                )
            previous = counts
        return problems

    def check(self) -> None:
        """Raise :class:`FunnelLawError` naming every violation."""
        problems = self.violations()
        if problems:
            raise FunnelLawError("funnel law broken: " + "; ".join(problems))

    def to_json(self) -> dict[str, Any]:
        return {name: counts.to_json() for name, counts in self.stages.items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Funnel:
        return cls(StageCounts.from_json(name, value) for name, value in data.items())
