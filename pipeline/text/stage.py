"""Build stage ``text``: normalise captions, drop the ones that are not captions, tag language.

The stage rewrites ``text`` in place with its normalised form (the form the match stage
matches and the shards store); ``uid`` stays the one ingest computed from the raw pair, so a
record keeps its id through the build. It adds ``lang`` and ``lang_score``.

Rejections: ``empty_text``, ``url_text``, ``filename_text``, ``camera_settings``,
``too_long``, ``too_short`` (see :mod:`openwit.pipeline.text.filters`), then
``not_allowed_language`` (detected language not in ``text.languages``) and
``uncertain_language`` (allowed, but scored below ``text.min_lang_score``).

The core works on a unit's table: it reads the ``text`` column, decides each caption with
:func:`check_text`, and builds the kept table with Arrow (filter, replace, append): no
Python dict per record.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from openwit.config import BuildConfig, TextConfig
from openwit.funnel import Rejection
from openwit.outputs import UnitOutput, rejections_table
from openwit.resources import Resources
from openwit.schemas import candidate_schema
from openwit.stage import Stage, StageContext
from openwit.unit_transform import TableCore

from .filters import content_rejection, normalize_text
from .langid import LanguageId, language_id

STAGE = "text"
OUTPUT_SCHEMA = candidate_schema(STAGE)
#: Captions decided at a time (see :func:`filter_texts`).
CHUNK_ROWS = 8192

#: A caption's verdict: ``(text, lang, score)`` to keep it, or ``(reason, detail)``.
Verdict = tuple[str, str, float] | tuple[str, str]


def check_text(settings: TextConfig, identify: LanguageId, raw: str) -> Verdict:
    """The text core for one caption: its normalised text and language, or why not."""
    text = normalize_text(raw)
    problem = content_rejection(text, settings.min_words, settings.min_chars, settings.max_chars)
    if problem is not None:
        return problem
    lang, score = identify(text)
    if settings.languages and lang not in settings.languages:
        return "not_allowed_language", f"{lang} {score:.2f}"
    if score < settings.min_lang_score:
        return "uncertain_language", f"{lang} {score:.2f}"
    return text, lang, score


def filter_texts(settings: TextConfig, identify: LanguageId, table: pa.Table) -> UnitOutput:
    """The text core for a unit: kept records (normalised, with language) and rejections.
    A caption the core raises on is a ``stage_error`` rejection.

    The unit is decided :data:`CHUNK_ROWS` captions at a time, so that the Python strings
    made for the checks are a chunk's, whatever the unit's size."""
    kept, rejected = [], []
    for start in range(0, max(1, table.num_rows), CHUNK_ROWS):
        chunk_kept, chunk_rejected = _filter_chunk(
            settings, identify, table.slice(start, CHUNK_ROWS)
        )
        kept.append(chunk_kept)
        rejected.append(chunk_rejected)
    return UnitOutput(pa.concat_tables(kept), pa.concat_tables(rejected))


def _filter_chunk(
    settings: TextConfig, identify: LanguageId, table: pa.Table
) -> tuple[pa.Table, pa.Table]:
    uids = table.column("uid").to_pylist()
    keep: list[bool] = []
    texts: list[str] = []
    langs: list[str] = []
    scores: list[float] = []
    rejected: list[Rejection] = []
    for uid, raw in zip(uids, table.column("text").to_pylist()):
        try:
            verdict = check_text(settings, identify, raw)
        except Exception as exc:
            verdict = exc  # type: ignore[assignment]
        if isinstance(verdict, Exception):
            rejected.append(Rejection.stage_error(uid, STAGE, verdict))
            keep.append(False)
        elif len(verdict) == 2:
            rejected.append(Rejection(uid, STAGE, *verdict))
            keep.append(False)
        else:
            text, lang, score = verdict
            texts.append(text)
            langs.append(lang)
            scores.append(score)
            keep.append(True)
    kept = table.filter(pa.array(keep, pa.bool_()))
    kept = kept.set_column(
        kept.schema.get_field_index("text"), "text", pa.array(texts, pa.string())
    )
    kept = kept.append_column("lang", pa.array(langs, pa.string()))
    kept = kept.append_column("lang_score", pa.array(scores, pa.float32()))
    return kept.select(OUTPUT_SCHEMA.names).cast(OUTPUT_SCHEMA), rejections_table(rejected)


def text_core(settings: TextConfig) -> TableCore:
    """Builds the core once per worker: loads the language-ID model there, not in the launcher."""
    return TableCore(functools.partial(filter_texts, settings, language_id(settings.lang_backend)))


class TextStage(Stage):
    name = STAGE
    version = 1
    config_keys = ("text",)

    def output_schema(self, config: BuildConfig) -> pa.Schema:
        return OUTPUT_SCHEMA

    def make_core(self, ctx: StageContext, resources: Resources) -> Callable[[], Any]:
        return functools.partial(text_core, ctx.config.text.model_copy())
