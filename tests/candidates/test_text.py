"""Text stage: normalisation, content filters, language ID, the core and its Beam wrapper."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from openwit.config import BuildConfig, TextConfig
from openwit.pipeline.text.filters import content_rejection, normalize_text
from openwit.pipeline.text.langid import language_id
from openwit.pipeline.text.stage import TextStage, filter_texts
from openwit.schemas import candidate_schema
from tests.harness import run_stage


def test_normalisation_examples():
    assert normalize_text("  a  red\tbicycle\n") == "a red bicycle"
    assert normalize_text("fish &amp; chips &#8211; caf&eacute;") == "fish & chips \u2013 caf\u00e9"
    assert normalize_text("cafe\u0301") == "caf\u00e9"  # NFC
    assert normalize_text("zero\u200bwidth\u00a0space\x00nul") == "zero width space nul"
    assert normalize_text("\u00ad") == ""


@given(st.text(max_size=80))
def test_normalised_text_is_stable_and_tidy(raw):
    text = normalize_text(raw)
    assert normalize_text(text) == text or "&" in text  # entities can be nested: &amp;lt;
    assert text == text.strip()
    assert "  " not in text
    assert not any(c in text for c in "\t\n\r\x00\u200b\ufeff")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty_text"),
        ("https://example.com/images/cat.jpg", "url_text"),
        ("www.example.com", "url_text"),
        ("IMG_1234.JPG", "filename_text"),
        ("DSC_0001", "filename_text"),
        ("IMG-20190101-WA0003.jpg", "filename_text"),
        ("my holiday photo.jpeg", "filename_text"),
        ("3f2a9b8c7d6e5f4a3b2c1d0e", "filename_text"),
        ("Screenshot 2021-05-04 at 10.22.11", "filename_text"),
        ("f/2.8 1/250s ISO 200 50mm", "camera_settings"),
        ("ISO 100, f/8, 1/125 sec", "camera_settings"),
        ("a dog", "too_short"),
        ("a b c", "too_short"),  # three words but five characters
        ("word " * 300, "too_long"),
        ("a tabby cat asleep on a sofa", None),
        ("Photo 2 of 10 from our trip", None),
        ("Canon EOS 5D on a tripod", None),
    ],
)
def test_content_filters(text, reason):
    problem = content_rejection(normalize_text(text), 3, 6, 1000)
    assert (problem[0] if problem else None) == reason


@pytest.mark.parametrize("backend", ["fasttext", "langdetect"])
def test_language_id_backends(backend):
    identify = language_id(backend)
    lang, score = identify("The quick brown fox jumps over the lazy dog near the river bank")
    assert lang == "en" and 0.5 < score <= 1.0
    assert identify("Der schnelle braune Fuchs springt über den faulen Hund")[0] == "de"
    assert identify("Le renard brun rapide saute par-dessus le chien paresseux")[0] == "fr"


def test_fasttext_backend_takes_all_caps_and_empty_text():
    identify = language_id("fasttext")
    assert identify("A RED BICYCLE LEANING AGAINST A WALL IN THE OLD TOWN")[0] == "en"
    assert identify("") == ("", 0.0)


def test_langdetect_backend_is_deterministic():
    identify = language_id("langdetect")
    text = "ciao come stai oggi amico mio"
    assert len({identify(text) for _ in range(5)}) == 1


def run_core(text: str, **settings) -> dict:
    """The core on a one-record table: the kept record, or the rejection record."""
    config = TextConfig(**settings)
    table = pa.table({"uid": ["u"], "text": [text], "url": ["http://x/a.jpg"]})
    table = table.append_column("source", pa.array(["s"])).append_column(
        "source_offset", pa.array([0], pa.int64())
    )
    output = filter_texts(config, language_id(config.lang_backend), table)
    (item,) = output.kept.to_pylist() or output.rejected.to_pylist()
    return item


def test_core_rewrites_text_and_adds_language_columns():
    item = run_core("  A red bicycle &amp; a  blue car parked on the street ")
    assert item["uid"] == "u"
    assert item["text"] == "A red bicycle & a blue car parked on the street"
    assert item["lang"] == "en" and isinstance(item["lang_score"], float)


def test_core_language_rejections():
    german = run_core("Ein rotes Fahrrad steht vor dem alten Rathaus")
    assert (german["reason"], german["detail"].split()[0]) == ("not_allowed_language", "de")
    assert "lang" in run_core("Ein rotes Fahrrad steht vor dem alten Rathaus", languages=["de"])
    strict = run_core("A red bicycle parked on the street", min_lang_score=1.0)
    assert strict["reason"] == "uncertain_language"
    anything = run_core("Ein rotes Fahrrad steht vor dem alten Rathaus", languages=[])
    assert anything["lang"] == "de"


def test_core_decides_a_unit_in_chunks_with_the_same_output(monkeypatch):
    captions = [
        "a red bicycle leaning against a wall",
        "IMG_0042.jpg",
        "ein rotes Fahrrad steht an der Wand",
        "two dogs playing in the snow",
        "x",
        "a sailing boat on a calm blue lake",
        "f/2.8 1/250s ISO 100",
    ]
    table = pa.Table.from_pylist(
        [
            {"uid": f"{i:02d}", "url": f"http://x/{i}.jpg", "text": t, "source": "s"}
            | {"source_offset": i}
            for i, t in enumerate(captions)
        ],
        schema=candidate_schema("ingest"),
    )
    config = TextConfig()
    identify = language_id(config.lang_backend)
    whole = filter_texts(config, identify, table)
    monkeypatch.setattr("openwit.pipeline.text.stage.CHUNK_ROWS", 2)
    chunked = filter_texts(config, identify, table)
    assert chunked.kept.equals(whole.kept) and chunked.rejected.equals(whole.rejected)
    assert whole.kept.num_rows == 3 and whole.rejected.num_rows == 4
    empty = filter_texts(config, identify, table.slice(0, 0))
    assert empty.kept.num_rows == 0 and empty.kept.schema == whole.kept.schema


def test_text_stage_writes_kept_records_in_order_and_rejections(tmp_path):
    rows = [
        {"uid": "1", "text": "a red bicycle leaning against a wall"},
        {"uid": "2", "text": "IMG_0042.jpg"},
        {"uid": "3", "text": "ein rotes Fahrrad steht an der Wand"},
        {"uid": "4", "text": "two dogs playing in the snow"},
    ]
    full = [
        {**r, "url": f"http://x/{r['uid']}.jpg", "source": "p", "source_offset": i}
        for i, r in enumerate(rows)
    ]
    pq.write_table(
        pa.Table.from_pylist(full, schema=candidate_schema("ingest")), tmp_path / "in.parquet"
    )
    attempt = tmp_path / "attempt"
    _, totals, _ = run_stage(TextStage(), BuildConfig(), [tmp_path / "in.parquet"], attempt)
    kept = pq.read_table(sorted(attempt.glob("part-*.parquet")))
    assert kept.schema == candidate_schema("text")
    assert kept.column("uid").to_pylist() == ["1", "4"]
    assert dict(totals.rejected) == {"filename_text": 1, "not_allowed_language": 1}
