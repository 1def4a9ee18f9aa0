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
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cortex_resnet.training.baselines import build_baseline, param_count, uses_conv2d
from cortex_resnet.data.datasets import Dataset, get_dataset
from cortex_resnet.errors import SimulationError, SpecError
from cortex_resnet.core.resources import check_memory
from cortex_resnet.training.experiment import CircuitModelSpec, ExperimentSpec, dump_experiment, learning_rate, parse_experiment
from cortex_resnet.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from cortex_resnet.training.distributed import DistContext, setup_distributed, teardown_distributed
from cortex_resnet.training.epoch import (crop_flip_draws, echo, epoch_generator, evaluate, fit_epoch, global_batches,
                          progress_bar)
from cortex_resnet.training.report import write_metrics, write_report
from cortex_resnet.bridge import CircuitClassifier, unroll
from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.io.results import atomic_write_text, atomic_path

__all__ = ["TrainingDivergedError", "build_model", "load_data", "train", "evaluate",
           "FAULT_ENV"]

# Test hook: SIGKILL this process right before the optimiser step with this global step
# number (1-based), to test that --resume after a hard kill is exact.
FAULT_ENV = "CORTEX_RESNET_FAULT_SIGKILL_AT_STEP"


class TrainingDivergedError(SimulationError):
    """The loss or the weights became NaN/inf; ``epoch``/``step`` say where."""

    def __init__(self, message: str, *, epoch: int, step: int, global_step: int):
        self.epoch, self.step, self.global_step = epoch, step, global_step
        super().__init__(message)


# ------------------------------------------------------------------ building

def load_data(spec: ExperimentSpec, data_dir: str | Path | None = None) -> Dataset:
    """The experiment's dataset (``data_dir`` overrides ``data.data_dir``)."""
    d = spec.data
    return get_dataset(d.name, seed=d.seed, data_dir=data_dir or d.data_dir, params=d.params,
                       n_train=d.n_train, n_test=d.n_test)


def check_training_memory(spec: ExperimentSpec, model: nn.Module, device: torch.device | str = "cpu") -> None:
    """Refuse a run whose parameters (with gradients and two optimiser moments) and one batch's
    activations exceed the memory budget, before the first step allocates them.

    Activations of an unrolled circuit: the state of every unit at every step, kept for
    backprop, with ~6 tensors of that size per step (drive, pre-activation, phi, its
    derivative, the update and the readout input). Checked against the training device's
    memory (a GPU's free memory, :func:`~cortex_resnet.core.resources.memory_budget_bytes`).
    """
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    act_bytes = 0
    what = f"parameters ({param_bytes / 2**20:.1f} MiB) with gradients and optimiser state"
    if isinstance(spec.model, CircuitModelSpec):
        n = spec.circuit_spec().n_units
        k = spec.model.steps
        act_bytes = 6 * (k + 1) * spec.train.batch_size * n * 4
        what += f" + activations of {k + 1} steps x batch {spec.train.batch_size} x {n} units"
    check_memory(4 * param_bytes + act_bytes, "training memory",
                 f"{what}; lower train.batch_size, model.steps or the circuit size", device=device)


def build_model(spec: ExperimentSpec, dataset: Dataset) -> tuple[nn.Module, dict[str, Any]]:
    """The network of an experiment: an unrolled circuit classifier or a baseline.

    Returns the module (``(batch, *in_shape)`` -> logits ``(K, batch, n_classes)``) and
    ``{"model", "variant", "kind", "params", "params_allocated"}``: for circuits ``params``
    counts only the connections inside the circuit's masks (sparse/spatial circuits
    allocate dense matrices). Initial weights depend only on the seeds.
    """
    m = spec.model
    with torch.random.fork_rng(devices=[]):  # initialisers draw from the global RNG: isolate it
        torch.manual_seed(spec.seed)
        if isinstance(m, CircuitModelSpec):
            cspec = spec.circuit_spec()
            circuit = build_circuit(cspec, np.random.default_rng([cspec.seed, spec.seed]))
            net = unroll(circuit, steps=m.steps, dt_ms=m.dt_ms, variant=m.variant,
                         input_mode=m.input_mode, dtype=torch.float32, learnable=m.learnable,
                         norm=m.norm, state_gate=m.state_gate, dale=m.dale, init=m.init,
                         init_radius=m.init_radius, seed=spec.seed)
            model = CircuitClassifier(net, in_shape=dataset.in_shape, n_classes=dataset.n_classes,
                                      input_projection=m.input_projection,
                                      kernel_size=m.kernel_size, seed=spec.seed)
            info = {"model": f"E/I circuit, {m.variant}, {m.input_projection} input, K={m.steps}",
                    "variant": m.variant, "kind": "circuit"}
        else:
            model = build_baseline(m.name, dataset.in_shape, dataset.n_classes, m.params,
                                   seed=spec.seed)
            info = {"model": m.name + "".join(f" {k}={v}" for k, v in m.params.items()),
                    "variant": m.name, "kind": "baseline"}
    info["params_allocated"] = param_count(model)
    info["params"] = info["params_allocated"]
    if info["kind"] == "circuit":  # count connections inside the circuit's masks only
        info["params"] = int(model.net.param_count()) + sum(
            p.numel() for n, p in model.named_parameters() if p.requires_grad and not n.startswith("net."))
    return model, info


def _optimizer(spec: ExperimentSpec, model: nn.Module) -> torch.optim.Optimizer:
    o = spec.optim
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise SpecError("model.learnable", False, "a model with trainable parameters")
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                               weight_decay=o.weight_decay)
    cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    return cls(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)


# ------------------------------------------------------------------ the run

def _same_run(saved: str, spec: ExperimentSpec) -> bool:
    """A resume must continue the same experiment (only the number of epochs may grow)."""
    import tomllib


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


def _run(spec: ExperimentSpec, out: Path, ckpt_path: Path, resume: bool, ctx: DistContext,
         data_dir: str | Path | None, progress: bool) -> dict[str, Any]:
    dev = ctx.device
    t = spec.train
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
    opt = _optimizer(spec, model)
    text = dump_experiment(spec)
    history: list[dict[str, Any]] = []
    start_epoch, global_step = 0, 0
    if resume and ckpt_path.exists():
        ck = load_checkpoint(ckpt_path, map_location=dev)
        if not _same_run(ck["experiment"], spec):
            raise SpecError("--resume", str(out), "the same experiment as the run in this folder "
                            "(only train.epochs may change); see its config.toml")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        set_rng_state(ck["rng"])
        start_epoch, global_step, history = int(ck["epoch"]), int(ck["global_step"]), list(ck["history"])
    amp = t.amp == "bf16" or (t.amp == "auto" and dev.type == "cuda")  # bf16 also on CPU if asked
    raw_model = model
    run_model: nn.Module = model
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        run_model = DDP(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    eval_model = raw_model
    if t.compile:  # evaluation runs compiled too (without the DDP wrapper: no gradient hooks)
        run_model = torch.compile(run_model)
        eval_model = torch.compile(raw_model) if ctx.distributed else run_model
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)

        atomic_write_text(out / "config.toml", text)

    def checkpoint(epoch: int) -> None:
        if ctx.is_main:
            save_checkpoint(ckpt_path, {"epoch": epoch, "global_step": global_step,
                                        "model": raw_model.state_dict(), "optimizer": opt.state_dict(),
                                        "rng": rng_state(), "history": history, "experiment": text,
                                        "info": dict(info)})
        ctx.barrier()

    if start_epoch == 0 and not history:
        checkpoint(0)  # a last good checkpoint exists even if the first epoch diverges
    x_tr = torch.as_tensor(dataset.x_train, device=dev)
    y_tr = torch.as_tensor(dataset.y_train, device=dev)
    x_te = torch.as_tensor(dataset.x_test, device=dev)
    y_te = torch.as_tensor(dataset.y_test, device=dev)
    n = len(y_tr)
    batches = global_batches(n, t.batch_size, t.drop_last, ctx.world_size)
    fault = int(os.environ.get(FAULT_ENV, "0") or 0)
    report_base = {"experiment": spec.name, "dataset": dataset.name, "seed": spec.seed,
                   "chance": dataset.chance, "device": str(dev), "world_size": ctx.world_size,
                   "n_train": n, "n_test": len(y_te), **info}
    t_start = time.perf_counter()
    for epoch in range(start_epoch, t.epochs):
        t0 = time.perf_counter()
        g = epoch_generator(spec.seed, epoch)
        perm = torch.randperm(n, generator=g).to(dev)
        augment = (crop_flip_draws(g, [b - a for a, b in batches], device=dev)
                   if spec.data.augment == "crop_flip" else None)
        run_model.train()
        bar = progress_bar(len(batches), f"epoch {epoch + 1}/{t.epochs}", progress and ctx.is_main)
        step0 = global_step

        def before_step(step: int) -> None:
            if fault and step0 + step + 1 == fault:
                os.kill(os.getpid(), signal.SIGKILL)

        sums = fit_epoch(run_model, opt, x_tr, y_tr, perm, batches, loss_steps=t.loss_steps, amp=amp,
                         ctx=ctx, lr_at=lambda s: learning_rate(spec, epoch + s / len(batches)),
                         grad_clip=spec.optim.grad_clip, augment=augment, channels_last=channels_last,
                         before_step=before_step, bar=bar)
        bar.close()
        global_step += sums.steps
        lr = sums.lr
        if sums.bad_step >= 0:
            _diverged(out, ctx, report_base, history, epoch, sums.bad_step, step0 + sums.bad_step, lr,
                      sums.bad_value, len(batches))
        train_time = time.perf_counter() - t0
        if not bool(torch.stack([torch.isfinite(p).all() for p in raw_model.parameters()]).all()):
            _diverged(out, ctx, report_base, history, epoch, len(batches) - 1, global_step - 1, lr,
                      float("nan"), len(batches))
        sum_loss, sum_correct = sums.loss, sums.correct
        seen = sum(bb - aa for aa, bb in batches)
        test_loss, acc_steps = evaluate(eval_model, x_te, y_te, batch_size=t.eval_batch_size,
                                        ctx=ctx, amp=amp, channels_last=channels_last)
        row = {"epoch": epoch + 1, "lr": lr,
               "train_loss": float(ctx.all_sum(sum_loss)) / seen,
               "train_accuracy": float(ctx.all_sum(sum_correct)) / seen,
               "test_loss": test_loss, "test_accuracy": acc_steps[-1],
               **{f"test_accuracy_step_{k + 1}": a for k, a in enumerate(acc_steps)},
               "wall_s": time.perf_counter() - t0, "examples_per_s": seen / train_time}
        history.append(row)
        checkpoint(epoch + 1)
        if ctx.is_main:
            write_metrics(out / "metrics.csv", history)
            if progress:
                echo(f"epoch {epoch + 1}/{t.epochs}: train loss {row['train_loss']:.4f} acc "
                      f"{row['train_accuracy']:.3f} | test loss {test_loss:.4f} acc {acc_steps[-1]:.3f}")
    if not history:  # resumed a run with nothing to do and no history: evaluate once
        raise SpecError("train.epochs", t.epochs, "at least one epoch to train")
    last = history[-1]
    acc_steps = [last[f"test_accuracy_step_{k + 1}"] for k in range(sum(
        1 for key in last if key.startswith("test_accuracy_step_")))]
    eps = [h["examples_per_s"] for h in history]
    summary = {"out": str(out), "dataset": dataset.name, "variant": info["variant"],
               "params": info["params"], "test_accuracy": last["test_accuracy"],
               "accuracy_per_step": acc_steps, "epochs": int(last["epoch"]), "device": str(dev),
               "examples_per_s": float(np.median(eps)), "model": info["model"],
               "train_accuracy": last["train_accuracy"], "test_loss": last["test_loss"],
               "world_size": ctx.world_size, "status": "completed",
               "train_seconds": time.perf_counter() - t_start}
    if ctx.is_main:
        write_metrics(out / "metrics.csv", history)  # also after a kill between checkpoint and csv

        with atomic_path(out / "model.pt") as tmp:
            torch.save({"format": "cortex_resnet.train.model", "model": raw_model.state_dict(),
                        "experiment": text, "info": info}, tmp)
        write_report(out, {**report_base, **summary})
    ctx.barrier()
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
