"""The synthetic candidate pool and query list of ``bench_scale``.

A pool as a user's first real build looks: Parquet files of (url, caption) rows, captions
of 2-30 English words drawn with a Zipf law from the 49k-merge BPE vocabulary open_clip
ships (real words, frequent ones first), 4% exact duplicate pairs, 2% junk captions; and a
500,000-query list (the words, and bigrams of frequent words).
"""

from __future__ import annotations

import gzip
import random
import re
from pathlib import Path

QUERIES = 500_000
ROWS_PER_FILE = 250_000
ROW_GROUP = 50_000


def vocabulary() -> list[str]:
    """Whole English words of open_clip's BPE vocabulary, in merge (roughly frequency) order."""
    import open_clip

    path = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    words, seen = [], set()
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        merges = handle.read().split("\n")[1:]
    for line in merges:
        parts = line.split()
        if len(parts) != 2 or not parts[1].endswith("</w>"):
            continue
        word = parts[0] + parts[1][:-4]
        if re.fullmatch(r"[a-z]{3,12}", word) and re.search(r"[aeiouy]", word) and word not in seen:
            seen.add(word)
            words.append(word)
    return words[:30_000]


def write_queries(path: Path, words: list[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from openwit.schemas import QUERY_SCHEMA

    rng = random.Random(1)
    queries = list(words)
    seen = set(queries)
    head = words[:3000]
    while len(queries) < QUERIES:
        bigram = f"{rng.choice(head)} {rng.choice(words[:20_000])}"
        if bigram not in seen:
            seen.add(bigram)
            queries.append(bigram)
    rows = {
        "query": queries,
        "source": ["unigram"] * len(words) + ["bigram"] * (QUERIES - len(words)),
    }
    rows["count"] = [1] * QUERIES
    rows["score"] = [1.0] * QUERIES
    pq.write_table(pa.table(rows, schema=QUERY_SCHEMA), path)


def write_pool(folder: Path, size: int, words: list[str]) -> None:
    """``size`` rows in files of 250,000 (row groups of 50,000), cached by size."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    done = folder / "complete"
    if done.exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(size)
    ranks = np.arange(1, len(words) + 1, dtype=np.float64)
    weights = 1.0 / ranks**1.05
    weights /= weights.sum()
    vocab = np.array(words, dtype=object)
    for start in range(0, size, ROWS_PER_FILE):
        count = min(ROWS_PER_FILE, size - start)
        lengths = np.clip(rng.lognormal(2.2, 0.55, count).astype(int), 2, 30)
        drawn = rng.choice(len(words), size=int(lengths.sum()), p=weights)
        captions, at = [], 0
        for length in lengths:
            captions.append(" ".join(vocab[drawn[at : at + length]]))
            at += length
        urls = [
            f"https://img{(start + i) % 977}.example.com/p/{start + i}.jpg" for i in range(count)
        ]
        junk = rng.random(count) < 0.02
        for index in np.flatnonzero(junk):
            captions[index] = f"IMG_{index:04d}.jpg"
        dups = np.flatnonzero(rng.random(count) < 0.04)
        for index in dups:  # the same pair again, as pools repeat rows
            other = int(rng.integers(0, count))
            urls[index], captions[index] = urls[other], captions[other]
        table = pa.table({"url": urls, "caption": captions})
        pq.write_table(
            table, folder / f"pool-{start // ROWS_PER_FILE:05d}.parquet", row_group_size=ROW_GROUP
        )
    done.write_text("ok")
