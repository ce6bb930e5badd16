"""Build stage ``text``: normalise captions, drop the ones that are not captions, tag language.

The stage rewrites ``text`` in place with its normalised form (the form the match stage
matches and the shards store); ``uid`` stays the one ingest computed from the raw pair, so a
record keeps its id through the build. It adds ``lang`` and ``lang_score``.

Rejections: ``empty_text``, ``url_text``, ``filename_text``, ``camera_settings``,
``too_long``, ``too_short`` (see :mod:`openwit.pipeline.text.filters`), then
``not_allowed_language`` (detected language not in ``text.languages``) and
``uncertain_language`` (allowed, but scored below ``text.min_lang_score``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from openwit.config import BuildConfig, TextConfig
from openwit.funnel import Rejection
from openwit.schemas import candidate_schema
from openwit.stage import CoreStage

from .filters import content_rejection, normalize_text
from .langid import LanguageId, language_id

STAGE = "text"


def filter_text(
    settings: TextConfig, identify: LanguageId, record: dict[str, Any]
) -> Iterator[dict[str, Any] | Rejection]:
    """The text-stage core: one record in, the normalised record or a rejection out."""
    text = normalize_text(record["text"])
    problem = content_rejection(text, settings.min_words, settings.min_chars, settings.max_chars)
    if problem is not None:
        yield Rejection(record["uid"], STAGE, *problem)
        return
    lang, score = identify(text)
    if settings.languages and lang not in settings.languages:
        yield Rejection(record["uid"], STAGE, "not_allowed_language", f"{lang} {score:.2f}")
        return
    if score < settings.min_lang_score:
        yield Rejection(record["uid"], STAGE, "uncertain_language", f"{lang} {score:.2f}")
        return
    yield {**record, "text": text, "lang": lang, "lang_score": score}


def text_core(settings: TextConfig) -> Callable[[dict[str, Any]], Any]:
    """Builds the core once per worker: loads the language-ID model there, not in the launcher."""
    return functools.partial(filter_text, settings, language_id(settings.lang_backend))


class TextStage(CoreStage):
    name = STAGE
    version = 1
    config_keys = ("text",)

    def output_schema(self, config: BuildConfig) -> pa.Schema:
        return candidate_schema("text")

    def make_core(self, config: BuildConfig) -> Callable[[], Any]:
        return functools.partial(text_core, config.text.model_copy())
