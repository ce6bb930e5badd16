"""The build's inputs, checked before any stage runs: input files, the query list, eval sets.

Light to import (no Beam): the CLI and the Airflow check task call it to fail fast, with the
same one-line errors, before a pipeline starts.
"""

from __future__ import annotations

import glob
from pathlib import Path

from openwit import fs
from openwit.config import BuildConfig
from openwit.errors import ConfigError


def _is_remote(path: str) -> bool:
    return not fs.is_local(path)


def expand_input_paths(config: BuildConfig) -> list[list[str]]:
    """Input files per ``inputs`` entry: globs expanded (sorted), local or in a bucket.

    Raises :class:`ConfigError` naming the entry and the path when a path or glob matches
    no file.
    """
    if not config.inputs:
        raise ConfigError("config: inputs: no input files given (add at least one `- path:`)")
    expanded = []
    for index, spec in enumerate(config.inputs):
        path = spec.path.removeprefix("file://")
        if glob.has_magic(path):
            matches = fs.glob(path)
        elif _is_remote(path):
            matches = [path] if fs.exists(path) else files_under(path)
        elif Path(path).is_dir():
            matches = files_under(path)
            if not matches:
                raise ConfigError(f"inputs[{index}].path: no data files in the folder {spec.path}")
        else:
            matches = [path] if Path(path).is_file() else []
        if not matches:
            raise ConfigError(f"inputs[{index}].path: no such file: {spec.path}")
        expanded.append(matches)
    return expanded


def files_under(folder: str) -> list[str]:
    """The data files of a folder (a prefix in a bucket) at any depth, sorted: a pool is
    often a folder of Parquet parts. Names that start with ``_`` or ``.`` at any level are
    a writer's bookkeeping (``_SUCCESS``, ``.part-0.crc``, ``_temporary/``), as Spark and
    Hive treat them, and are left out."""
    root = folder.rstrip("/")
    found = []
    for url in fs.list_files(root):
        relative = url[len(root) :].strip("/").split("/")
        if not any(part.startswith(("_", ".")) for part in relative):
            found.append(url)
    return sorted(found)


def check_build_inputs(config: BuildConfig, stage_names: list[str]) -> None:
    """Fail early, before any pipeline starts, on input files that do not exist and on a
    query list the match stage could not use."""
    if "ingest" in stage_names:
        expand_input_paths(config)
    if "match" in stage_names:
        queries = config.queries
        found = fs.exists(queries) if _is_remote(queries) else Path(queries).is_file()
        if not found:
            raise ConfigError(
                f"queries: no such file: {queries} (build it with `openwit queries build`)"
            )
        from openwit.pipeline.match.matcher import check_queries_file

        check_queries_file(queries)
    if "dedup" in stage_names:
        for name, root in config.dedup.eval_sets.items():
            found = bool(fs.list_files(root)) if _is_remote(root) else Path(root).is_dir()
            if not found:
                raise ConfigError(f"dedup.eval_sets.{name}: no such directory: {root}")
