"""The optional first step of ``openwit_dataset_build``: rebuild the query list.

The ``queries`` param names a Wikipedia dump (and optionally page views, WordNet and
thresholds); the list is written where the build config's ``queries:`` points, so the
match stage reads it. Counting a full dump takes hours, so the step is skipped when the
list exists and was built from the same inputs (same files, sizes and modification times)
and thresholds: a fingerprint of them is kept beside the list in ``<stem>.inputs.json``.
The list may be in a bucket (``queries: s3://...``), its stamp beside it.
The match stage's own fingerprint includes the list's digest, so an unchanged list reruns
nothing downstream.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from openwit.config import json_hash
from openwit.errors import UserError
from openwit.urls import is_local, local_path

REQUEST_KEYS = ("wiki_dump", "pageviews", "wordnet", "settings")


def _file_list(value: Any, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise UserError(f"queries.{key}: expected a list of paths or URLs")
    files = []
    for path in value:
        if not is_local(path):
            files.append(path)
            continue
        local = local_path(path).expanduser()
        if not local.is_file():
            raise UserError(f"queries.{key}: no such file: {path}")
        files.append(str(local.resolve()))
    return files


def check_query_request(request: Mapping[str, Any], out: str) -> dict[str, Any]:
    """The ``queries`` param checked and made absolute; ``out`` is the build's ``queries:``.

    Raises :class:`UserError` with one line for a missing file, an unknown key or a bad
    threshold (named as in ``openwit queries build``'s config).
    """
    from openwit.queries.config import load_query_config
    from openwit.queries.wordnet import wordnet_dir

    unknown = sorted(set(request) - set(REQUEST_KEYS))
    if unknown:
        raise UserError(f"queries: unknown key '{unknown[0]}' (keys: {', '.join(REQUEST_KEYS)})")
    dumps = _file_list(request.get("wiki_dump"), "wiki_dump")
    if not dumps:
        raise UserError("queries.wiki_dump: give at least one Wikipedia dump")
    wordnet = request.get("wordnet")
    if wordnet is not None:
        if not isinstance(wordnet, str):
            raise UserError("queries.wordnet: expected the path of a WordNet directory")
        wordnet = str(wordnet_dir(Path(wordnet).expanduser()).resolve())
    settings = request.get("settings") or {}
    if not isinstance(settings, Mapping):
        raise UserError("queries.settings: expected a mapping of thresholds")
    thresholds = load_query_config(None, dict(settings)).model_dump(mode="json")
    return {
        "wiki_dump": dumps,
        "pageviews": _file_list(request.get("pageviews"), "pageviews"),
        "wordnet": wordnet,
        "settings": thresholds,
        "out": out,
    }


def _describe(path: str) -> list[Any]:
    """What identifies an input's content without reading it: size and modification time."""
    if not is_local(path):
        from apache_beam.io.filesystems import FileSystems

        found = FileSystems.match([path])[0].metadata_list
        return sorted([m.path, m.size_in_bytes, m.last_updated_in_seconds] for m in found)
    stat = local_path(path).stat()
    return [path, stat.st_size, stat.st_mtime_ns]


def inputs_fingerprint(request: Mapping[str, Any]) -> str:
    """sha256 over the inputs' names, sizes and times and the thresholds."""
    wordnet = request.get("wordnet")
    wordnet_files = (
        [_describe(str(p)) for p in sorted(Path(wordnet).glob("data.*"))] if wordnet else []
    )
    return json_hash(
        {
            "wiki_dump": [_describe(p) for p in request["wiki_dump"]],
            "pageviews": [_describe(p) for p in request["pageviews"]],
            "wordnet": wordnet_files,
            "settings": request["settings"],
        }
    )


def stamp_path(out: str | Path) -> str:
    """``queries.parquet`` -> ``queries.inputs.json`` (beside it, as the list's summary)."""
    from openwit.queries.build import beside

    return beside(out, ".inputs.json")


def rows_if_up_to_date(request: Mapping[str, Any], fingerprint: str | None = None) -> Any:
    """The list's row count when it was built from these very inputs and settings (its
    stamp says so), else None: then there is nothing to build."""
    from openwit import fs

    out = request["out"]  # a path or a URL
    stamp = stamp_path(out)
    if not (fs.is_file(out) and fs.is_file(stamp)):
        return None
    try:
        previous = fs.read_json(stamp)
    except ValueError:
        return None
    if previous.get("fingerprint") != (fingerprint or inputs_fingerprint(request)):
        return None
    return previous.get("rows")


def build_query_list(
    request: Mapping[str, Any],
    runner: str,
    beam_options: Mapping[str, Any],
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build the list of a checked request unless it is up to date; returns numbers only."""
    from openwit import fs
    from openwit.queries.build import build_queries, summary_path
    from openwit.queries.config import QueryBuildConfig

    out = request["out"]  # a path or a URL
    fingerprint = inputs_fingerprint(request)
    rows = rows_if_up_to_date(request, fingerprint)
    if rows is not None:
        say(f"query list up to date ({rows} queries, same inputs): {out}")
        return {"ran": False, "rows": rows}
    result = build_queries(
        request["wiki_dump"],
        out,
        pageviews=request["pageviews"],
        wordnet=request["wordnet"],
        config=QueryBuildConfig.model_validate(request["settings"]),
        runner=runner,
        beam_options=dict(beam_options),
        status=say,
    )
    fs.write_json(stamp_path(out), {"fingerprint": fingerprint, "rows": result.rows})
    say(f"query list: {result.rows} queries -> {out} (summary: {summary_path(out)})")
    return {"ran": True, "rows": result.rows}
