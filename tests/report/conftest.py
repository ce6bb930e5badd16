"""A real demo build with every part's output, shared by the report's tests.

The demo's own parts on a smaller world: the query list from the bundled sample, a build
of 120 images plus the crawl junk (every kind of rejection), an overlap audit without a
checkpoint, a few training steps, and the report with all of them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from openwit.demo import DemoContext


@pytest.fixture(scope="session")
def demo_build(tmp_path_factory: pytest.TempPathFactory) -> DemoContext:
    from openwit.demo import audit, build, queries, report, train
    from openwit.demo.world import write_eval_set

    out = tmp_path_factory.mktemp("report-demo")
    ctx = DemoContext(out=out)
    ctx.eval_sets["shapes"] = write_eval_set(out / "eval" / "shapes", per_class=3)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(build, "DEMO_IMAGES", 120)
        patch.setenv("OPENWIT_DEMO_TRAIN_STEPS", "6")
        for part in (queries, build, train, audit, report):
            part.run(ctx)
    return ctx


@pytest.fixture(scope="session")
def build_dir(demo_build: DemoContext) -> Path:
    assert demo_build.build_dir is not None
    return demo_build.build_dir
