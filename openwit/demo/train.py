"""The demo's train part: the tiny model on the demo shards for a few minutes, then zero-shot.

Trains ``openwit-tiny`` (open_clip ViT, 32 px, 2+2 layers) on ``ctx.shards`` on the CPU and
evaluates it zero-shot on ``ctx.eval_sets`` (one class per shape) and on a colour eval set
of the same world that this part writes. A few CPU minutes teach the tiny model colours
well and shapes barely (captions name colour, shape and background; colour and background
alone already tell most pairs of a batch apart), and the summary shows both against
chance. Without build output (the build part not there yet) it writes its own shards from
the demo world, and a shape eval set if none was given. ``OPENWIT_DEMO_TRAIN_STEPS``
shortens the run (tests).
"""

from __future__ import annotations

import os
from pathlib import Path

from openwit.demo import DemoContext
from openwit.demo.world import write_colour_eval_set, write_eval_set

DEMO_STEPS = 700
DEMO_BATCH = 64
OWN_SAMPLES = 1536


def _shards(ctx: DemoContext) -> tuple[Path, str]:
    if ctx.shards is not None and any(Path(ctx.shards).glob("*.tar")):
        return Path(ctx.shards), ""
    from openwit.demo.shards import write_demo_shards

    own = ctx.out / "train-data"
    if not (own / "shards" / "sizes.json").is_file():
        write_demo_shards(own, OWN_SAMPLES, per_shard=256, seed=11)
    return own / "shards", ", own shards (no build output)"


def run(ctx: DemoContext) -> str:
    from openwit.train.config import TrainConfig
    from openwit.train.loop import train
    from openwit.train.report import print_run_summary

    shards, note = _shards(ctx)
    if not ctx.eval_sets:
        ctx.eval_sets["shapes"] = write_eval_set(ctx.out / "eval-sets" / "shapes", per_class=20)
    eval_sets = {name: str(path) for name, path in ctx.eval_sets.items()}
    colours = "colours" if "colours" not in eval_sets else "demo-colours"
    colour_root = ctx.out / "eval-sets" / colours
    if not (colour_root / "templates.txt").is_file():
        write_colour_eval_set(colour_root, per_class=20)
    eval_sets[colours] = str(colour_root)
    steps = int(os.environ.get("OPENWIT_DEMO_TRAIN_STEPS", DEMO_STEPS))
    config = TrainConfig(
        train_data=str(shards),
        model=ctx.model,
        out=str(ctx.out / "train"),
        batch_size=DEMO_BATCH,
        steps=steps,
        lr=2e-3,
        warmup=min(30, steps // 10),
        save_every=steps,
        eval_sets=eval_sets,
        workers=1,
        log_every=max(1, min(20, steps // 5)),
        device="cpu",
    )
    summary = train(config)
    print_run_summary(summary)
    ctx.checkpoint = Path(summary.checkpoint) if summary.checkpoint else None  # a local run
    ctx.train_run = Path(config.out)
    ctx.results["train"] = {
        "steps": summary.steps,
        "loss": summary.loss,
        "samples_per_s": summary.samples_per_s,
        "eval": {name: r["top1"] for name, r in summary.eval.items()},
    }
    scores = ", ".join(
        f"{name} top-1 {r['top1']:.0%} (chance {r['chance_top1']:.0%})"
        for name, r in summary.eval.items()
    )
    return (
        f"{ctx.model}: {summary.steps} steps x {DEMO_BATCH} on CPU{note}, "
        f"loss {summary.first_loss:.2f} -> {summary.loss:.2f}; zero-shot {scores}"
    )
