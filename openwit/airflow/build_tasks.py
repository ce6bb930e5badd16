"""The tasks and params of ``openwit_dataset_build`` (the DAG file wires them together).

check -> queries -> ingest -> text -> match -> balance -> download -> image -> dedup ->
shard -> validate -> publish. ``check`` pins the run's config (:mod:`.requests`) and fails
at once on a mistake (``AirflowFailException``: no retries); each stage is a
:class:`BuildStepOperator`; ``publish`` emits the shards event through
:data:`openwit.airflow.assets.SHARDS`.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset, Param, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from openwit.airflow import settings
from openwit.airflow.assets import SHARDS, newest_event
from openwit.airflow.operators import QUERIES, BuildStepOperator
from openwit.errors import UserError
from openwit.stage_names import BUILD_STAGES


def build_params() -> dict[str, Param]:
    """The run's params; Airflow checks their types when a run is triggered."""
    return {
        "config": Param(
            settings.default_build_config(),
            type=["null", "string"],
            description="Path or URL of the build config (YAML); OPENWIT_BUILD_CONFIG by default.",
        ),
        "runner": Param(
            "DirectRunner",
            type="string",
            pattern=r"^[A-Za-z0-9_]+$",
            description="Beam runner: DirectRunner, FlinkRunner, SparkRunner, DataflowRunner, ...",
        ),
        "beam_options": Param(
            {},
            type="object",
            description="Beam pipeline options, merged over the config's beam_options "
            "(flink_master, spark_master_url, project, region, temp_location, ...).",
        ),
        "until": Param(
            None,
            type=["null", "string"],
            enum=[None, *BUILD_STAGES],
            description="Stop after this stage (the later stages, validate and publish skip).",
        ),
        "queries": Param(
            None,
            type=["null", "object"],
            properties={
                "wiki_dump": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "pageviews": {"type": "array", "items": {"type": "string"}},
                "wordnet": {"type": ["null", "string"]},
                "settings": {"type": "object"},
            },
            required=["wiki_dump"],
            additionalProperties=False,
            description="Rebuild the query list (the config's `queries:` file) first from "
            "these inputs: wiki_dump, pageviews, wordnet, settings (thresholds).",
        ),
    }


@task(task_id="check")
def check_inputs(params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Config, runner, Beam options and input files; the pinned request for later tasks."""
    from openwit.airflow.requests import prepare_build

    try:
        request = prepare_build(params or {})
    except UserError as error:
        raise AirflowFailException(str(error)) from None
    print(
        f"build {request['build_dir']} (config {request['config_hash'][:12]}), "
        f"runner {request['runner']}, stages {', '.join(request['stages'])}"
        + (", query list first" if request["queries"] else "")
    )
    return request


def query_list_step() -> BuildStepOperator:
    return BuildStepOperator(step=QUERIES)


def stage_step(stage: str) -> BuildStepOperator:
    # The first stage also runs when the optional query-list step skipped.
    rule = "none_failed" if stage == BUILD_STAGES[0] else "all_success"
    return BuildStepOperator(step=stage, trigger_rule=rule)


@task(task_id="validate", trigger_rule="none_failed")
def validate_build(ti: Any = None) -> dict[str, Any]:
    """Funnel law over the stages that ran; shard tars, their indexes and sizes.json."""
    from openwit.airflow.requests import location
    from openwit.airflow.results import validate_build as validate
    from openwit.builddir import BuildDir
    from openwit.errors import FunnelLawError

    request = ti.xcom_pull(task_ids="check")
    build = BuildDir(location(request["build_dir"]))
    try:
        summary = validate(build, request["stages"])
    except (FunnelLawError, ValueError) as error:
        raise AirflowFailException(f"build {build.root} is not valid: {error}") from None
    print(f"build {build.root} valid: {summary}")
    return summary


@task(task_id="publish", outlets=[SHARDS], inlets=[SHARDS])
def publish_shards(
    ti: Any = None, outlet_events: Any = None, inlet_events: Any = None
) -> dict[str, Any]:
    """Emit the shards event (URI of the shard folder; config hash and counts as extra),
    unless the newest event of these shards already announced this very shard stage."""
    from openwit.airflow.requests import location
    from openwit.airflow.results import shards_extra
    from openwit.builddir import BuildDir

    request = ti.xcom_pull(task_ids="check")
    if "shard" not in request["stages"]:
        raise AirflowSkipException(f"until={request['until']}: no shards to publish")
    summary = ti.xcom_pull(task_ids="validate")
    build = BuildDir(location(request["build_dir"]))
    uri = request["shards_uri"]
    extra = shards_extra(build, request["config_hash"], summary)
    previous = newest_event(inlet_events, uri)
    if (
        previous is not None
        and (previous.extra or {}).get("shards_version") == extra["shards_version"]
    ):
        raise AirflowSkipException(
            f"{uri} unchanged since its event of {previous.timestamp}: not published again"
        )
    outlet_events[SHARDS].add(Asset(uri), extra=extra)
    print(f"published {uri}: {extra['samples']} samples in {extra['shards']} shards")
    return {"uri": uri, **extra}
