"""Train unrolled circuits and baselines: one loop for CPU, GPU and many GPUs.

``train(spec, out)`` runs an :class:`~cortex_resnet.training.experiment.ExperimentSpec`
and leaves a run folder::

    out/config.toml     the experiment (circuit spec inline): what was run
    out/metrics.csv     one row per epoch (train_report)
    out/checkpoint.pt   the last completed epoch: model, optimiser, RNG states, history
    out/model.pt        the final weights (when the run completed)
    out/report.json     summary, ours beside the published baselines; report.md the same as a table

* ``device="auto"`` picks CUDA when present; launched by ``torchrun`` it trains
  data-parallel (DDP, :mod:`cortex_resnet.training.distributed`) with the same command.
* bf16 autocast on CUDA (``train.amp``), optional ``torch.compile``.
* Seeded: initial weights from the experiment seed, the training order from a
  generator seeded by ``(seed, epoch)``. On CPU a run is deterministic, and a
  run killed at any point and continued with ``resume=True`` repeats the
  interrupted epoch from the last checkpoint and ends with the same weights
  and metrics, bit for bit (the state that matters -- weights, optimiser
  moments, the epoch's data order, the learning rate as a function of the
  step -- is restored or recomputed exactly; only wall times differ).
* NaN/inf guard: a non-finite loss (or weights) stops the run with the epoch
  and step; the last good checkpoint stays (one is written before the first
  epoch, so there always is one).
"""

from __future__ import annotations

import os
import signal
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from cortex_resnet.data.datasets import Dataset
from cortex_resnet.errors import SimulationError, SpecError
from cortex_resnet.io.results import atomic_path, atomic_write_text
from cortex_resnet.training.baselines import uses_conv2d
from cortex_resnet.training.build import build_model, build_optimizer, check_training_memory, load_data
from cortex_resnet.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from cortex_resnet.training.distributed import DistContext, setup_distributed, teardown_distributed
from cortex_resnet.training.epoch import (crop_flip_draws, echo, epoch_generator, evaluate, fit_epoch, global_batches,
                                          progress_bar)
from cortex_resnet.training.experiment import ExperimentSpec, dump_experiment, learning_rate, parse_experiment
from cortex_resnet.training.report import write_metrics, write_report

__all__ = ["TrainingDivergedError", "build_model", "load_data", "train", "evaluate",
           "FAULT_ENV", "check_training_memory"]

# Test hook: SIGKILL this process right before the optimiser step with this global step
# number (1-based), to test that --resume after a hard kill is exact.
FAULT_ENV = "CORTEX_RESNET_FAULT_SIGKILL_AT_STEP"


class TrainingDivergedError(SimulationError):
    """The loss or the weights became NaN/inf; ``epoch``/``step`` say where."""

    def __init__(self, message: str, *, epoch: int, step: int, global_step: int):
        self.epoch, self.step, self.global_step = epoch, step, global_step
        super().__init__(message)


# ------------------------------------------------------------------ the run

def _same_run(saved: str, spec: ExperimentSpec) -> bool:
    """A resume must continue the same experiment (only the number of epochs may grow)."""
    try:
        old = parse_experiment(tomllib.loads(saved))
    except (tomllib.TOMLDecodeError, SpecError):
        return False
    return dump_experiment(old.replace(**{"train.epochs": spec.train.epochs})) == dump_experiment(spec)


def train(spec: ExperimentSpec, out: str | Path, *, resume: bool = False,
          device: str | None = None, data_dir: str | Path | None = None,
          progress: bool = True) -> dict[str, Any]:
    """Run an experiment; return the ``train --json`` summary.

    Parameters
    ----------
    spec : the experiment
    out : run folder (created; must not hold another run unless ``resume``)
    resume : continue from ``out/checkpoint.pt`` (start afresh when there is none yet)
    device : override ``spec.device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``)
    data_dir : folder with the files of file-based datasets (mnist, cifar10)
    progress : show a progress bar (rank 0, stderr)

    Returns
    -------
    dict
        ``{"out", "dataset", "variant", "params", "test_accuracy", "accuracy_per_step",
        "epochs", "device", "examples_per_s"}`` and more.

    Raises
    ------
    TrainingDivergedError
        NaN/inf loss or weights; ``out/checkpoint.pt`` holds the last good epoch.
    """
    out = Path(out)
    ckpt_path = out / "checkpoint.pt"
    if not resume and ckpt_path.exists():
        raise SpecError("--out", str(out), "a new folder: this one already holds a run "
                        "(checkpoint.pt); pass --resume to continue it, or choose another --out")
    if out.exists() and not out.is_dir():
        raise SpecError("--out", str(out), "a folder (it is a file)")
    ctx = setup_distributed(device or spec.device)
    benchmark = torch.backends.cudnn.benchmark
    # cuDNN picks the fastest convolution algorithm for the (fixed) batch shapes once
    torch.backends.cudnn.benchmark = benchmark or ctx.device.type == "cuda"
    try:
        return _run(spec, out, ckpt_path, resume, ctx, data_dir, progress)
    finally:
        torch.backends.cudnn.benchmark = benchmark
        teardown_distributed()


@dataclass
class _Run:
    """The state of one training run between epochs."""

    spec: ExperimentSpec
    out: Path
    ckpt_path: Path
    ctx: DistContext
    dataset: Dataset
    model: nn.Module  # the raw module (its state dict is saved)
    run_model: nn.Module  # DDP-wrapped and/or compiled: what trains
    eval_model: nn.Module
    opt: torch.optim.Optimizer
    info: dict[str, Any]
    text: str  # the experiment as TOML
    amp: bool
    channels_last: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    start_epoch: int = 0
    global_step: int = 0
    data: tuple[torch.Tensor, ...] = ()  # x_train, y_train, x_test, y_test on the device
    batches: list[tuple[int, int]] = field(default_factory=list)
    report_base: dict[str, Any] = field(default_factory=dict)

    def checkpoint(self, epoch: int) -> None:
        if self.ctx.is_main:
            save_checkpoint(self.ckpt_path, {
                "epoch": epoch, "global_step": self.global_step, "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(), "rng": rng_state(), "history": self.history,
                "experiment": self.text, "info": dict(self.info)})
        self.ctx.barrier()


def _run(spec: ExperimentSpec, out: Path, ckpt_path: Path, resume: bool, ctx: DistContext,
         data_dir: str | Path | None, progress: bool) -> dict[str, Any]:
    run = _setup(spec, out, ckpt_path, ctx, data_dir)
    if resume and ckpt_path.exists():
        _resume(run)
    _wrap(run)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.toml", run.text)
    if run.start_epoch == 0 and not run.history:
        run.checkpoint(0)  # a last good checkpoint exists even if the first epoch diverges
    _place_data(run)
    t_start = time.perf_counter()
    for epoch in range(run.start_epoch, spec.train.epochs):
        row = _epoch(run, epoch, progress)
        run.history.append(row)
        run.checkpoint(epoch + 1)
        if ctx.is_main:
            write_metrics(out / "metrics.csv", run.history)
            if progress:
                echo(f"epoch {epoch + 1}/{spec.train.epochs}: train loss {row['train_loss']:.4f} acc "
                     f"{row['train_accuracy']:.3f} | test loss {row['test_loss']:.4f} acc "
                     f"{row['test_accuracy']:.3f}")
    if not run.history:  # resumed a run with nothing to do and no history: evaluate once
        raise SpecError("train.epochs", spec.train.epochs, "at least one epoch to train")
    return _finish(run, t_start)


def _setup(spec: ExperimentSpec, out: Path, ckpt_path: Path, ctx: DistContext,
           data_dir: str | Path | None) -> _Run:
    """Data, model (on the device), optimiser; bad combinations refused before any work."""
    dev, t = ctx.device, spec.train
    if t.batch_size < ctx.world_size:
        raise SpecError("train.batch_size", t.batch_size, f">= the number of processes ({ctx.world_size})")
    dataset = load_data(spec, data_dir)
    if spec.data.augment == "crop_flip" and len(dataset.in_shape) != 3:
        raise SpecError("data.augment", "crop_flip", f"image data (C, H, W); {dataset.name} has "
                        f"shape {dataset.in_shape}")
    model, info = build_model(spec, dataset)
    check_training_memory(spec, model, dev)
    channels_last = dev.type == "cuda" and uses_conv2d(model)
    model.to(dev, memory_format=torch.channels_last) if channels_last else model.to(dev)
    amp = t.amp == "bf16" or (t.amp == "auto" and dev.type == "cuda")  # bf16 also on CPU if asked
    return _Run(spec, out, ckpt_path, ctx, dataset, model, model, model, build_optimizer(spec, model), info,
                dump_experiment(spec), amp, channels_last)


def _resume(run: _Run) -> None:
    """Continue from the checkpoint: weights, optimiser, RNG states, history."""
    ck = load_checkpoint(run.ckpt_path, map_location=run.ctx.device)
    if not _same_run(ck["experiment"], run.spec):
        raise SpecError("--resume", str(run.out), "the same experiment as the run in this folder "
                        "(only train.epochs may change); see its config.toml")
    run.model.load_state_dict(ck["model"])
    run.opt.load_state_dict(ck["optimizer"])
    set_rng_state(ck["rng"])
    run.start_epoch, run.global_step, run.history = int(ck["epoch"]), int(ck["global_step"]), list(ck["history"])


def _wrap(run: _Run) -> None:
    """DDP under torchrun; ``torch.compile`` when asked (evaluation compiled too, without DDP hooks)."""
    dev = run.ctx.device
    if run.ctx.distributed:
        run.run_model = DDP(run.model, device_ids=[dev.index] if dev.type == "cuda" else None)
    if run.spec.train.compile:
        run.run_model = torch.compile(run.run_model)
        run.eval_model = torch.compile(run.model) if run.ctx.distributed else run.run_model


def _place_data(run: _Run) -> None:
    d, dev = run.dataset, run.ctx.device
    run.data = tuple(torch.as_tensor(a, device=dev) for a in (d.x_train, d.y_train, d.x_test, d.y_test))
    n = len(run.data[1])
    run.batches = global_batches(n, run.spec.train.batch_size, run.spec.train.drop_last, run.ctx.world_size)
    run.report_base = {"experiment": run.spec.name, "dataset": d.name, "seed": run.spec.seed,
                       "chance": d.chance, "device": str(dev), "world_size": run.ctx.world_size,
                       "n_train": n, "n_test": len(run.data[3]), **run.info}


def _epoch(run: _Run, epoch: int, progress: bool) -> dict[str, Any]:
    """Train one epoch through :func:`fit_epoch` and evaluate; the metrics row (diverged: raises)."""
    spec, ctx, batches = run.spec, run.ctx, run.batches
    x_tr, y_tr, x_te, y_te = run.data
    t0 = time.perf_counter()
    g = epoch_generator(spec.seed, epoch)
    perm = torch.randperm(len(y_tr), generator=g).to(ctx.device)
    augment = (crop_flip_draws(g, [b - a for a, b in batches], device=ctx.device)
               if spec.data.augment == "crop_flip" else None)
    run.run_model.train()
    bar = progress_bar(len(batches), f"epoch {epoch + 1}/{spec.train.epochs}", progress and ctx.is_main)
    step0 = run.global_step
    fault = int(os.environ.get(FAULT_ENV, "0") or 0)

    def before_step(step: int) -> None:
        if fault and step0 + step + 1 == fault:
            os.kill(os.getpid(), signal.SIGKILL)

    sums = fit_epoch(run.run_model, run.opt, x_tr, y_tr, perm, batches, loss_steps=spec.train.loss_steps,
                     amp=run.amp, ctx=ctx, lr_at=lambda s: learning_rate(spec, epoch + s / len(batches)),
                     grad_clip=spec.optim.grad_clip, augment=augment, channels_last=run.channels_last,
                     before_step=before_step, bar=bar)
    bar.close()
    run.global_step += sums.steps
    if sums.bad_step >= 0:
        _diverged(run.out, ctx, run.report_base, run.history, epoch, sums.bad_step, step0 + sums.bad_step,
                  sums.lr, sums.bad_value, len(batches))
    train_time = time.perf_counter() - t0
    if not bool(torch.stack([torch.isfinite(p).all() for p in run.model.parameters()]).all()):
        _diverged(run.out, ctx, run.report_base, run.history, epoch, len(batches) - 1, run.global_step - 1,
                  sums.lr, float("nan"), len(batches))
    seen = sum(b - a for a, b in batches)
    test_loss, acc_steps = evaluate(run.eval_model, x_te, y_te, batch_size=spec.train.eval_batch_size,
                                    ctx=ctx, amp=run.amp, channels_last=run.channels_last)
    return {"epoch": epoch + 1, "lr": sums.lr,
            "train_loss": float(ctx.all_sum(sums.loss)) / seen,
            "train_accuracy": float(ctx.all_sum(sums.correct)) / seen,
            "test_loss": test_loss, "test_accuracy": acc_steps[-1],
            **{f"test_accuracy_step_{k + 1}": a for k, a in enumerate(acc_steps)},
            "wall_s": time.perf_counter() - t0, "examples_per_s": seen / train_time}


def _finish(run: _Run, t_start: float) -> dict[str, Any]:
    """The summary; rank 0 writes metrics, the final weights and the report."""
    last, out, info = run.history[-1], run.out, run.info
    acc_steps = [last[f"test_accuracy_step_{k + 1}"] for k in range(sum(
        1 for key in last if key.startswith("test_accuracy_step_")))]
    eps = [h["examples_per_s"] for h in run.history]
    summary = {"out": str(out), "dataset": run.dataset.name, "variant": info["variant"],
               "params": info["params"], "test_accuracy": last["test_accuracy"],
               "accuracy_per_step": acc_steps, "epochs": int(last["epoch"]), "device": str(run.ctx.device),
               "examples_per_s": float(np.median(eps)), "model": info["model"],
               "train_accuracy": last["train_accuracy"], "test_loss": last["test_loss"],
               "world_size": run.ctx.world_size, "status": "completed",
               "train_seconds": time.perf_counter() - t_start}
    if run.ctx.is_main:
        write_metrics(out / "metrics.csv", run.history)  # also after a kill between checkpoint and csv
        with atomic_path(out / "model.pt") as tmp:
            torch.save({"format": "cortex_resnet.train.model", "model": run.model.state_dict(),
                        "experiment": run.text, "info": info}, tmp)
        write_report(out, {**run.report_base, **summary})
    run.ctx.barrier()
    return summary


def _diverged(out: Path, ctx: DistContext, base: dict[str, Any], history: list[dict[str, Any]],
              epoch: int, step: int, global_step: int, lr: float, value: float, n_steps: int) -> None:
    msg = (f"training diverged: the loss became {value} at epoch {epoch + 1}, step {step + 1} of "
           f"{n_steps} (global step {global_step + 1}, learning rate {lr:.3g}). The last good "
           f"checkpoint {out / 'checkpoint.pt'} (epoch {len(history)}) is kept. Lower optim.lr, set "
           "optim.grad_clip or schedule.warmup_epochs, and rerun into a new --out.")
    if ctx.is_main:
        last = history[-1] if history else {}
        write_report(out, {**base, "out": str(out), "status": "diverged", "message": msg,
                           "test_accuracy": last.get("test_accuracy"), "accuracy_per_step": [],
                           "epochs": len(history), "examples_per_s": 0.0,
                           "diverged_at": {"epoch": epoch + 1, "step": step + 1,
                                           "global_step": global_step + 1, "lr": lr}})
    raise TrainingDivergedError(msg, epoch=epoch + 1, step=step + 1, global_step=global_step + 1)
