"""The demo's query part: the real builder on the bundled sample (``openwit/demo/data``).

Thresholds are lowered for a 36-article sample (about 4,000 words): unigrams seen 5 times,
bigrams seen 5 times with a PMI of at least 2 bits (the reachable maximum here is about 10),
titles with 50 views. Everything else is the real command: Beam on the DirectRunner, the
same parsing, counting and union. The demo's captions are lowercase ("a red circle on a
grey background"), so the words they use must come out as queries: this part checks it.
"""

from __future__ import annotations

from pathlib import Path

from openwit.demo import DemoContext

DEMO_DATA = Path(__file__).resolve().parent / "data"
DEMO_THRESHOLDS = {
    "min_unigram_count": 5,
    "min_bigram_count": 5,
    "min_bigram_pmi": 2.0,
    "min_title_views": 50,
}


def caption_words() -> set[str]:
    """Every word of the demo's captions (lowercase, as captions write them)."""
    from openwit.demo.world import CAPTION_TEMPLATES, iter_vocabulary
    from openwit.text import match_tokens

    words = set(iter_vocabulary())
    for template in CAPTION_TEMPLATES:
        filled = template.format(colour="red", shape="circle", background="grey")
        words.update(match_tokens(filled))
    return words


def run(ctx: DemoContext) -> str:
    import pyarrow.parquet as pq

    from openwit.queries.build import build_queries
    from openwit.queries.config import QueryBuildConfig

    out = ctx.out / "queries.parquet"
    result = build_queries(
        sorted(DEMO_DATA.glob("*.xml.bz2")),
        out,
        pageviews=sorted(DEMO_DATA.glob("pageviews-*.gz")),
        wordnet=DEMO_DATA / "wordnet",
        config=QueryBuildConfig(**DEMO_THRESHOLDS),
    )
    queries = set(pq.read_table(out, columns=["query"]).column("query").to_pylist())
    missing = sorted(caption_words() - queries)
    if missing:
        raise RuntimeError(f"demo query list lacks caption words: {', '.join(missing)}")
    ctx.queries = out
    ctx.results["queries"] = {"rows": result.rows, "summary": str(out)}
    kept = ", ".join(f"{s.kept} {s.source}" for s in result.sources)
    return f"{result.rows} queries ({kept}) from {result.inputs['dump.articles']} articles"
