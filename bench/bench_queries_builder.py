"""The query builder on a generated Wikipedia dump of 100,000 articles.

Figures (each against a baseline measured in the same run):

- ``queries_builder_pages_per_s``: the whole ``build_queries`` (bz2 reading, XML parsing,
  wikitext stripping, counting, Beam CombinePerKey, PMI joins, union, Parquet) on the
  in-memory DirectRunner, against a plain single-process Python loop that does the same
  counting with the same functions and ``collections.Counter`` (no Beam). The ratio is the
  Beam builder's speed relative to the plain loop; ``beam_overhead`` = 1 / ratio - 1.
- ``queries_builder_multiprocess_pages_per_s``: the same on 2 worker processes (one per dump
  file) against the in-memory run.
- ``wikitext_strip_pages_per_s``: openwit's regex stripper against mwparserfromhell's
  ``strip_code`` on the same articles.

The dump is generated deterministically (Zipf-distributed vocabulary, infoboxes with nested
templates, citations, links with labels, tables, images, categories, interlanguage links),
as two multistream bz2 files of 50,000 articles each. Articles are short (about 1.3 kB of
wikitext, where English Wikipedia averages several times that) to keep the benchmark to a
few minutes on 2 cores. The dump is cached under the system temp directory between runs.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections import Counter
from pathlib import Path

from common import emit, install_guard

install_guard()

ARTICLES = 100_000
FILES = 2
SEED = 7
CACHE = Path(tempfile.gettempdir()) / f"openwit-bench-queries-v1-{ARTICLES}"
SYLLABLES = [
    "ka",
    "lo",
    "mi",
    "ra",
    "to",
    "ne",
    "shi",
    "vu",
    "dor",
    "an",
    "el",
    "is",
    "ur",
    "pe",
    "ba",
    "go",
    "ti",
    "sen",
    "mar",
    "qu",
]
FUNCTION_WORDS = ["the", "of", "and", "in", "a", "to", "was", "is", "for", "on", "as", "by"]


def vocabulary(rng: random.Random, size: int = 60_000) -> list[str]:
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))))
    content = sorted(words)
    rng.shuffle(content)  # Zipf ranks must not follow the alphabet
    return (FUNCTION_WORDS + content)[:size]


class ArticleWriter:
    """Realistic-looking wikitext, deterministic from the seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.words = vocabulary(self.rng)
        self.weights = [1 / (rank + 1) ** 1.07 for rank in range(len(self.words))]
        self.cum = [0.0] * len(self.weights)
        total = 0.0
        for index, weight in enumerate(self.weights):
            total += weight
            self.cum[index] = total
        # Names: pairs of rare words that always occur together (high-PMI bigrams).
        self.names = [
            f"{self.words[-1 - 2 * i].title()} {self.words[-2 - 2 * i]}" for i in range(2_000)
        ]

    def sentence(self) -> str:
        rng = self.rng
        words = rng.choices(self.words, cum_weights=self.cum, k=rng.randint(6, 16))
        for _ in range(rng.randint(0, 2)):
            index = rng.randrange(len(words))
            label = words[index]
            if "[" in label:
                continue
            words[index] = rng.choice(
                [f"[[{label}]]", f"[[{label.title()} ({rng.choice(self.words[:50])})|{label}]]"]
            )
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words)), rng.choice(self.names))
        if rng.random() < 0.15:
            words[0] = f"'''{words[0]}'''"
        text = " ".join(words).capitalize()
        text += rng.choice([".", ".", ".", ",", ";"]) if rng.random() < 0.2 else "."
        if rng.random() < 0.25:
            year = rng.randint(1800, 2025)
            text += f"<ref>{{{{cite web |title={words[0]} |year={year} |url=https://x.org/{year}}}}}</ref>"
        return text

    def article(self, title: str) -> str:
        rng = self.rng
        parts = [
            "{{Short description|" + " ".join(rng.choices(self.words[:300], k=4)) + "}}",
            "{{Infobox thing\n| name = " + title + "\n| born = {{birth date|1950|1|2}}"
            "\n| place = [[" + rng.choice(self.names) + "]]\n}}",
        ]
        for section in range(rng.randint(2, 3)):
            if section:
                parts.append(f"== {rng.choice(self.words[:400]).title()} ==")
            parts.append(" ".join(self.sentence() for _ in range(rng.randint(2, 4))))
        if rng.random() < 0.3:
            rows = "\n|-\n".join(
                f"| {rng.randint(1, 99)} || {rng.choice(self.words)}" for _ in range(3)
            )
            parts.append('{| class="wikitable"\n! Year !! Value\n|-\n' + rows + "\n|}")
        if rng.random() < 0.4:
            parts.append(f"[[File:{title}.jpg|thumb|The [[{rng.choice(self.words)}]] in 1900]]")
        parts.append(
            "\n".join(f"[[Category:{rng.choice(self.words[:2000]).title()}]]" for _ in range(3))
        )
        parts.append(f"[[de:{title}]]\n[[fr:{title}]]")
        return "\n".join(parts) + "\n"


def generate(root: Path) -> list[Path]:
    from openwit.queries.export_xml import DumpPage, write_dump

    files = [root / f"benchwiki-pages-articles-multistream{i + 1}.xml.bz2" for i in range(FILES)]
    if all(f.exists() for f in files):
        return files
    root.mkdir(parents=True, exist_ok=True)
    writer = ArticleWriter(SEED)
    per_file = ARTICLES // FILES
    for index, path in enumerate(files):
        pages = [
            DumpPage(f"Article {n}", writer.article(f"Article {n}"), page_id=n + 1)
            for n in range(index * per_file, (index + 1) * per_file)
        ]
        tmp = path.with_name(f".{path.name}")  # same suffix: write_dump compresses by it
        write_dump(tmp, pages, multistream=True)
        tmp.rename(path)
    return files


def plain_loop(files: list[Path], config) -> tuple[int, int]:
    """The same counting, single process, no Beam: the baseline."""
    import pyarrow.parquet as pq

    from openwit.queries.dump import iter_pages, skip_reason
    from openwit.queries.ngrams import count_ngrams, pmi
    from openwit.queries.union import rows_to_table, union_queries
    from openwit.queries.wikitext import wikitext_to_text

    unigrams: Counter[str] = Counter()
    bigrams: Counter[str] = Counter()
    words = pages = 0
    for path in files:
        for page in iter_pages(path):
            pages += 1
            if skip_reason(page) is None:
                words += count_ngrams(wikitext_to_text(page.text), unigrams, bigrams)
    candidates = {
        "unigram": [(q, c, float(c)) for q, c in unigrams.items() if c >= config.min_unigram_count],
        "bigram": [],
    }
    for bigram, count in bigrams.items():
        if count >= config.min_bigram_count:
            first, second = bigram.split(" ", 1)
            score = pmi(count, unigrams[first], unigrams[second], words)
            if score >= config.min_bigram_pmi:
                candidates["bigram"].append((bigram, count, score))
    rows, _ = union_queries(candidates, config.max_queries, config.max_query_chars)
    with tempfile.TemporaryDirectory() as tmp:
        pq.write_table(rows_to_table(rows), Path(tmp) / "q.parquet")
    return pages, len(rows)


def main() -> None:
    from openwit.queries.build import build_queries
    from openwit.queries.config import QueryBuildConfig
    from openwit.queries.dump import iter_pages
    from openwit.queries.wikitext import wikitext_to_text

    started = time.perf_counter()
    files = generate(CACHE)
    generated_s = time.perf_counter() - started
    config = QueryBuildConfig(min_bigram_pmi=12.0)  # log2(N) is ~23 here, not Wikipedia's 32

    started, cpu_started = time.perf_counter(), time.process_time()
    plain_pages, plain_rows = plain_loop(files, config)
    plain_s, plain_cpu_s = time.perf_counter() - started, time.process_time() - cpu_started

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = build_queries(files, Path(tmp) / "queries.parquet", config=config)
        beam_s = time.perf_counter() - started
        started = time.perf_counter()
        build_queries(
            files,
            Path(tmp) / "queries-mp.parquet",
            config=config,
            beam_options={"direct_running_mode": "multi_processing", "direct_num_workers": FILES},
        )
        multi_s = time.perf_counter() - started
        same = (Path(tmp) / "queries.parquet").read_bytes() == (
            Path(tmp) / "queries-mp.parquet"
        ).read_bytes()
    pages = result.inputs["dump.pages_read"]
    assert pages == plain_pages == ARTICLES and result.rows == plain_rows, (pages, result.rows)
    ratio = (pages / beam_s) / (plain_pages / plain_s)
    emit(
        "queries_builder_pages_per_s",
        pages / beam_s,
        "pages/s",
        "plain single-process Python loop, same counting",
        plain_pages / plain_s,
        beam_overhead=round(1 / ratio - 1, 4),
        beam_s=round(beam_s, 2),
        plain_s=round(plain_s, 2),
        plain_cpu_s=round(plain_cpu_s, 2),  # one core's work: the base of scaling estimates
        words=result.inputs["text.words"],
        queries=result.rows,
        dump_generated_s=round(generated_s, 1),
    )
    emit(
        "queries_builder_multiprocess_pages_per_s",
        pages / multi_s,
        "pages/s",
        "same builder, in-memory DirectRunner",
        pages / beam_s,
        workers=FILES,
        identical_output=same,
    )

    sample = [p.text for _, p in zip(range(2_000), iter_pages(files[0]))]
    megabytes = sum(len(t.encode()) for t in sample) / 1e6
    started = time.perf_counter()
    ours = [wikitext_to_text(t) for t in sample]
    ours_s = time.perf_counter() - started
    started = time.perf_counter()
    theirs = [strip_with_mwparserfromhell(t) for t in sample]
    theirs_s = time.perf_counter() - started

    def leaks(texts: list[str]) -> int:
        return sum(("Category:" in t) or ("thumb|" in t) or ("||" in t) for t in texts)

    emit(
        "wikitext_strip_pages_per_s",
        len(sample) / ours_s,
        "pages/s",
        "mwparserfromhell strip_code",
        len(sample) / theirs_s,
        wikitext_mb_per_s=round(megabytes / ours_s, 2),
        mwparserfromhell_mb_per_s=round(megabytes / theirs_s, 2),
        pages_with_leaked_markup=leaks(ours),
        mwparserfromhell_pages_with_leaked_markup=leaks(theirs),
        mean_wikitext_bytes=round(megabytes * 1e6 / len(sample)),
    )


if __name__ == "__main__":
    main()


def strip_with_mwparserfromhell(wikitext: str) -> str:
    """The stripper's job done by mwparserfromhell (the comparison)."""
    import mwparserfromhell

    return mwparserfromhell.parse(wikitext).strip_code(normalize=True, collapse=True)
