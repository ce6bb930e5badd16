"""``openwit build``: the list of build stages and the checks made before running them.

This module imports every stage (and so Beam): the CLI imports it only inside ``openwit
build``, so ``openwit --help`` stays fast.
"""

from __future__ import annotations

import logging

from openwit.config import BuildConfig
from openwit.dedup.stage import DedupStage
from openwit.errors import ConfigError
from openwit.inputs import check_build_inputs
from openwit.pipeline.balance.stage import BalanceStage
from openwit.pipeline.download.stage import DownloadStage
from openwit.pipeline.image.stage import ImageStage
from openwit.pipeline.ingest.stage import IngestStage
from openwit.pipeline.match.stage import MatchStage
from openwit.pipeline.shard.stage import ShardStage
from openwit.pipeline.text.stage import TextStage
from openwit.progress import Reporter
from openwit.runner import BuildOutcome, BuildRunner
from openwit.stage import Stage
from openwit.stage_names import BUILD_STAGES, stage_index
from openwit.workers import spawned_early_for

#: The build stages, in order.
STAGES: list[type[Stage]] = [
    IngestStage,
    TextStage,
    MatchStage,
    BalanceStage,
    DownloadStage,
    ImageStage,
    DedupStage,
    ShardStage,
]
assert tuple(s.name for s in STAGES) == BUILD_STAGES

log = logging.getLogger(__name__)


def load_stage(name: str) -> Stage:
    """A new instance of build stage ``name``."""
    return STAGES[stage_index(name)]()


def stages_through(until: str | None) -> list[str]:
    """Stage names from the first through ``until`` (all when None)."""
    if until is None:
        return list(BUILD_STAGES)
    try:
        last = stage_index(until)
    except KeyError as exc:
        raise ConfigError(f"--until: {exc.args[0]}") from None
    return list(BUILD_STAGES[: last + 1])


def run_build(
    config: BuildConfig,
    until: str | None = None,
    resume: bool = False,
    reporter: Reporter | None = None,
    report: bool = True,
) -> BuildOutcome:
    """Run the build stages for ``config``: the Python entry point of ``openwit build``.

    A complete build ends with its report (``report/``) unless ``report`` is False (for a
    caller that writes it itself, with more in it: the demo).
    """
    from openwit.beam import pipeline_options

    with spawned_early_for(config):
        names = stages_through(until)
        check_build_inputs(config, names)
        pipeline_options(config.runner, config.beam_options)  # a bad option fails here
        stages = [load_stage(name) for name in names]
        runner = BuildRunner(config, stages, reporter, final_stage=BUILD_STAGES[-1])
        outcome = runner.run(resume=resume)
    if outcome.complete and report:
        outcome.report = write_report(outcome.build_dir)
    return outcome


def run_stage(config: BuildConfig, stage: str, reporter: Reporter | None = None) -> BuildOutcome:
    """Run one build stage of ``config.out`` with ``--resume`` semantics: a scheduler's task.

    The stages before ``stage`` must be complete and up to date (they are skipped); one that
    is not is a :class:`UserError` rather than work done here. Only ``stage``'s own inputs
    are checked, so a crawl file removed after ingest does not fail the shard stage. A
    complete, up-to-date ``stage`` is skipped; an interrupted one keeps its committed work.
    """
    from openwit.beam import pipeline_options

    runner = _stage_task_runner(config, stage, reporter)
    pipeline_options(config.runner, config.beam_options)
    return runner.run(resume=True, only=stage)


def stage_is_up_to_date(config: BuildConfig, stage: str) -> bool:
    """Whether :func:`run_stage` would find ``stage`` and the stages before it complete and
    up to date, and its own inputs still there: then it would start a pipeline only to skip
    them. Reads the build directory; runs and locks nothing."""
    return _stage_task_runner(config, stage).up_to_date(stage)


def _stage_task_runner(
    config: BuildConfig, stage: str, reporter: Reporter | None = None
) -> BuildRunner:
    """The runner of a scheduler's task for ``stage``: the stages through it, once
    ``stage``'s own inputs are found."""
    names = stages_through(stage)
    check_build_inputs(config, [stage])
    stages = [load_stage(name) for name in names]
    return BuildRunner(config, stages, reporter, final_stage=BUILD_STAGES[-1])


def write_report(build_dir: str) -> str | None:
    """The build report of a complete build (its path or URL); a failure is a warning,
    never a failed build."""
    from openwit.report import write_build_report

    try:
        return write_build_report(build_dir).html
    except Exception as exc:  # the shards are done; a report bug must not undo that
        log.warning("build report not written: %s: %s", type(exc).__name__, exc)
        return None
