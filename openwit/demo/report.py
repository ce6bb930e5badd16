"""The demo's report part: the build report and dataset card, with the audit and the run.

``openwit build`` writes a report at the end of every complete build; the demo's build part
leaves that to this part, which writes it once, knowing the training run and the overlap
audit the earlier parts made (``openwit report --build --audit --train``).
"""

from __future__ import annotations

from pathlib import Path

from openwit.demo import DemoContext


def run(ctx: DemoContext) -> str:
    from openwit.report import write_build_report

    if ctx.build_dir is None:
        raise RuntimeError("the demo's report part needs the build part's build (ctx.build_dir)")
    result = write_build_report(ctx.build_dir, audit=ctx.audit_dir, train=ctx.train_run)
    ctx.report, ctx.card = Path(result.html), Path(result.card)  # the demo builds on disk
    ctx.results["report"] = {"html": result.html, "card": result.card}
    return f"build report, dataset card and report.json in {ctx.report.parent}"
