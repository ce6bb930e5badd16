"""A run of ``openwit_dataset_build``: its params checked and its build config pinned.

The first task of the DAG turns the params into a :func:`prepare_build` result: the
resolved config (paths absolute, the run's runner and Beam options applied), its hash,
the stages to run and the checked query-list request. Every later task reads that result
from XCom instead of the YAML file, so a file edited mid-run cannot give two stages two
configs, and a retried or cleared task rebuilds with the config its run started with.

Mistakes raise :class:`UserError` with the same one line ``openwit build`` prints for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from openwit.config import BuildConfig, load_build_config
from openwit.errors import ConfigError, UserError
from openwit.stage_names import BUILD_STAGES, stage_index

DATAFLOW = "DataflowRunner"


def _installed(distribution: str) -> bool:
    try:
        metadata.version(distribution)  # looked up without importing (and starting) Airflow
    except metadata.PackageNotFoundError:
        return False
    return True


def stages_through(until: str | None) -> list[str]:
    if until is None:
        return list(BUILD_STAGES)
    try:
        return list(BUILD_STAGES[: stage_index(until) + 1])
    except KeyError as exc:
        raise ConfigError(f"--until: {exc.args[0]}") from None


def shards_uri(build_dir: str) -> str:
    """The URI of a build's shard folder: the identity of the Asset that publishes it."""
    if "://" in build_dir and not build_dir.startswith("file://"):
        return build_dir.rstrip("/") + "/shards"
    from openwit.builddir import BuildDir

    return BuildDir(build_dir.removeprefix("file://")).shards_uri()


def location(uri: str) -> str:
    """A ``file://`` URI as a local path; any other URI as it is."""
    if uri.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        return unquote(urlsplit(uri).path)
    return uri


def load_config(params: Mapping[str, Any]) -> BuildConfig:
    """The build config the params name, with the params' runner and Beam options applied."""
    source = params.get("config")
    if not source or not isinstance(source, str):
        raise UserError(
            "config: give the path or URL of the build config "
            "(param `config`, or OPENWIT_BUILD_CONFIG for scheduled runs)"
        )
    overrides: dict[str, Any] = {}
    if params.get("runner"):
        overrides["runner"] = params["runner"]
    beam_options = params.get("beam_options") or {}
    if not isinstance(beam_options, Mapping):
        raise UserError("beam_options: expected a mapping of Beam pipeline options")
    if beam_options:
        overrides["beam_options"] = dict(beam_options)
    if "://" in source and not source.startswith("file://"):
        return load_build_config(source, overrides)
    return load_build_config(Path(source.removeprefix("file://")).expanduser(), overrides)


def prepare_build(params: Mapping[str, Any]) -> dict[str, Any]:
    """Check a build run's params and inputs; return what every later task needs (JSON)."""
    from openwit.beam import pipeline_options
    from openwit.build import check_build_inputs

    config = load_config(params)
    until = params.get("until") or None
    stages = stages_through(until)
    queries = None
    if params.get("queries"):
        from openwit.airflow.querylist import check_query_request

        if not isinstance(params["queries"], Mapping):
            raise UserError("queries: expected a mapping (wiki_dump, pageviews, wordnet, settings)")
        queries = check_query_request(params["queries"], config.queries)
    # The list the queries step is about to write need not exist yet.
    check_build_inputs(config, [s for s in stages if not (queries and s == "match")])
    pipeline_options(config.runner, config.beam_options)  # bad Beam options fail here
    if config.runner == DATAFLOW and not _installed("apache-airflow-providers-google"):
        raise UserError(
            "runner DataflowRunner: install apache-airflow-providers-google on the workers "
            "(the Beam operator takes Dataflow settings from it)"
        )
    return {
        "config": config.to_json(),
        "config_hash": config.hash(),
        "build_dir": config.out,
        "shards_uri": shards_uri(config.out),
        "stages": stages,
        "until": until,
        "runner": config.runner,
        "beam_options": config.beam_options,
        "queries": queries,
    }


def dataflow_settings(beam_options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split Dataflow's own settings out of ``beam_options`` for the operator.

    The Beam operator takes project, region, job name and service account through the
    Google provider's ``DataflowConfiguration`` (and passes them back to Beam itself, with
    a unique job name and its labels); returns (configuration kwargs, remaining options).
    """
    names = {
        "project": "project_id",
        "region": "location",
        "job_name": "job_name",
        "service_account_email": "service_account",
        "impersonate_service_account": "impersonation_chain",
    }
    config = {names[k]: v for k, v in beam_options.items() if k in names}
    rest = {k: v for k, v in beam_options.items() if k not in names}
    return config, rest
