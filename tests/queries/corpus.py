"""A small real input set whose query list is known by hand (counts worked out below).

Articles (namespace 0), as plain text after stripping (what must survive):

- Plague:  "Plague is a disease of the lungs caused by Yersinia pestis ."
           "Spread"
           "Most of the cases of the disease come from fleas . Yersinia pestis lives in fleas ."
- Flea:    "A flea is an insect . Fleas carry Yersinia pestis , the cause of the plague ."
- Rat:     "The rat is one of the hosts of the flea . Rats live in most of the world ;
            the rat carries the flea ."

27 + 14 + 22 = 63 words. Counts: the 10, of 7, Yersinia 3, pestis 3, is 3, flea 3; every
other word at most 2. Bigrams: "of the" 7 (the most frequent), "Yersinia pestis" 3, the
rest at most 2. PMI (bits): "Yersinia pestis" log2(3*63/(3*3)) = log2(21) = 4.39;
"of the" log2(7*63/(7*10)) = log2(6.3) = 2.66. With a threshold of 4 the first passes, the
frequent one does not.

Everything that must NOT be counted repeats those words: an infobox, a citation, a table, an
image caption, a category, an interlanguage link, redirects, disambiguation pages, talk and
template pages, a malformed page.
"""

from __future__ import annotations

import math
from pathlib import Path

from openwit.queries.config import QueryBuildConfig
from openwit.queries.export_xml import DumpPage, write_dump, write_pageviews, write_wndb

PLAGUE = """{{Infobox disease
| name = Plague
| cause = [[Yersinia pestis]] of the the
| image = {{nested|the {{deeper|of the}}}}
}}
'''Plague''' is a disease of the lungs caused by ''[[Yersinia pestis|Yersinia pestis]]''.\
<ref name="who">{{cite web |title=Plague of the world |url=https://who.int/plague}}</ref>
== Spread ==
<!-- the the of the -->
Most of the cases of the [[disease]] come from fleas. Yersinia pestis lives in fleas.\
<ref name="who"/>
{| class="wikitable"
! Year !! Cases of the disease
|-
| 1900 || the the the Yersinia pestis
|}
[[File:Yersinia.jpg|thumb|[[Yersinia pestis]] under the microscope]]
[[Category:Diseases of the lungs]]
[[de:Pest]]
"""
FLEA = (
    "A '''flea''' is an insect. Fleas carry [[Yersinia pestis]] , the cause of the "
    "[[Plague (disease)|plague]].\n{{Insect-stub}}\n"
)
RAT = (
    "The rat is one of the hosts of the [[flea]]. Rats live in most of the world; "
    "the rat carries the flea.\n"
)
SKIPPED_TEXT = "the the of the Yersinia pestis Yersinia pestis of the flea flea is is"

ARTICLES = [DumpPage("Plague", PLAGUE, page_id=1), DumpPage("Flea", FLEA, page_id=2)]
SKIPPED = [
    DumpPage("Pestis", "#REDIRECT [[Yersinia pestis]]", page_id=3, redirect_to="Yersinia pestis"),
    DumpPage("Fleas", "#redirect [[Flea]] " + SKIPPED_TEXT, page_id=4),  # no <redirect> tag
    DumpPage("Mercury", f"Mercury may be:\n* {SKIPPED_TEXT}\n{{{{Disambiguation}}}}", page_id=5),
    DumpPage("Plague (disambiguation)", f"* [[Plague]] {SKIPPED_TEXT}", page_id=6),
    DumpPage("Talk:Plague", SKIPPED_TEXT, ns=1, page_id=7),
    DumpPage("Template:Infobox disease", SKIPPED_TEXT, ns=10, page_id=8),
    DumpPage("Broken", SKIPPED_TEXT, ns=None, page_id=9),  # no <ns>: malformed
]
SECOND_FILE = [DumpPage("Rat", RAT, page_id=10)]

THRESHOLDS = {
    "min_unigram_count": 3,
    "min_bigram_count": 3,
    "min_bigram_pmi": 4.0,
    "min_title_views": 70,
}

EXPECTED_ROWS = [
    ("the", "unigram", 10, 10.0),
    ("of", "unigram", 7, 7.0),
    ("Yersinia", "unigram", 3, 3.0),
    ("flea", "unigram", 3, 3.0),
    ("is", "unigram", 3, 3.0),
    ("pestis", "unigram", 3, 3.0),
    ("Yersinia pestis", "bigram", 3, math.log2(21)),
    ("Black Death", "title", 80, 80.0),
    ("St .  Louis", "title", 75, 75.0),
    ("plague", "wordnet", 2, 2.0),
    ("Y .  pestis", "wordnet", 1, 1.0),
    ("galore", "wordnet", 1, 1.0),
    ("pest", "wordnet", 1, 1.0),
    ("pestilence", "wordnet", 1, 1.0),
]

PAGEVIEWS_1 = [
    ("en", "Yersinia_pestis", 40),
    ("en", "Black_Death", 50),
    ("en", "Talk:Plague", 500),
    ("en.m", "Black_Death", 900),
    ("de", "Pest", 300),
    ("en", "Special:Search", 1000),
    ("en", "-", 500),
    ("en", "St._Louis", 30),
]
PAGEVIEWS_2 = [
    ("en", "Black_Death", 30),
    ("en", "Yersinia_pestis", 40),
    ("en", "St.__Louis", 45),
    ("en", "Flea", 20),
]
WORDNET = {
    "noun": [["flea"], ["plague", "pestilence", "pest"], ["Yersinia_pestis", "Y._pestis"]],
    "verb": [["plague"]],
    "adj": [["galore(ip)"]],
}


def test_config(**changes: object) -> QueryBuildConfig:
    return QueryBuildConfig(**{**THRESHOLDS, **changes})


test_config.__test__ = False  # type: ignore[attr-defined]


def write_inputs(root: Path) -> dict[str, object]:
    """The dump (two files: bz2, and multistream bz2), page views and WordNet under root."""
    root.mkdir(parents=True, exist_ok=True)
    first = write_dump(root / "enwiki-pages-articles1.xml.bz2", ARTICLES + SKIPPED)
    second = write_dump(
        root / "enwiki-pages-articles-multistream2.xml.bz2",
        SECOND_FILE,
        multistream=True,
        pages_per_stream=1,
    )
    views = [
        write_pageviews(root / "pageviews-20260101-000000.gz", PAGEVIEWS_1),
        write_pageviews(root / "pageviews-20260101-010000.gz", PAGEVIEWS_2),
    ]
    # One malformed line, as found in real files now and then.
    with (root / "pageviews-20260101-000000.gz").open("ab") as handle:
        import gzip

        handle.write(gzip.compress(b"en Broken_line_without_count\n", mtime=0))
    wordnet = write_wndb(root / "wordnet", WORDNET)
    return {"dumps": [first, second], "pageviews": views, "wordnet": wordnet}
