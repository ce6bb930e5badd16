"""The demo part builds its query list from the bundled sample with the real builder."""

from __future__ import annotations

import subprocess
import sys

import pyarrow.parquet as pq

from openwit.demo import DemoContext
from openwit.demo.queries import DEMO_DATA, caption_words, run


def test_demo_part_writes_a_query_list_holding_every_caption_word(tmp_path):
    ctx = DemoContext(out=tmp_path)
    summary = run(ctx)
    assert ctx.queries == tmp_path / "queries.parquet"
    table = pq.read_table(ctx.queries)
    queries = set(table.column("query").to_pylist())
    assert {"red", "circle", "grey", "background", "photo", "of", "a", "on"} <= queries
    assert caption_words() <= queries
    assert set(table.column("source").to_pylist()) == {"unigram", "bigram", "title", "wordnet"}
    assert "36 articles" in summary


def test_bundled_sample_is_what_the_committed_script_writes(tmp_path):
    script = DEMO_DATA / "make_demo_dump.py"
    copy = tmp_path / "make_demo_dump.py"
    copy.write_text(script.read_text())
    subprocess.run([sys.executable, str(copy)], check=True, timeout=120)
    for path in [
        "demowiki-20260101-pages-articles.xml.bz2",
        "pageviews-20260101-000000.gz",
        "wordnet/data.noun",
        "wordnet/data.adj",
    ]:
        assert (tmp_path / path).read_bytes() == (DEMO_DATA / path).read_bytes(), path
