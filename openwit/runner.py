"""The stage runner: runs a build's stages in order, each committed by naming its attempt.

For every stage it decides whether the committed output is still valid (same fingerprint
-- stage version, the config keys it depends on, the fingerprint of the stage before it --
and every committed file present with its recorded size), runs it if not, counts what it
wrote from its units' done markers, checks the funnel law, and commits.

A stage writes only into its own *attempt* directory, ``OUT/stages/<stage>/<attempt>/``
(and, for the shard stage, ``OUT/shards/``). Committing needs no rename, so it works the
same in a bucket: the runner writes the attempt's file list with sizes
(``<attempt>/_commit.json``, :mod:`openwit.commits`), then the manifest naming the attempt
(:mod:`openwit.manifest`) -- the manifest is the record written last. Readers trust only
the attempt the manifest names (:mod:`openwit.builddir`); attempts that were abandoned are
deleted after a commit.
Progress goes to a :class:`~openwit.progress.Reporter`.

A rerun with the same config rewrites nothing; ``resume`` continues the attempt an
interrupted run left (its finished units are kept); ``until`` stops after a named stage.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from openwit import fs
from openwit.commits import (
    damage,
    finished_units,
    new_attempt,
    relative,
    remove_other_attempts,
    write_commit,
)
from openwit.config import BuildConfig, json_hash
from openwit.errors import ConfigError, UserError, WorkerLost
from openwit.funnel import Funnel, StageCounts
from openwit.lease import Lease, build_lease
from openwit.manifest import load_manifest, now, package_versions, save_manifest
from openwit.outputs import collect_totals
from openwit.progress import Reporter, SilentReporter, UnitProgress
from openwit.resources import resources_for
from openwit.stage import Stage, StageContext

log = logging.getLogger(__name__)

#: How many times a stage resumes on new workers after openwit's local pool lost one
#: (killed for memory, say) before the build fails: as Beam's runners retry a failed bundle.
WORKER_LOSS_RETRIES = 1


@dataclass
class BuildOutcome:
    build_dir: str
    funnel: Funnel
    manifest: dict[str, Any]
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    report: str | None = None  # report/index.html (a path or URL), once written

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete"))


@contextlib.contextmanager
def long_lived_objects_frozen() -> Iterator[None]:
    """Keep Python's cyclic garbage collector off the objects that exist before the build.

    Every full collection walks every tracked object, and after importing Beam, pyarrow and
    pydantic that is hundreds of thousands of objects that live as long as the process
    (measured: 0.61 s of collections in a 3,000-image build, 0.31 s with them frozen).
    They go back to the collector afterwards, so a process that runs many builds (tests,
    a notebook) still collects what each leaves.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class BuildRunner:
    """Runs ``stages`` (in order) for ``config`` into ``config.out``.

    The build is marked complete when its last stage has run, or ``final_stage`` when the
    list given is only a prefix of the build (``openwit build --until``).
    """

    def __init__(
        self,
        config: BuildConfig,
        stages: Sequence[Stage],
        reporter: Reporter | None = None,
        final_stage: str | None = None,
    ) -> None:
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate stage names: {names}")
        self.config = config
        self.stages = list(stages)
        self._prepared = False  # the pool was asked for the stages' worker states
        self._until: str | None = None
        self._only: str | None = None
        self.reporter = reporter or SilentReporter()
        self.build_dir = str(config.out).rstrip("/")
        self.final_stage = final_stage or names[-1]
        self._pool_stack: contextlib.ExitStack | None = None
        self._pool: Any = None

    # -- paths -----------------------------------------------------------------------------
    def stage_root(self, name: str) -> str:
        return fs.join(self.build_dir, "stages", name)

    def attempt_dir(self, name: str, attempt: str) -> str:
        return fs.join(self.stage_root(name), attempt)

    # -- running ---------------------------------------------------------------------------
    def run(
        self, until: str | None = None, resume: bool = False, only: str | None = None
    ) -> BuildOutcome:
        """Run (or skip, when up to date) every stage through ``until``.

        ``only`` names the one stage this call may run: a stage before it that is not
        complete and up to date is an error instead of being run here (a scheduler's
        task per stage does its own stage's work, never its predecessors').
        """
        names = [s.name for s in self.stages]
        for flag, name in (("--until", until), ("only", only)):
            if name is not None and name not in names:
                raise ConfigError(f"{flag} {name!r}: not a stage; stages are: {', '.join(names)}")
        fs.configure(self.config.beam_options)
        fs.makedirs(self.build_dir)
        self._until, self._only, self._prepared = until, only, False
        with (
            build_lease(self.build_dir) as lease,
            long_lived_objects_frozen(),
            contextlib.ExitStack() as pools,
        ):
            self._pool_stack = pools
            try:
                return self._run_locked(until, resume, only, lease)
            finally:
                self._pool_stack, self._pool = None, None

    def _spawn_worker_pool(self) -> None:
        """Start openwit's local worker pool's processes, once, without waiting for them:
        called when the first stage runs (never when every stage is skipped), so that they
        import while that stage's first passes run here. ``openwit build`` has usually
        spawned them already (:func:`openwit.workers.spawned_early`): this takes those."""
        if self._pool is None and self._pool_stack is not None:
            from openwit.workers import local_pool, pool_size_for

            size = pool_size_for(self.config.runner, self.config.beam_options)
            self._pool = self._pool_stack.enter_context(local_pool(size)) or False

    def _prepare_workers(self, stage: Stage) -> None:
        """On the first stage that runs, ask the pool to prepare what the workers of it and
        of every later stage this run may run build before their first unit
        (:meth:`Stage.worker_state`); then give ``stage`` workers that have its own."""
        if not self._pool:
            return
        if not self._prepared:
            self._prepared = True
            names = [s.name for s in self.stages]
            last = names.index(self._only or self._until or names[-1])
            for later in self.stages[names.index(stage.name) : last + 1]:
                state = later.worker_state(self.config)
                if state is not None:
                    self._pool.prepare(*state, self.config.beam_options)
        if stage.worker_state(self.config) is not None:
            self._pool.refresh()

    def _worker_pool(self) -> Any:
        """The local worker pool, connected (shared by every stage of the build)."""
        self._spawn_worker_pool()
        if self._pool and not self._pool.connected:
            self._pool.connect()
        return self._pool or None

    def _run_locked(
        self, until: str | None, resume: bool, only: str | None, lease: Lease
    ) -> BuildOutcome:
        manifest = load_manifest(self.build_dir)
        manifest["openwit_version"] = package_versions().get("openwit", "unknown")
        manifest["config"] = self.config.to_json()
        manifest["config_hash"] = self.config.hash()
        manifest["stage_order"] = [s.name for s in self.stages]
        manifest.setdefault("versions", package_versions())
        entries: dict[str, Any] = manifest["stages"]
        outcome = BuildOutcome(self.build_dir, Funnel(), manifest)

        upstream = ""
        previous: StageCounts | None = None
        last_run = None
        for index, stage in enumerate(self.stages):
            fingerprint = self._fingerprint(stage, upstream)
            entry = entries.get(stage.name) or {}
            valid = self._committed_as(entry, fingerprint)
            if valid:
                problems = damage(self.build_dir, entry)
                if problems:
                    self.reporter.stage_damaged(stage.name, problems)
                    valid = False
            if valid:
                counts = StageCounts.from_json(stage.name, entry["funnel"])
                outcome.skipped.append(stage.name)
                self.reporter.stage_skipped(stage.name, counts)
            else:
                if only is not None and stage.name != only:
                    raise UserError(
                        f"stage {stage.name} of {self.build_dir} is not complete for this config: "
                        f"run it (and the stages before it) before {only}"
                    )
                for later in self.stages[index + 1 :]:
                    entries.pop(later.name, None)  # everything downstream is now stale
                run = functools.partial(
                    self._run_stage, stage, fingerprint, previous, outcome=outcome, lease=lease
                )
                counts = self._resuming_on_new_workers(stage.name, run, resume)
                outcome.ran.append(stage.name)
            outcome.funnel.add(counts)
            previous, upstream, last_run = counts, fingerprint, stage.name
            if stage.name == until:
                break

        outcome.funnel.check()
        reached_end = last_run == self.final_stage
        manifest["until"] = None if reached_end else last_run
        manifest["complete"] = reached_end
        if outcome.ran:
            manifest["versions"] = package_versions()
        lease.check()
        save_manifest(self.build_dir, manifest, outcome.funnel)
        return outcome

    def _fingerprint(self, stage: Stage, upstream: str) -> str:
        """What a stage's committed output must have been made with to be reused: its
        version and settings (:meth:`Stage.fingerprint`) and the stage before it's."""
        own = stage.fingerprint(self.config)
        return json_hash({"stage": stage.name, "own": own, "upstream": upstream})

    @staticmethod
    def _committed_as(entry: dict[str, Any], fingerprint: str) -> bool:
        return entry.get("status") == "complete" and entry.get("fingerprint") == fingerprint

    def up_to_date(self, name: str) -> bool:
        """Whether ``run(only=name)`` would skip ``name`` and every stage before it: all
        complete, with this config's fingerprints, and intact. Reads the manifest without
        taking the build lock and starts nothing (a scheduler asks before it launches a
        pipeline for a stage, which on a cluster runner is a job)."""
        names = [s.name for s in self.stages]
        if name not in names:
            raise ConfigError(f"{name!r}: not a stage; stages are: {', '.join(names)}")
        fs.configure(self.config.beam_options)
        entries = load_manifest(self.build_dir)["stages"]
        upstream = ""
        for stage in self.stages[: names.index(name) + 1]:
            upstream = self._fingerprint(stage, upstream)
            entry = entries.get(stage.name) or {}
            if not self._committed_as(entry, upstream) or damage(self.build_dir, entry):
                return False
        return True

    def _resuming_on_new_workers(
        self, name: str, run: Callable[..., StageCounts], resume: bool
    ) -> StageCounts:
        """``run(resume=..., may_retry=...)`` (stage ``name``'s :meth:`_run_stage`); when
        openwit's local pool loses a worker, new workers take over and the stage resumes
        with the units it finished (``--resume``'s way), up to :data:`WORKER_LOSS_RETRIES`
        times: a long build does not stop for one process the kernel killed. The next loss
        fails the build with the loss's one line."""
        for retry in range(WORKER_LOSS_RETRIES + 1):
            may_retry = retry < WORKER_LOSS_RETRIES
            try:
                return run(resume=resume or retry > 0, may_retry=may_retry)
            except WorkerLost as lost:
                if not (may_retry and self._pool):
                    raise
                log.warning(
                    "%s in stage %s; it resumes on new workers, keeping its finished units",
                    lost.what_happened,
                    name,
                )
                self._replace_worker_pool()
        raise AssertionError("unreachable: the last try returns or raises")

    def _replace_worker_pool(self) -> None:
        """Stop the pool that lost a worker; the stage's next try starts another of the same
        size (:meth:`_spawn_worker_pool`: spawned, as the launcher has used gRPC by now)."""
        if self._pool:
            self._pool.stop()
        self._pool, self._prepared = None, False

    def _run_stage(
        self,
        stage: Stage,
        fingerprint: str,
        previous: StageCounts | None,
        resume: bool,
        outcome: BuildOutcome,
        lease: Lease,
        may_retry: bool = False,
    ) -> StageCounts:
        manifest, name = outcome.manifest, stage.name
        old = manifest["stages"].get(name) or {}
        keep = (
            resume
            and old.get("status") in ("running", "failed")
            and old.get("fingerprint") == fingerprint
            and old.get("attempt")
        )
        attempt_id = old["attempt"] if keep else new_attempt()
        attempt = self.attempt_dir(name, attempt_id)
        input_files = [] if previous is None else self.committed_parts(manifest, previous.stage)

        from openwit.workers import pool_size_for

        self._spawn_worker_pool()
        self._prepare_workers(stage)
        pool_size = pool_size_for(self.config.runner, self.config.beam_options)
        resources = resources_for(
            self.config.runner,
            self.config.beam_options,
            self.config.download.threads_per_worker,
            pool_size or None,
        )

        progress = UnitProgress(name, attempt, self.reporter)

        def pipeline_factory(units: int) -> Any:
            """A pass of one unit runs in this process (a worker pool would add start-up
            and a hop for nothing); more units run in the pool, started on first need."""
            from openwit.beam import new_pipeline

            pool = self._worker_pool() if units > 1 else None
            progress.start(units)
            return new_pipeline(self.config.runner, self.config.beam_options, pool)

        ctx = StageContext(
            name,
            self.config,
            self.build_dir,
            attempt,
            input_files,
            resources,
            bool(keep),
            pipeline_factory,
        )
        entry: dict[str, Any] = {
            "status": "running",
            "fingerprint": fingerprint,
            "attempt": attempt_id,
            "started": now(),
            "started_unix": round(time.time(), 3),  # for timelines: cores used per stage
        }
        if keep:
            entry["resumed_from"] = old.get("started")
        manifest["stages"][name] = entry
        manifest["complete"] = False
        save_manifest(self.build_dir, manifest, outcome.funnel)
        self.reporter.stage_started(name)
        started = time.perf_counter()
        resumed = finished_units(attempt) if keep else 0
        try:
            result = stage.run(ctx)
            totals = collect_totals(fs.list_files(attempt))
            finished = finished_units(attempt)
            if finished != result.units:
                raise RuntimeError(
                    f"{name}: {result.units - finished} of {result.units} work units did not finish"
                )
            stats = {**result.stats, **stage.finalize(ctx, totals)}
            if keep:
                stats["units_resumed"] = resumed
            n_in = previous.n_out if previous is not None else (totals.n_in or 0)
            counts = StageCounts(name, n_in, totals.n_out, dict(totals.rejected))
            Funnel([previous, counts] if previous else [counts]).check()
            lease.check()
            commit = write_commit(
                self.build_dir, attempt, stage.published_prefixes(self.build_dir), totals.published
            )
        except BaseException as exc:
            progress.stop()
            entry.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:2000])
            entry["seconds"] = round(time.perf_counter() - started, 3)
            with contextlib.suppress(Exception):  # the original error matters more
                save_manifest(self.build_dir, manifest, outcome.funnel)
            if not (may_retry and self._pool and isinstance(exc, WorkerLost)):
                self.reporter.stage_failed(name, exc)
            raise
        progress.stop()
        seconds = time.perf_counter() - started
        entry.update(
            status="complete",
            seconds=round(seconds, 3),
            funnel=counts.to_json(),
            stats={**stats, **{k: v for k, v in totals.stats.items() if k not in stats}},
            units=result.units,
            commit=relative(self.build_dir, commit),
        )
        # the commit: the manifest names the attempt
        save_manifest(self.build_dir, manifest, outcome.funnel)
        remove_other_attempts(self.stage_root(name), attempt)
        self.reporter.stage_finished(name, counts, seconds)
        return counts

    def committed_parts(self, manifest: dict[str, Any], name: str) -> list[str]:
        """The committed records of stage ``name`` (its last pass's part files)."""
        from openwit.builddir import BuildDir

        return BuildDir(self.build_dir).parts_of(manifest["stages"][name])
