"""Funnel law, rejection records and the Arrow schemas of the contract."""

from __future__ import annotations

import hashlib
import itertools

import pyarrow as pa
import pytest

from openwit.errors import FunnelLawError
from openwit.funnel import Funnel, Rejection, StageCounts
from openwit.schemas import BUILD_STAGES, candidate_schema, sample_key, uid_for


def test_funnel_law_holds_for_balanced_chained_counts():
    funnel = Funnel(
        [
            StageCounts("ingest", 10, 8, {"malformed_record": 2}),
            StageCounts("text", 8, 5, {"not_english": 2, "too_short": 1}),
        ]
    )
    assert funnel.violations() == []
    funnel.check()
    assert Funnel.from_json(funnel.to_json()).to_json() == funnel.to_json()


def test_funnel_names_a_stage_that_loses_records():
    funnel = Funnel([StageCounts("text", 8, 5, {"too_short": 1})])
    with pytest.raises(FunnelLawError, match=r"stage text: in=8 but out=5 \+ rejected=1"):
        funnel.check()


def test_funnel_names_a_broken_chain():
    funnel = Funnel([StageCounts("ingest", 10, 10), StageCounts("text", 9, 9)])
    (problem,) = funnel.violations()
    assert "stage text: in=9 but stage ingest passed on out=10" in problem


def test_rejection_reasons_are_snake_case():
    assert Rejection("u", "text", "not_english").as_record()["reason"] == "not_english"
    with pytest.raises(ValueError):
        Rejection("u", "text", "Not English")


def test_uid_is_sha256_of_url_tab_text_first_32_hex():
    url, text = "http://example.com/a.jpg", "a red bicycle"
    expected = hashlib.sha256(f"{url}\t{text}".encode()).hexdigest()[:32]
    assert uid_for(url, text) == expected
    assert len(uid_for("", "")) == 32


def test_candidate_schema_grows_stage_by_stage():
    names = [candidate_schema(stage).names for stage in BUILD_STAGES]
    assert names[0] == ["uid", "url", "text", "source", "source_offset"]
    assert names[1][-2:] == ["lang", "lang_score"]
    assert candidate_schema("match").field("query_ids").type == pa.list_(pa.int32())
    assert candidate_schema("image").field("phash").type == pa.uint64()
    assert names[-1][-1] == "key"
    for before, after in itertools.pairwise(names):
        kept = [name for name in before if name in after]  # a later stage may drop some
        assert after[: len(kept)] == kept
    # The image bytes live in the download stage's files only; the shard index has no pointer.
    assert "image" in candidate_schema("download").names
    assert "image" not in candidate_schema("image").names
    assert {"image_file", "image_row"} <= set(candidate_schema("dedup").names)
    assert not {"image", "image_file", "image_row"} & set(candidate_schema("shard").names)


def test_sample_keys_are_nine_digits():
    assert sample_key(42) == "000000042"
    with pytest.raises(ValueError):
        sample_key(10**9)
