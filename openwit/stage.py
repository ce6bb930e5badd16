"""What a build stage is: a plain-Python core over work units, run by one shared transform.

A stage reads the records the previous stage committed, cut into work units
(:mod:`openwit.units`), and hands each unit to its *core* -- a plain-Python object built
once per worker (:meth:`Stage.make_core`), unit-tested without Beam -- which returns the
unit's kept records, rejections and named side tables (:class:`openwit.outputs.UnitOutput`).
The unit transform (:mod:`openwit.unit_transform`) writes them; the runner
(:mod:`openwit.runner`) counts them from the units' done markers, checks the funnel law and
commits the stage's attempt by naming it in the manifest. A stage never learns which runner
or machine it is on: its execution resources come from :mod:`openwit.resources`, its files
from :mod:`openwit.fs`, and nothing crosses stages except the build directory.

Most stages are one pass (:meth:`Stage.run`'s default). A stage that needs a global view
runs more passes, one pipeline each, handing the next pass what the last one wrote into the
attempt directory (ingest: uid buckets; balance: per-query counts; dedup: duplicate
groups), and may finish with launcher-side work in :meth:`Stage.finalize`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from openwit import fs
from openwit.config import BuildConfig, json_hash, output_settings

if TYPE_CHECKING:
    import pyarrow as pa

    from openwit.outputs import StageTotals
    from openwit.resources import Resources
    from openwit.unit_transform import RunUnits, UnitCore
    from openwit.units import RowGroup, WorkUnit

PLAN_FILE = "_plan.json"
#: The way :meth:`openwit.units.RowGroup.units` cuts (equal units since 2026-12-06).
UNIT_CUT = "equal"


@dataclass
class StageContext:
    """Everything a stage needs to run once. Paths are URLs (local paths or ``s3://`` ...)."""

    stage: str
    config: BuildConfig
    build_dir: str
    attempt: str  # this run's attempt directory: the stage writes only here (and shards/)
    input_files: list[str]  # the previous stage's committed records (empty for the first)
    resources: Resources
    resume: bool = False  # the attempt holds what an interrupted run of this stage left
    pipeline_factory: Callable[[int], Any] | None = None  # the runner's (its worker pool)

    def new_pipeline(self, units: int) -> Any:
        """A Beam pipeline on the build's runner for ``units`` work units (use as ``with
        ctx.new_pipeline(n) as p:``). The runner may run a one-unit pass in this process."""
        if self.pipeline_factory is not None:
            return self.pipeline_factory(units)
        from openwit.beam import new_pipeline

        return new_pipeline(self.config.runner, self.config.beam_options)

    def resources_for(self, units: int) -> Resources:
        """The execution resources of a pass of ``units`` work units: a one-unit pass runs
        in the launcher's process (see :meth:`new_pipeline`), alone on the machine."""
        if units <= 1:
            from openwit.resources import Resources

            return Resources(1, self.resources.network_threads)
        return self.resources

    def run_units_fn(
        self,
        make_core: Callable[[], UnitCore],
        schema: pa.Schema | None,
        pass_name: str = "",
    ) -> RunUnits:
        """The unit DoFn for one pass of this stage."""
        from openwit.unit_transform import RunUnits

        return RunUnits(
            self.stage,
            self.attempt,
            make_core,
            schema,
            dict(self.config.beam_options),
            pass_name,
            self.resume,
        )

    def plan_groups(
        self, files: Sequence[str], rows_per_unit: int, min_rows_per_unit: int
    ) -> tuple[list[RowGroup], int]:
        """The input's row groups and the unit size to cut them at.

        On one machine the worker processes take fixed shares of a pass's units, so a few
        large units leave a core idle while another works (3 download units on 2 workers:
        2 and 1). Units are made small enough for about four a worker there, never below
        ``min_rows_per_unit``; a cluster (whose parallelism the launcher does not know)
        keeps ``rows_per_unit``.
        """
        import math

        from openwit.units import plan_row_groups, renumber

        groups = plan_row_groups(files, rows_per_unit)
        workers = self.local_workers
        if workers:
            rows = sum(g.rows for g in groups)
            balanced = max(min_rows_per_unit, math.ceil(rows / (4 * workers)))
            if balanced < rows_per_unit:
                return renumber(groups, balanced), balanced
        return groups, rows_per_unit

    @property
    def local_workers(self) -> int:
        """The worker processes that take fixed shares of this build's passes on this
        machine (a direct runner with several processes); 0 in one process, or on a
        cluster, whose parallelism the launcher does not know."""
        from openwit.resources import DIRECT_RUNNERS

        processes = self.resources.processes_per_machine
        if self.config.runner in DIRECT_RUNNERS and processes > 1:
            return processes
        return 0

    def start_plan(self, plan: Any) -> None:
        """Record what this attempt's units are; a resumed attempt that was planned
        differently (changed input, unit size or settings) starts over."""
        path = fs.join(self.attempt, PLAN_FILE)
        # How row groups are cut into units is part of the plan: an attempt planned by an
        # openwit that cut them otherwise starts over rather than mixing unit boundaries.
        digest = {"plan": json_hash(plan), "cut": UNIT_CUT}
        if self.resume:
            try:
                same = fs.read_json(path) == digest
            except (FileNotFoundError, OSError, ValueError):
                same = False
            if not same:
                fs.delete_tree(self.attempt)
                self.resume = False
        fs.write_json(path, digest)


@dataclass
class StageResult:
    """What a stage's run reports beside its files: how many units its last pass planned
    (the runner checks that each one finished) and small JSON stats for the manifest."""

    units: int
    stats: dict[str, Any] = field(default_factory=dict)


def cut_row_group(rows_per_unit: int, group: RowGroup) -> list[WorkUnit]:
    return group.units(rows_per_unit)


class Stage:
    """A build stage. Subclasses set ``name`` and implement :meth:`make_core` (and
    :meth:`output_schema`), or override :meth:`run` for more than one pass."""

    name: ClassVar[str]
    #: Bumped when a change of the stage's code changes its output, so old results rerun.
    version: ClassVar[int] = 1
    #: Top-level config keys the output depends on (all but out/runner/beam_options if None).
    config_keys: ClassVar[tuple[str, ...] | None] = None
    #: Rows per work unit: enough to amortise a unit's fixed cost (a few files, a footer),
    #: few enough to spread a small input over every worker.
    rows_per_unit: ClassVar[int] = 50_000
    #: The smallest unit worth its fixed cost (a few files and a marker) when small inputs
    #: are cut finer to keep every local worker busy.
    min_rows_per_unit: ClassVar[int] = 2_000

    def fingerprint(self, config: BuildConfig) -> dict[str, Any]:
        """What the stage's output depends on besides its input; a change reruns the stage.
        Settings marked operational (speed, politeness) are left out."""
        data = output_settings(config)
        keys = self.config_keys
        if keys is None:
            keys = tuple(k for k in data if k not in ("out", "runner", "beam_options"))
        return {"version": self.version, "config": {k: data[k] for k in keys}}

    def output_schema(self, config: BuildConfig) -> pa.Schema | None:
        """Arrow schema of the kept records (None: the stage publishes its own)."""
        return None

    def unit_size(self, config: BuildConfig) -> int:
        return self.rows_per_unit

    def worker_state(self, config: BuildConfig) -> tuple[str, list[Any]] | None:
        """What every worker of this stage builds before its first unit, which openwit's
        local pool may build once for all of them while earlier stages run:
        ``("module:function", args)``, called in the process the workers are forked from
        (:mod:`openwit.worker_zygote`). None: nothing worth it. Other runners ignore it."""
        return None

    def make_core(self, ctx: StageContext, resources: Resources) -> Callable[[], UnitCore]:
        """A picklable factory of the stage's core (built once per worker, in setup);
        ``resources``: what one worker process of this pass may use."""
        raise NotImplementedError(f"stage {self.name} has no core")

    def run(self, ctx: StageContext) -> StageResult:
        """One pass: the previous stage's records, cut into units, through the core."""
        from openwit.unit_transform import run_units
        from openwit.units import count_units

        groups, per_unit = ctx.plan_groups(
            ctx.input_files, self.unit_size(ctx.config), self.min_rows_per_unit
        )
        ctx.start_plan({"groups": [list(vars(g).values()) for g in groups], "unit": per_unit})
        units = count_units(groups, per_unit)
        if groups:
            core = self.make_core(ctx, ctx.resources_for(units))
            fn = ctx.run_units_fn(core, self.output_schema(ctx.config))
            with ctx.new_pipeline(units) as pipeline:
                run_units(
                    pipeline, self.name, groups, functools.partial(cut_row_group, per_unit), fn
                )
        return StageResult(units=units)

    def finalize(self, ctx: StageContext, totals: StageTotals) -> dict[str, Any]:
        """Launcher-side work after the last pass (merging side tables, writing an index);
        returns stats for the manifest."""
        return {}

    def published_prefixes(self, build_dir: str) -> Sequence[str]:
        """Directories outside the attempt where this stage publishes files (shards)."""
        return ()
