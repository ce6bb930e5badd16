"""``openwit build``: the registry of build stages and the checks made before running them.

Stages are named by import path and imported only when a build runs, so the CLI stays
fast (``openwit --help`` imports no Beam).
"""

from __future__ import annotations

import glob
import importlib
import logging
from pathlib import Path

from openwit.config import BuildConfig
from openwit.errors import ConfigError
from openwit.runner import BuildOutcome, BuildRunner, Reporter
from openwit.schemas import BUILD_STAGES, stage_index
from openwit.stage import Stage

#: Where each build stage lives (module:class), in the order of ``BUILD_STAGES``.
STAGE_CLASSES: dict[str, str] = {
    "ingest": "openwit.pipeline.ingest:IngestStage",
    "text": "openwit.pipeline.text:TextStage",
    "match": "openwit.pipeline.match:MatchStage",
    "balance": "openwit.pipeline.balance:BalanceStage",
    "download": "openwit.pipeline.download:DownloadStage",
    "image": "openwit.pipeline.image:ImageStage",
    "dedup": "openwit.dedup.stage:DedupStage",
    "shard": "openwit.pipeline.shard:ShardStage",
}
assert tuple(STAGE_CLASSES) == BUILD_STAGES

log = logging.getLogger(__name__)


def load_stage(name: str) -> Stage:
    """Import and construct build stage ``name``."""
    module_name, _, class_name = STAGE_CLASSES[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)()


def stages_through(until: str | None) -> list[str]:
    """Stage names from the first through ``until`` (all when None)."""
    if until is None:
        return list(BUILD_STAGES)
    try:
        last = stage_index(until)
    except KeyError as exc:
        raise ConfigError(f"--until: {exc.args[0]}") from None
    return list(BUILD_STAGES[: last + 1])


def _is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def expand_input_paths(config: BuildConfig) -> list[list[str]]:
    """Local input paths per ``inputs`` entry (globs expanded, sorted); remote ones as given.

    Raises :class:`ConfigError` naming the entry and the path when a local glob matches no
    file.
    """
    if not config.inputs:
        raise ConfigError("config: inputs: no input files given (add at least one `- path:`)")
    expanded = []
    for index, spec in enumerate(config.inputs):
        if _is_remote(spec.path):
            expanded.append([spec.path])
            continue
        path = spec.path.removeprefix("file://")
        matches = sorted(glob.glob(path, recursive=True)) if glob.has_magic(path) else [path]
        matches = [m for m in matches if Path(m).is_file()]
        if not matches:
            raise ConfigError(f"inputs[{index}].path: no such file: {spec.path}")
        expanded.append(matches)
    return expanded


def check_build_inputs(config: BuildConfig, stage_names: list[str]) -> None:
    """Fail early, before any pipeline starts, on input files that do not exist."""
    if "ingest" in stage_names:
        expand_input_paths(config)
    if "match" in stage_names and not _is_remote(config.queries):
        if not Path(config.queries).is_file():
            raise ConfigError(
                f"queries: no such file: {config.queries} (build it with `openwit queries build`)"
            )
    if "dedup" in stage_names:
        for name, root in config.dedup.eval_sets.items():
            if not _is_remote(root) and not Path(root).is_dir():
                raise ConfigError(f"dedup.eval_sets.{name}: no such directory: {root}")


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

    names = stages_through(until)
    check_build_inputs(config, names)
    pipeline_options(config.runner, config.beam_options)  # a bad option fails before any stage
    stages = [load_stage(name) for name in names]
    outcome = BuildRunner(config, stages, reporter, final_stage=BUILD_STAGES[-1]).run(resume=resume)
    if outcome.complete and report:
        outcome.report = write_report(outcome.build_dir)
    return outcome


def write_report(build_dir: Path) -> Path | None:
    """The build report of a complete build; a failure is a warning, never a failed build."""
    from openwit.report import write_build_report

    try:
        return write_build_report(build_dir).html
    except Exception as exc:  # the shards are done; a report bug must not undo that
        log.warning("build report not written: %s: %s", type(exc).__name__, exc)
        return None
