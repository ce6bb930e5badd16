"""Thresholds and limits of the query list builder (``openwit queries build --config``).

The defaults are MetaCLIP's reported English settings: unigrams seen at least 100 times,
bigrams with PMI of at least 30 bits, titles with at least 70 views, 500,000 queries in all.
A YAML file holds any of these keys at its top level; ``--set key=value`` overrides one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator

from openwit.config import ConfigError, Section, format_validation_error
from openwit.yaml_files import read_yaml_mapping


class QueryBuildConfig(Section):
    min_unigram_count: int = Field(100, ge=1, description="occurrences in the article text")
    min_bigram_count: int = Field(
        2, ge=1, description="occurrences a bigram needs before its PMI is considered"
    )
    min_bigram_pmi: float = Field(30.0, description="log2 PMI, NLTK's form (docs/queries.md)")
    min_title_views: int = Field(70, ge=1, description="views summed over the page-view files")
    min_hourly_views: int = Field(
        1, ge=1, description="ignore hourly counts below this (MetaCLIP used 50)"
    )
    pageview_domains: list[str] = Field(
        default_factory=lambda: ["en"], description="domain codes of the chosen wiki"
    )
    max_queries: int = Field(500_000, ge=1)
    max_query_chars: int = Field(256, ge=1, description="longer queries are dropped")
    keep_partial: bool = Field(
        False, description="keep what was read of a truncated dump instead of failing"
    )
    reshuffle_pages: bool = Field(
        False, description="spread pages over workers (for fewer dump files than workers)"
    )
    shards: int = Field(
        64, ge=1, le=65_536, description="key shards the counts are merged and joined in"
    )
    flush_keys: int = Field(
        500_000, ge=1_000, description="distinct n-grams a worker holds before passing them on"
    )

    @field_validator("pageview_domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        if not value or any(not d or " " in d for d in value):
            raise ValueError("needs at least one domain code without spaces (en, en.m, ...)")
        return value


def load_query_config(
    path: str | Path | None, overrides: Mapping[str, Any] | None = None
) -> QueryBuildConfig:
    """Read ``path`` (YAML, optional), apply ``overrides`` and validate; exit 2 on errors."""
    raw: dict[str, Any] = read_yaml_mapping(Path(path)) if path is not None else {}
    source = str(path) if path is not None else "queries config"
    for key, value in (overrides or {}).items():
        raw[key] = value
    if overrides:
        source += " (with command-line overrides)"
    try:
        return QueryBuildConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None
