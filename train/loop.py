"""``openwit train``: set up model, optimizer and data, run the steps, checkpoint, evaluate.

Runs as one process or as one of many under torchrun; only rank 0 writes files. The run
directory is CONTRACTS.md's: ``config.json``, ``metrics.jsonl``, ``checkpoints/``,
``eval.json`` (with ``--eval``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import torch
import torch.distributed as dist

from openwit import fs
from openwit.errors import UserError
from openwit.evalsets import EvalSet
from openwit.io import atomic_write_json
from openwit.train import checkpoint as ckpt
from openwit.train.batches import BatchSource, open_batches
from openwit.train.checkpoint import first_line
from openwit.train.config import TrainConfig
from openwit.train.device_images import choose_decode, probe_device_decode
from openwit.train.distributed import start, stop, wrap_ddp
from openwit.train.loss import clamp_logit_scale
from openwit.train.metrics import MetricsLog, StepTimer, peak_flops, train_flops_per_sample
from openwit.train.models import (
    ModelBundle,
    check_trainable,
    create_model,
    register_model_configs,
    weight_mismatch,
)
from openwit.train.optim import learning_rate, make_optimizer, set_learning_rate
from openwit.train.report import RunSummary
from openwit.train.run_store import RunStore
from openwit.train.runtime import (
    autocast_for,
    default_workers,
    resolve_precision,
    set_cpu_threads,
)
from openwit.train.shards import list_shards
from openwit.train.step import train_step

log = logging.getLogger(__name__)


#: Settings that shape the learning-rate schedule or the batch: changing them on resume
#: makes the resumed run differ from an uninterrupted one.
SCHEDULE_KEYS = ("steps", "epochs", "lr", "warmup", "batch_size", "grad_accum", "train_data")


def schedule_changes(saved: dict[str, Any], config: TrainConfig) -> str:
    current = config.to_dict()
    return ", ".join(
        f"{key} {saved[key]} -> {current[key]}"
        for key in SCHEDULE_KEYS
        if key in saved and saved[key] != current[key]
    )


class Trainer:
    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.processes = start(config.device)
        self.device = torch.device(self.processes.device)
        self.store = RunStore(config.out)  # a path or a URL (written locally, then uploaded)
        self.run_dir = self.store.local
        self.main = self.processes.is_main

    # --- set-up -------------------------------------------------------------------------

    def setup(self) -> None:
        config, processes = self.config, self.processes
        if self.device.type == "cuda":  # tf32 for any fp32 matmul; cuDNN picks its kernels
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True
        self.shards = list_shards(config.train_data)
        for name, path in config.eval_sets.items():  # a typo should not wait for the end
            EvalSet.open(name, path)
        register_model_configs()
        check_trainable(config.model)
        torch.manual_seed(config.seed)  # the same initial weights in every process
        self.bundle: ModelBundle = create_model(config.model, config.init_checkpoint, self.device)
        model = self.bundle.model
        if config.grad_checkpointing:
            model.set_grad_checkpointing(True)
        self.precision = resolve_precision(config.precision, self.device)
        self.autocast = autocast_for(self.precision, self.device)
        beta1, beta2, eps = self.adamw = config.adamw()
        self.optimizer = make_optimizer(
            model, config.lr, config.weight_decay, (beta1, beta2), eps, self.device
        )
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        self.state = self._resume_state()
        self.start_step = int(self.state["step"]) if self.state else 0
        self.global_batch = config.batch_size * config.grad_accum * processes.world_size
        self.dataset_size = config.train_num_samples or self.shards.total_samples
        self.total_steps = config.total_steps(self.dataset_size, self.global_batch)
        self.warmup = config.warmup_steps(self.total_steps)
        self.ddp = None
        self.train_model: Any = model
        if processes.distributed:
            self.ddp = wrap_ddp(model, self.device)
            self.train_model = self.ddp
        self.compiled = config.compile == "on" or (
            config.compile == "auto" and self.device.type == "cuda"
        )
        if self.compiled:
            self.train_model = torch.compile(self.train_model)
        torch.manual_seed(config.seed + 1 + processes.rank)
        workers = config.workers if config.workers is not None else default_workers(processes)
        decode = choose_decode(
            config.decode, self.device.type == "cuda", lambda: probe_device_decode(self.device)
        )
        if self.device.type == "cpu":
            set_cpu_threads(processes, workers)
        image_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(
            self.precision, torch.float32
        )
        self.source: BatchSource = open_batches(
            self.shards,
            self.bundle,
            processes,
            batch_size=config.batch_size,
            workers=workers,
            seed=config.seed,
            shuffle_buffer=config.shuffle_buffer,
            resampled=config.resampled,
            decode=decode,
            image_dtype=image_dtype,
            saved_position=(self.state or {}).get("data"),
            restart_step=self.start_step,
        )
        self.peak = peak_flops(self.device, self.precision)
        self.flops_per_sample = train_flops_per_sample(config.model) if self.peak else None
        if self.main:
            self._write_config(workers, decode)
            self.store.start(resuming=self.state is not None)
        self.metrics = (
            MetricsLog(self.run_dir / "metrics.jsonl", self.start_step if self.state else None)
            if self.main
            else None
        )

    def _resume_state(self) -> dict[str, Any] | None:
        resumed = ckpt.load_for_resume(self.store.location, self.config.resume)
        if resumed is None:
            if self.config.resume == "auto" and self.main:
                log.info("--resume auto: no checkpoint in %s, starting fresh", self.store.location)
            return None
        path, state = resumed.path, resumed.state
        if resumed.unreadable and self.main:
            log.warning(
                "resuming from %s, the newest checkpoint that loads; skipped %s",
                fs.basename(path),
                "; ".join(resumed.unreadable),
            )
        saved_model = (state.get("config") or {}).get("model")
        if saved_model not in (None, self.config.model):
            raise UserError(f"{path} was trained as {saved_model}, not {self.config.model}")
        try:
            self.bundle.model.load_state_dict(state["state_dict"])
        except (RuntimeError, ValueError, TypeError) as error:
            why = weight_mismatch(self.bundle.model, state["state_dict"]) or first_line(error)
            raise UserError(
                f"{path} is not a checkpoint of model {self.config.model}: {why}"
            ) from None
        if state.get("optimizer"):
            self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.main:
            log.warning("resuming from %s at step %d", path, state["step"])
            changed = schedule_changes(state.get("config") or {}, self.config)
            if changed:
                log.warning("resuming with other settings (%s): the schedule changes", changed)
        return state

    def _write_config(self, workers: int, decode: str) -> None:
        resolved = {
            **self.config.to_dict(),
            "resolved": {
                "total_steps": self.total_steps,
                "adamw": dict(zip(("beta1", "beta2", "eps"), self.adamw)),
                "warmup": self.warmup,
                "global_batch": self.global_batch,
                "world_size": self.processes.world_size,
                "device": str(self.device),
                "precision": self.precision,
                "compile": self.compiled,
                "workers": self.source.workers,
                "decode": decode,
                "resampled": self.source.resampled,
                "shards": len(self.shards),
                "dataset_size": self.dataset_size,
                "torch": torch.__version__,
            },
        }
        atomic_write_json(self.run_dir / "config.json", resolved)

    # --- the loop -----------------------------------------------------------------------

    def _backward(self, loss: torch.Tensor) -> None:
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def _next_micro_batches(self, timer: StepTimer, summary: RunSummary) -> list[tuple]:
        micro = []
        for _ in range(self.config.grad_accum):
            waited = time.perf_counter()
            images, tokens, stats, *rest = next(self.source.batches)
            valid = rest[0].to(self.device) if rest else None  # device decode: dropped images
            timer.add_data_wait(time.perf_counter() - waited)
            worker, shards_failed, skipped, read = (int(v) for v in stats.tolist())
            # Read, not batch_size: the samples the worker skipped are behind it too, and a
            # resumed worker must not read them again.
            self.source.position.delivered[worker] += read
            summary.shards_failed += shards_failed
            summary.samples_skipped += skipped
            micro.append((images.to(self.device), tokens.to(self.device), valid))
        return micro

    def _optimizer_step(self) -> None:
        if self.config.grad_clip is not None:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.bundle.model.parameters(), self.config.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        clamp_logit_scale(self.bundle.model)

    def run(self, progress: Any = None) -> RunSummary:
        config = self.config
        summary = RunSummary(
            self.store.location,
            start_step=self.start_step,
            device=str(self.device),
            precision=self.precision,
            decode=self.source.decode,
            compiled=self.compiled,
            world_size=self.processes.world_size,
        )
        started = time.perf_counter()
        timer = StepTimer()
        loss_sum = torch.zeros((), device=self.device)
        intervals: list[tuple[float, float, int]] = []  # (seconds, data seconds, steps)
        self.bundle.model.train()
        no_sync = self.ddp.no_sync if self.ddp is not None else None
        step = self.start_step
        for step in range(self.start_step, self.total_steps):
            lr = learning_rate(step, config.lr, self.warmup, self.total_steps)
            set_learning_rate(self.optimizer, lr)
            micro = self._next_micro_batches(timer, summary)
            loss = train_step(self.train_model, micro, self.autocast, self._backward, no_sync)
            self._optimizer_step()
            loss_sum += loss
            timer.step_done()
            done = step + 1
            if progress is not None:
                progress()
            if done % config.log_every == 0 or done == self.total_steps:
                batch_time, data_time = timer.interval()
                mean_loss = self._mean_over_ranks(loss_sum / timer.steps)
                intervals.append((batch_time * timer.steps, data_time * timer.steps, timer.steps))
                self._log(summary, done, mean_loss, lr, batch_time, data_time)
                loss_sum.zero_()
                timer.reset()
            if done % config.save_every == 0 or done == self.total_steps:
                summary.checkpoint = self._save(done)
        summary.steps = self.total_steps - self.start_step
        summary.samples = summary.steps * self.global_batch
        summary.seconds = time.perf_counter() - started
        steady = intervals[1:] if len(intervals) > 1 else intervals  # first: warm-up, compile
        seconds = sum(i[0] for i in steady)
        if seconds > 0:
            summary.samples_per_s = sum(i[2] for i in steady) * self.global_batch / seconds
            summary.data_share = sum(i[1] for i in steady) / seconds
            if self.flops_per_sample and self.peak:
                summary.mfu = (
                    summary.samples_per_s
                    * self.flops_per_sample
                    / (self.peak * self.processes.world_size)
                )
        return summary

    def _mean_over_ranks(self, value: torch.Tensor) -> float:
        if self.processes.distributed:
            value = value.detach().clone()
            dist.all_reduce(value)
            value /= self.processes.world_size
        return float(value)

    def _log(
        self,
        summary: RunSummary,
        done: int,
        loss: float,
        lr: float,
        batch_time: float,
        data_time: float,
    ) -> None:
        samples_seen = done * self.global_batch
        scale = float(self.bundle.model.logit_scale.detach().exp())
        if summary.first_loss is None:
            summary.first_loss = loss
        summary.loss, summary.logit_scale = loss, scale
        record = {
            "step": done,
            "epoch": round(samples_seen / self.dataset_size, 4) if self.dataset_size else None,
            "loss": round(loss, 6),
            "logit_scale": round(scale, 4),
            "lr": lr,
            "samples_per_s": round(self.global_batch / batch_time, 2),
            "data_time": round(data_time, 5),
            "batch_time": round(batch_time, 5),
            "samples": samples_seen,
            "shards_failed": summary.shards_failed,
            "samples_skipped": summary.samples_skipped,
        }
        if self.flops_per_sample and self.peak:
            record["mfu"] = round(
                self.global_batch
                / batch_time
                * self.flops_per_sample
                / (self.peak * self.processes.world_size),
                4,
            )
        if self.metrics is not None:
            self.metrics.write(record)
        if self.main:
            log.info(
                "step %d/%d loss %.4f lr %.2e %.0f samples/s data %.1f%%",
                done,
                self.total_steps,
                loss,
                lr,
                record["samples_per_s"],
                100 * data_time / batch_time,
            )

    def _save(self, done: int) -> str | None:
        position = self.source.position
        delivered = torch.tensor(position.delivered, dtype=torch.long)
        if self.processes.distributed:
            gathered = [torch.zeros_like(delivered) for _ in range(self.processes.world_size)]
            dist.all_gather(gathered, delivered.to(self._collective_device()))
            all_delivered = [g.cpu().tolist() for g in gathered]
        else:
            all_delivered = [delivered.tolist()]
        if not self.main:
            return None
        samples_seen = done * self.global_batch
        state = {
            "epoch": int(samples_seen // self.dataset_size) if self.dataset_size else 0,
            "step": done,
            "state_dict": ckpt.model_state(self.bundle.model),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "config": self.config.to_dict(),
            "data": position.to_dict(all_delivered),
        }
        self.store.before_checkpoint()  # one checkpoint at a time on the local disk
        return self.store.checkpoint_saved(ckpt.save(self.run_dir, state))

    def _collective_device(self) -> torch.device:
        return self.device if dist.get_backend() == dist.Backend.NCCL else torch.device("cpu")

    def close(self) -> None:
        if getattr(self, "source", None) is not None:
            self.source.close()
        if getattr(self, "metrics", None) is not None:
            self.metrics.close()
        stop(self.processes)


def evaluate_after_training(trainer: Trainer, summary: RunSummary) -> None:
    """Zero-shot eval of the trained model (rank 0) on ``--eval`` sets -> RUN/eval.json."""
    from openwit.train.zeroshot import evaluate_sets

    config = trainer.config
    if not config.eval_sets or not trainer.main:
        return
    model = trainer.bundle.model
    model.eval()
    summary.eval = evaluate_sets(
        model,
        trainer.bundle.tokenizer,
        trainer.bundle.preprocess_eval,
        dict(config.eval_sets),
        trainer.run_dir / "eval.json",
        device=trainer.device,
        checkpoint=summary.checkpoint,
        model_name=config.model,
    )


def train(config: TrainConfig, show_progress: bool = True) -> RunSummary:
    """Train as ``config`` says; every process of a torchrun job calls this."""
    from openwit.console import progress_bar

    trainer = Trainer(config)
    try:
        trainer.setup()
        if trainer.main and trainer.start_step >= trainer.total_steps:
            log.warning("the run is complete (step %d); nothing to train", trainer.start_step)
        remaining = max(0, trainer.total_steps - trainer.start_step)
        bar = progress_bar("training", remaining) if (show_progress and trainer.main) else None
        with bar if bar is not None else contextlib.nullcontext() as advance:
            summary = trainer.run(advance)
        if trainer.processes.distributed:
            dist.barrier()
        evaluate_after_training(trainer, summary)
        if trainer.main:
            trainer.store.finish()  # a run in a bucket: the evaluation and last metrics
        return summary
    finally:
        trainer.close()
