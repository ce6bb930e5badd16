"""Query matching at 500k queries: openwit's matcher against MetaCLIP's own pyahocorasick matcher.

The baseline is MetaCLIP's Aho-Corasick matcher as its repository writes it
(``substr_matching_ahocorasick.py``): pyahocorasick over the space-padded entries, values
``(id, entry)``, a Python loop adding ids to a set, the str.replace spacing. Also measured
in the same run on the same texts, with the same results checked: the matcher with the
boundary check over unpadded entries (the form ENVIRONMENT.md measured), and pyahocorasick
with openwit's spacing and int values (the library swap on equal terms). Then the Beam
match stage against its plain core on the same Parquet file.

Every text is matched once per matcher (a cold pass, as in a build: repeating a small set
of texts would keep the automaton states they touch in cache and flatter the character
automata); the texts go in chunks of 500 and the matchers take turns on each chunk in
rotating order, so a busy neighbour on this shared machine slows all of them alike.

The world is synthetic but shaped like the real one: a Zipf vocabulary of 300k words,
500k queries (200k unigrams, 200k bigrams, 100k capitalised 2-5 word titles) and captions
of 3-18 Zipf words with some punctuation and capitals.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from operator import itemgetter
from pathlib import Path
from typing import Any

from common import emit, install_guard

install_guard()

N_QUERIES = 500_000
N_TEXTS = 100_000
N_STAGE_RECORDS = 100_000
_second = itemgetter(1)


def make_world(seed: int = 0) -> tuple[list[str], list[str]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    syllables = np.array(
        [
            "ba",
            "ce",
            "di",
            "fo",
            "gu",
            "ha",
            "je",
            "ki",
            "lo",
            "mu",
            "na",
            "pe",
            "qui",
            "ro",
            "su",
            "ta",
            "ve",
            "wi",
            "xo",
            "ya",
            "ze",
            "an",
            "el",
            "in",
            "or",
            "us",
            "st",
            "tr",
            "pl",
            "gr",
        ]
    )
    vocab: list[str] = ["a", "the", "of", "and", "in", "on", "with", "for", "to", "at", "by"]
    seen = set(vocab)
    while len(vocab) < 300_000:
        lengths = rng.choice([1, 2, 2, 3, 3, 3, 4], size=50_000)
        parts = rng.choice(syllables, size=(50_000, 4))
        for length, row in zip(lengths, parts):
            word = "".join(row[:length])
            if word not in seen:
                seen.add(word)
                vocab.append(word)
    words = np.array(vocab[:300_000], dtype=object)
    weights = 1.0 / np.arange(1, len(words) + 1) ** 1.05
    weights /= weights.sum()

    def sample(count: int) -> np.ndarray:
        return words[rng.choice(len(words), size=count, p=weights)]

    queries = dict.fromkeys(vocab[:200_000])
    while len(queries) < 400_000:
        for a, b in sample(200_000).reshape(-1, 2):
            queries[f"{a} {b}"] = None
    while len(queries) < N_QUERIES:
        for length in (2, 3, 3, 4, 5):
            for row in sample(20_000 * length).reshape(-1, length):
                queries[" ".join(row).title()] = None
    query_list = list(queries)[:N_QUERIES]
    rng.shuffle(query_list)

    endings = ["", "", "", ".", "!", ",", " - photo", ": detail", " (2019)"]
    lengths = rng.integers(3, 19, size=N_TEXTS)
    flat = sample(int(lengths.sum()))
    texts, start = [], 0
    for length in lengths:
        text = " ".join(flat[start : start + length])
        start += length
        if rng.random() < 0.3:
            text = text.capitalize()
        texts.append(text + endings[int(rng.integers(len(endings)))])
    return query_list, texts


def metaclip_spacing_replace(text: str) -> str:
    spaced = f" {text} "
    for mark in [",", ".", ";", ":", "?", "!", "`"]:
        spaced = spaced.replace(mark, f" {mark} ")
    for control in ["\t", "\n", "\r"]:
        spaced = spaced.replace(control, " ")
    return spaced


class MetaClipReference:
    """MetaCLIP's pyahocorasick matcher, written the way its repository does it."""

    def __init__(self, queries: list[str]) -> None:
        import ahocorasick

        self.automaton = ahocorasick.Automaton()
        for index, query in enumerate(queries):
            entry = f" {query} "
            self.automaton.add_word(entry, (index, entry))
        self.automaton.make_automaton()

    def match(self, text: str) -> list[int]:
        ids = set()
        for _end, (index, _entry) in self.automaton.iter(metaclip_spacing_replace(text)):
            ids.add(index)
        return sorted(ids)


class BoundaryCheckReference:
    """Unpadded entries and a boundary check per reported match."""

    def __init__(self, queries: list[str]) -> None:
        import ahocorasick

        self.automaton = ahocorasick.Automaton()
        for index, query in enumerate(queries):
            self.automaton.add_word(query, (index, len(query)))
        self.automaton.make_automaton()

    def match(self, text: str) -> list[int]:
        spaced = metaclip_spacing_replace(text)
        ids = set()
        for end, (index, length) in self.automaton.iter(spaced):
            start = end - length + 1
            if spaced[start - 1] == " " and spaced[end + 1] == " ":
                ids.add(index)
        return sorted(ids)


class PyAhocorasickInts:
    """pyahocorasick on openwit's terms: int values, the fast spacing, no Python loop."""

    def __init__(self, queries: list[str]) -> None:
        import ahocorasick

        self.automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
        for index, query in enumerate(queries):
            self.automaton.add_word(f" {query} ", index)
        self.automaton.make_automaton()

    def match(self, text: str) -> list[int]:
        from openwit.text import metaclip_spacing as spaced

        return sorted(set(map(_second, self.automaton.iter(spaced(text)))))


def timed_build(factory, queries):
    started = time.perf_counter()
    matcher = factory(queries)
    return matcher, time.perf_counter() - started


def interleaved_rates(
    matchers: dict[str, Any], texts: list[str], chunk: int = 500
) -> tuple[dict[str, float], dict[str, list[list[int]]]]:
    """Texts/s of each matcher over one cold pass, the matchers taking turns per chunk."""
    names = list(matchers)
    totals = dict.fromkeys(names, 0.0)
    results: dict[str, list[list[int]]] = {name: [] for name in names}
    for number, start in enumerate(range(0, len(texts), chunk)):
        part = texts[start : start + chunk]
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            match = matchers[name].match
            started = time.perf_counter()
            found = [match(t) for t in part]
            totals[name] += time.perf_counter() - started
            results[name].extend(found)
    return {name: len(texts) / totals[name] for name in names}, results


def stage_versus_core(
    queries: list[str], texts: list[str], tmp: Path
) -> tuple[float, float, float]:
    """Wall time of the Beam match stage and of its plain core on the same Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from openwit.config import BuildConfig
    from openwit.pipeline.match.matcher import QueryMatcher, read_queries
    from openwit.pipeline.match.stage import MatchStage, match_table
    from openwit.schemas import QUERY_SCHEMA, REJECTION_SCHEMA, candidate_schema, uid_for
    from openwit.stage import StageContext

    query_rows = [{"query": q, "source": "unigram", "count": 1, "score": 0.0} for q in queries]
    pq.write_table(pa.Table.from_pylist(query_rows, schema=QUERY_SCHEMA), tmp / "q.parquet")
    records = []
    for index in range(N_STAGE_RECORDS):
        text = texts[index % len(texts)]
        url = f"https://x.example/{index}.jpg"
        records.append(
            {
                "uid": uid_for(url, text),
                "url": url,
                "text": text,
                "source": "pool",
                "source_offset": index,
                "lang": "en",
                "lang_score": 0.9,
            }
        )
    source = tmp / "text" / "part-00000-of-00001.parquet"
    source.parent.mkdir()
    pq.write_table(
        pa.Table.from_pylist(records, schema=candidate_schema("text")),
        source,
        row_group_size=10_000,
    )

    build_times = []

    def plain_core() -> None:
        started = time.perf_counter()
        matcher = QueryMatcher(read_queries(str(tmp / "q.parquet")))
        build_times.append(time.perf_counter() - started)
        out = tmp / "core"
        out.mkdir(exist_ok=True)
        parquet = pq.ParquetFile(source)
        with (
            pq.ParquetWriter(out / "part.parquet", candidate_schema("match")) as kept_out,
            pq.ParquetWriter(out / "rejections.parquet", REJECTION_SCHEMA) as rejected_out,
        ):
            for group in range(parquet.num_row_groups):
                kept, rejected = match_table(matcher, parquet.read_row_group(group))
                kept_out.write_table(kept)
                rejected_out.write_table(rejected)

    def beam_stage(run: int) -> None:
        import openwit.pipeline.match.matcher as matcher_module

        matcher_module._cache.clear()  # build the automaton inside the run, like the core
        work = tmp / f"beam{run}"
        work.mkdir()
        config = BuildConfig(queries=str(tmp / "q.parquet"))
        MatchStage().run(StageContext("match", config, tmp, work, [source]))

    core_times, beam_times = [], []
    for run in range(2):
        started = time.perf_counter()
        plain_core()
        core_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        beam_stage(run)
        beam_times.append(time.perf_counter() - started)
    return min(beam_times), min(core_times), min(build_times)


def main() -> None:
    sys.setrecursionlimit(10_000)
    started = time.perf_counter()
    queries, texts = make_world()
    print(f"world made in {time.perf_counter() - started:.1f} s", file=sys.stderr)

    from openwit.pipeline.match.matcher import QueryMatcher

    reference, reference_build = timed_build(MetaClipReference, queries)
    ours, ours_build = timed_build(QueryMatcher, queries)
    boundary, _ = timed_build(BoundaryCheckReference, queries)
    py_ints, py_ints_build = timed_build(PyAhocorasickInts, queries)

    matchers = {"reference": reference, "ours": ours, "boundary": boundary, "py_ints": py_ints}
    rates, results = interleaved_rates(matchers, texts)
    expected = results["reference"]
    for name in matchers:
        assert results[name] == expected, f"{name} disagrees with MetaCLIP's matcher"
    matches = statistics.mean(len(m) for m in expected)
    baseline = "MetaCLIP pyahocorasick matcher (padded entries)"
    emit(
        "match_texts_per_s_500k_queries",
        rates["ours"],
        "texts/s",
        baseline,
        rates["reference"],
        queries=len(queries),
        texts=len(texts),
        mean_matches_per_text=round(matches, 2),
    )
    emit(
        "match_texts_per_s_vs_boundary_check",
        rates["ours"],
        "texts/s",
        "pyahocorasick, unpadded entries + boundary check",
        rates["boundary"],
    )
    emit(
        "match_pyahocorasick_ints_texts_per_s",
        rates["py_ints"],
        "texts/s",
        baseline,
        rates["reference"],
        openwit_over_this=round(rates["ours"] / rates["py_ints"], 3),
    )
    emit(
        "match_automaton_build_s",
        ours_build,
        "s",
        "MetaCLIP pyahocorasick build",
        reference_build,
        pyahocorasick_ints_build_s=round(py_ints_build, 3),
    )
    del reference, boundary, py_ints

    with tempfile.TemporaryDirectory() as tmp:
        beam_s, core_s, build_s = stage_versus_core(queries, texts, Path(tmp))
    # Both include one automaton build from the same file; the overhead on the per-record
    # work is (roughly) the ratio without the build time the core measured.
    per_record = (beam_s - build_s) / max(core_s - build_s, 1e-9)
    emit(
        "match_stage_beam_wall_s",
        beam_s,
        "s",
        "plain core, same files and automaton",
        core_s,
        records=N_STAGE_RECORDS,
        overhead_without_build=round(per_record, 3),
    )


if __name__ == "__main__":
    main()
