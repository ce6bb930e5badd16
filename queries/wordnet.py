"""WordNet lemma names from a database directory in the standard WNDB format.

The directory is what Princeton's WordNet 3.x and Debian's ``wordnet-base`` package install
(``/usr/share/wordnet``): ``data.noun``, ``data.verb``, ``data.adj``, ``data.adv``. A data
line is ``offset lex_filenum ss_type w_cnt word lex_id [word lex_id ...] p_cnt ... | gloss``
with ``w_cnt`` in hexadecimal; lines starting with two spaces are the licence header.
Every lemma of every synset is taken, underscores to spaces, adjective markers (``(a)``,
``(p)``, ``(ip)``) removed; its count is the number of synsets it names.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from openwit.errors import UserError
from openwit.text import as_query

POS_FILES: tuple[str, ...] = ("data.noun", "data.verb", "data.adj", "data.adv")
_ADJECTIVE_MARKER = re.compile(r"\((?:a|p|ip)\)$")


@dataclass
class WordNetLemmas:
    """Lemma -> number of synsets, and what was read."""

    lemmas: Counter[str] = field(default_factory=Counter)
    synsets: int = 0
    malformed_lines: int = 0
    files: list[str] = field(default_factory=list)


def wordnet_dir(path: str | Path) -> Path:
    """The WNDB directory at ``path`` (or its ``dict/`` folder); exit 2 when there is none."""
    root = Path(path)
    if not root.is_dir():
        raise UserError(f"WordNet directory not found: {root}")
    for candidate in (root, root / "dict"):
        if any((candidate / name).is_file() for name in POS_FILES):
            return candidate
    raise UserError(
        f"{root}: not a WordNet database directory (none of {', '.join(POS_FILES)} found)"
    )


def parse_data_line(line: str) -> list[str] | None:
    """The lemma names of one ``data.*`` line; None when the line is malformed."""
    fields = line.split(" | ", 1)[0].split()
    if len(fields) < 6 or not fields[0].isdigit() or len(fields[0]) != 8:
        return None
    try:
        word_count = int(fields[3], 16)
    except ValueError:
        return None
    words = fields[4 : 4 + 2 * word_count : 2]
    if word_count == 0 or len(words) != word_count:
        return None
    return [_ADJECTIVE_MARKER.sub("", word).replace("_", " ") for word in words]


def read_wordnet(path: str | Path) -> WordNetLemmas:
    """Every lemma of every synset in the WNDB directory at ``path``."""
    root = wordnet_dir(path)
    result = WordNetLemmas()
    for name in POS_FILES:
        data = root / name
        if not data.is_file():
            continue
        result.files.append(str(data))
        with data.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("  ") or not line.strip():
                    continue
                words = parse_data_line(line)
                if words is None:
                    result.malformed_lines += 1
                    continue
                result.synsets += 1
                # A lemma listed twice in one synset (rare) names that synset once.
                result.lemmas.update({as_query(word) for word in words} - {""})
    return result
