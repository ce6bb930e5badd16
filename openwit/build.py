"""``openwit build``: the list of build stages and the checks made before running them.

This module imports every stage (and so Beam): the CLI imports it only inside ``openwit
build``, so ``openwit --help`` stays fast.
"""

from __future__ import annotations

import glob
from pathlib import Path

from openwit.config import BuildConfig
from openwit.dedup.stage import DedupStage
from openwit.errors import ConfigError
from openwit.pipeline.balance.stage import BalanceStage
from openwit.pipeline.download.stage import DownloadStage
from openwit.pipeline.image.stage import ImageStage
from openwit.pipeline.ingest.stage import IngestStage
from openwit.pipeline.match.matcher import check_queries_file
from openwit.pipeline.match.stage import MatchStage
from openwit.pipeline.shard.stage import ShardStage
from openwit.pipeline.text.stage import TextStage
from openwit.runner import BuildOutcome, BuildRunner, Reporter
from openwit.schemas import BUILD_STAGES, stage_index
from openwit.stage import Stage

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
    """Fail early, before any pipeline starts, on input files that do not exist and on a
    query list the match stage could not use."""
    if "ingest" in stage_names:
        expand_input_paths(config)
    if "match" in stage_names:
        if not _is_remote(config.queries) and not Path(config.queries).is_file():
            raise ConfigError(
                f"queries: no such file: {config.queries} (build it with `openwit queries build`)"
            )
        check_queries_file(config.queries)
    if "dedup" in stage_names:
        for name, root in config.dedup.eval_sets.items():
            if not _is_remote(root) and not Path(root).is_dir():
                raise ConfigError(f"dedup.eval_sets.{name}: no such directory: {root}")


def run_build(
    config: BuildConfig,
    until: str | None = None,
    resume: bool = False,
    reporter: Reporter | None = None,
) -> BuildOutcome:
    """Run the build stages for ``config``: the Python entry point of ``openwit build``."""
    from openwit.beam import pipeline_options

    names = stages_through(until)
    check_build_inputs(config, names)
    pipeline_options(config.runner, config.beam_options)  # a bad option fails before any stage
    stages = [load_stage(name) for name in names]
    return BuildRunner(config, stages, reporter, final_stage=BUILD_STAGES[-1]).run(resume=resume)
