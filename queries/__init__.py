"""The query list (CLIP's 500,000 queries): Wikipedia words and bigrams, popular titles, WordNet.

Public API (imported on first use, so ``openwit --help`` stays light)::

    from openwit.queries import QueryBuildConfig, build_queries, read_query_table

Modules: ``dump`` (MediaWiki XML reader), ``wikitext`` (wikitext to text), ``ngrams``
(words, bigrams, PMI), ``pageviews``, ``wordnet``, ``shards`` (sharded counts and the PMI
joins), ``pipeline`` (the Beam counting pipeline), ``union`` (provenance, cap, order),
``build`` (the driver), ``report`` (tables), ``export_xml`` (writes dumps, page views and
WNDB dirs for tests, the demo and benchmarks).
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "build_queries": "openwit.queries.build",
    "QueryBuildResult": "openwit.queries.build",
    "QueryBuildConfig": "openwit.queries.config",
    "load_query_config": "openwit.queries.config",
    "read_query_table": "openwit.queries.report",
    "show_queries": "openwit.queries.report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'openwit.queries' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
