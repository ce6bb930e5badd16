"""What a build stage is: a named step that reads the previous stage's Parquet and writes its own.

A stage writes its kept records as ``part-*.parquet`` and its rejections as
``rejections-*.parquet`` into ``ctx.work_dir``; the runner (:mod:`openwit.runner`) counts
them, checks the funnel law and commits the directory atomically. Most stages are a
plain-Python core wrapped by :class:`CoreStage`; a stage that needs a global view of the data
(balancing, dedup) overrides :meth:`BeamStage.expand` instead.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from openwit.config import BuildConfig

if TYPE_CHECKING:
    import pyarrow as pa

    from openwit.beam import Core

OUTPUT_GLOB = "part-*.parquet"
REJECTION_GLOB = "rejections-*.parquet"


@dataclass
class StageContext:
    """Everything a stage needs to run once."""

    stage: str
    config: BuildConfig
    build_dir: Path
    work_dir: Path  # the stage writes here; the runner renames it into place
    input_files: list[Path]  # the previous stage's output (empty for the first stage)
    resume: bool = False  # work_dir holds what an interrupted run of this stage left

    @property
    def output_prefix(self) -> str:
        return str(self.work_dir / "part")

    @property
    def rejections_prefix(self) -> str:
        return str(self.work_dir / "rejections")

    def stage_dir(self, name: str) -> Path:
        """Committed output directory of another (earlier) stage."""
        return self.build_dir / "stages" / name

    def new_pipeline(self) -> Any:
        """A Beam pipeline on the configured runner and options."""
        from openwit.beam import new_pipeline

        return new_pipeline(self.config.runner, self.config.beam_options)


@dataclass
class StageResult:
    """What a stage reports beside its files.

    ``n_in`` is only for a first stage, whose input is not a Parquet file: the number of
    input records it read. ``stats`` goes into the manifest (small JSON values only).
    """

    n_in: int | None = None
    stats: dict[str, Any] = field(default_factory=dict)


class Stage(abc.ABC):
    """A build stage. Subclasses set ``name`` and implement :meth:`run`."""

    name: ClassVar[str]
    #: Bumped when a change of the stage's code changes its output, so old results rerun.
    version: ClassVar[int] = 1
    #: Top-level config keys the output depends on (all but out/runner/beam_options if None).
    config_keys: ClassVar[tuple[str, ...] | None] = None
    #: Whether ``run`` can continue from what an interrupted run left in ``ctx.work_dir``;
    #: the runner keeps that directory on ``--resume`` only for such stages.
    resumable: ClassVar[bool] = False

    def fingerprint(self, config: BuildConfig) -> dict[str, Any]:
        """What the stage's output depends on besides its input; a change reruns the stage."""
        data = config.to_json()
        keys = self.config_keys
        if keys is None:
            keys = tuple(k for k in data if k not in ("out", "runner", "beam_options"))
        return {"version": self.version, "config": {k: data[k] for k in keys}}

    def warm_up(self, config: BuildConfig) -> None:
        """Start slow set-up (worker processes, say) in the background. The runner calls it
        while the stage before this one runs; :meth:`run` must work without it."""
        return None  # most stages have nothing to start early

    @abc.abstractmethod
    def run(self, ctx: StageContext) -> StageResult | None:
        """Write outputs and rejections into ``ctx.work_dir``."""

    def output_files(self, stage_dir: Path) -> list[Path]:
        """The committed output files that hold the records passed to the next stage."""
        return sorted(stage_dir.glob(OUTPUT_GLOB))


class BeamStage(Stage):
    """A stage run as one Beam pipeline: read input, :meth:`expand`, write both outputs."""

    @abc.abstractmethod
    def output_schema(self, config: BuildConfig) -> pa.Schema:
        """Arrow schema of the kept records."""

    def read(self, pipeline: Any, ctx: StageContext) -> Any:
        """The input PCollection; by default the previous stage's Parquet records."""
        from openwit.beam import read_parquet

        return read_parquet(pipeline, ctx.input_files, f"Read {ctx.stage} input")

    @abc.abstractmethod
    def expand(self, records: Any, ctx: StageContext) -> tuple[Any, Any]:
        """Turn input records into ``(kept, rejected)`` PCollections."""

    def run(self, ctx: StageContext) -> StageResult | None:
        from openwit.beam import write_parquet
        from openwit.schemas import REJECTION_SCHEMA

        with ctx.new_pipeline() as pipeline:
            kept, rejected = self.expand(self.read(pipeline, ctx), ctx)
            write_parquet(kept, ctx.output_prefix, self.output_schema(ctx.config), "Write kept")
            write_parquet(rejected, ctx.rejections_prefix, REJECTION_SCHEMA, "Write rejected")
        return None


class CoreStage(BeamStage):
    """A stage whose logic is a plain-Python core applied record by record.

    Subclasses implement :meth:`make_core`, which must return a picklable zero-argument
    callable (a module-level function or a ``functools.partial`` of one) that builds the
    core; Beam calls it once per worker in ``DoFn.setup``.
    """

    @abc.abstractmethod
    def make_core(self, config: BuildConfig) -> Callable[[], Core]:
        """A picklable factory of the stage's core."""

    def expand(self, records: Any, ctx: StageContext) -> tuple[Any, Any]:
        from openwit.beam import apply_core

        return apply_core(records, self.name, self.make_core(ctx.config))
