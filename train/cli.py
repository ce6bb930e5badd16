"""``openwit train`` and ``openwit eval`` (import-light: torch is imported inside commands)."""

from __future__ import annotations

from typing import Annotated

import typer

TRAIN_HELP = """Contrastive training of an open_clip model on webdataset shards.

One process, or one of many: `torchrun --nproc_per_node N -m openwit.cli train ...`
(multi-node: torchrun's --nnodes/--rdzv-endpoint; pass --resampled). The run directory
gets config.json, metrics.jsonl, checkpoints/ and, with --eval, eval.json.
"""


def train_command(
    train_data: Annotated[
        str, typer.Option("--train-data", help="Shard directory or brace pattern(s), a::b.")
    ],
    model: Annotated[str, typer.Option(help="open_clip model name (openwit-tiny for CPU tests).")],
    out: Annotated[str, typer.Option(help="Run directory: a path or a URL (s3://...).")],
    batch_size: Annotated[int, typer.Option(help="Batch per process (per micro-batch).")] = 256,
    steps: Annotated[int | None, typer.Option(help="Optimizer steps to train.")] = None,
    epochs: Annotated[float | None, typer.Option(help="Epochs (needs sizes.json).")] = None,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 5e-4,
    warmup: Annotated[
        int | None, typer.Option(help="Warmup steps [default: 5% of the run, at most 2000].")
    ] = None,
    weight_decay: Annotated[float, typer.Option("--wd", help="AdamW weight decay.")] = 0.2,
    beta1: Annotated[
        float | None, typer.Option(help="AdamW beta1 [default: 0.9].", show_default=False)
    ] = None,
    beta2: Annotated[
        float | None,
        typer.Option(help="AdamW beta2 [default: 0.98 for ViTs, 0.999 for ResNets and others]."),
    ] = None,
    eps: Annotated[
        float | None,
        typer.Option(help="AdamW eps [default: 1e-6 for ViTs, 1e-8 for ResNets and others]."),
    ] = None,
    precision: Annotated[
        str, typer.Option(help="fp32, bf16, fp16 or amp (bf16/fp16 autocast on GPU, fp32 on CPU).")
    ] = "amp",
    grad_accum: Annotated[
        int, typer.Option(help="Micro-batches per step; the contrastive batch grows with it.")
    ] = 1,
    grad_checkpointing: Annotated[bool, typer.Option(help="Recompute activations.")] = False,
    grad_clip: Annotated[float | None, typer.Option(help="Clip the gradient norm.")] = None,
    compile: Annotated[
        str, typer.Option(help="torch.compile: auto (on for CUDA), on, off.")
    ] = "auto",
    save_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = 1000,
    resume: Annotated[
        str | None, typer.Option(help="auto (checkpoints/latest.pt if any) or a checkpoint.")
    ] = None,
    init_checkpoint: Annotated[
        str | None, typer.Option(help="Initialise weights from a checkpoint (path or URL).")
    ] = None,
    eval_sets: Annotated[
        list[str] | None, typer.Option("--eval", help="Zero-shot eval set NAME=PATH (repeatable).")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Data workers per process.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    log_every: Annotated[int, typer.Option(help="Steps per metrics.jsonl line.")] = 10,
    shuffle_buffer: Annotated[int, typer.Option(help="Shuffle buffer, samples per worker.")] = 5000,
    resampled: Annotated[
        bool, typer.Option(help="Draw shards with replacement (multi-node).")
    ] = False,
    decode: Annotated[
        str, typer.Option(help="JPEG decode: auto (device on GPU), workers, device.")
    ] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    train_num_samples: Annotated[
        int | None, typer.Option(help="Dataset size when the shards have no sizes.json.")
    ] = None,
) -> None:
    from openwit.evalsets import parse_eval_args
    from openwit.train.config import TrainConfig

    config = TrainConfig(
        train_data=train_data,
        model=model,
        out=out,
        batch_size=batch_size,
        steps=steps,
        epochs=epochs,
        lr=lr,
        warmup=warmup,
        weight_decay=weight_decay,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        precision=precision,
        grad_accum=grad_accum,
        grad_checkpointing=grad_checkpointing,
        grad_clip=grad_clip,
        compile=compile,
        save_every=save_every,
        resume=resume,
        init_checkpoint=init_checkpoint,
        eval_sets={
            k: v if isinstance(v, str) else str(v.resolve())
            for k, v in parse_eval_args(eval_sets or []).items()
        },
        workers=workers,
        seed=seed,
        log_every=log_every,
        shuffle_buffer=shuffle_buffer,
        resampled=resampled,
        decode=decode,
        device=device,
        train_num_samples=train_num_samples,
    )
    from openwit.train.models import check_model_name, check_trainable

    check_model_name(model)  # exit 2 with close names before torch starts any work
    check_trainable(model)
    from openwit.train.loop import train
    from openwit.train.report import print_run_summary

    summary = train(config)
    if summary.world_size == 1 or _is_rank_zero():
        print_run_summary(summary)


def _is_rank_zero() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def eval_command(
    checkpoint: Annotated[
        str, typer.Option(help="Checkpoint (openwit's or open_clip's): a path or a URL.")
    ],
    model: Annotated[str, typer.Option(help="open_clip model name of the checkpoint.")],
    eval_sets: Annotated[
        list[str], typer.Option("--eval", help="Eval set NAME=PATH (repeatable).")
    ],
    out: Annotated[
        str, typer.Option(help="eval.json to write (predictions/ beside it): a path or a URL.")
    ],
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 64,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Zero-shot evaluation of a checkpoint on image-folder eval sets.

    Writes top-1/top-5 per set to OUT and per-sample predictions to predictions/<set>.parquet
    beside it (what `openwit audit` splits into clean and overlapping samples).
    """
    from openwit.errors import UserError
    from openwit.evalsets import parse_eval_args

    sets = parse_eval_args(eval_sets)
    from openwit import fs
    from openwit.staging import output_folder

    if not fs.is_file(checkpoint):  # before the model's name is checked, as before
        raise UserError(f"checkpoint not found: {checkpoint}")
    from openwit.train.models import check_model_name

    check_model_name(model)
    from openwit.train.distributed import resolve_device
    from openwit.train.report import print_eval_results
    from openwit.train.zeroshot import evaluate_sets, load_model

    device = resolve_device(device)
    bundle = load_model(checkpoint, model, device)  # a URL is read through a local copy
    name = fs.basename(out)
    folder = fs.parent(out) if not fs.is_local(out) else fs.local_path(out).resolve().parent
    with output_folder(folder, last=(name,)) as written:  # a URL: uploaded when done
        results = evaluate_sets(
            bundle.model,
            bundle.tokenizer,
            bundle.preprocess_eval,
            sets,
            written / name,
            device=device,
            batch_size=batch_size,
            checkpoint=checkpoint,
            model_name=model,
        )
    print_eval_results(results, out)


train_command.__doc__ = TRAIN_HELP


def register(root: typer.Typer) -> None:
    root.command("train")(train_command)
    root.command("eval")(eval_command)
