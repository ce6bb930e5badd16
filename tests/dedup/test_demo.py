"""The demo's audit part finds the eval copies planted in its pool."""

from __future__ import annotations

import json

from openwit.demo import DemoContext
from openwit.demo.audit import run


def test_demo_audit_finds_every_planted_copy(tmp_path):
    ctx = DemoContext(out=tmp_path)  # no build part: the part makes its own shards
    summary = run(ctx)
    result = ctx.results["audit"]
    assert result["planted_copies_in_shards"] == 5
    assert result["planted_copies_found"] == 5
    assert "found 5 of 5 planted eval copies" in summary
    audit = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert audit["sets"][0]["n_overlap"] >= 5
    assert (tmp_path / "audit" / "index.html").is_file()


def test_demo_audit_uses_the_shards_an_earlier_part_left(tmp_path):
    from openwit.demo.audit import self_contained_case

    shards, eval_sets, planted = self_contained_case(tmp_path / "earlier")
    ctx = DemoContext(out=tmp_path / "demo", shards=shards, eval_sets=eval_sets)
    run(ctx)
    assert json.loads((tmp_path / "demo" / "audit" / "audit.json").read_text())["shards"] == str(
        shards
    )
    assert ctx.results["audit"]["planted_copies_found"] == planted
