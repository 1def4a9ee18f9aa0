"""``cortex-resnet bench train``: training throughput of unrolled circuits against hand-written torch.

Ours: :func:`cortex_resnet.training.loop.train` -- the whole training loop (per-step
learning rate, NaN guard, accuracy bookkeeping, Dale-parametrised weights,
anytime readout at every step) -- on MNIST-1D (4000 examples, length 40) with
a tied and an untied E/I circuit (128 E + 32 I, 32 input channels, K = 10
steps, batch 100, Adam). Its ``examples_per_s`` counts training steps only
(evaluation and checkpoints are timed apart).

Reference: a hand-written loop and model of the same shapes and arithmetic --
``Linear(40, 32)`` encoder, ``d = u B^T + b``, ``r <- r + alpha (-r + relu(r W^T + d))``
K times with plain ``nn.Parameter`` weights (one ``W``, or K), a linear readout
of the 128 E units at every step, cross-entropy on the last step, Adam, the
same batches. CPU runs use one torch thread (nets this small gain nothing
from more, and one thread is steadiest on a shared machine).

Epochs of ours and of the reference alternate (ours continues with
``resume``), so that drift in machine load hits both alike; we report the
median over epochs after the first. Ratio = reference examples/s / ours
(our time per example relative to the reference); goal <= 1.1. With CUDA the
same runs on the GPU with bf16 autocast, and the CPU -> GPU speed-up is reported.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cortex_resnet.bench import BenchResult
from cortex_resnet.training.experiment import parse_experiment
from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.model.spec import parse_spec
from cortex_resnet.training.loop import load_data, train
from cortex_resnet.training.report import read_metrics

__all__ = ["run", "HandWritten", "bench_spec"]

CIRCUIT = {"name": "bench_train",
           "populations": {"E": {"n": 128, "tau_ms": 10.0, "transfer": {"name": "relu"}},
                           "I": {"n": 32, "tau_ms": 5.0, "transfer": {"name": "relu"}}},
           "connectivity": {"J_EE": 0.5, "J_EI": 1.0, "J_IE": 1.0, "J_II": 0.5, "weight_cv": 0.5},
           "input": {"n_inputs": 32, "projection": "random", "gain_I": 0.5}}


def bench_spec(variant: str, device: str, n_train: int | None):
    """The experiment we time (constant learning rate, no schedule)."""
    return parse_experiment({
        "name": f"bench_{variant}", "seed": 0, "device": device,
        "data": {"name": "mnist1d", "n_train": n_train, "n_test": 200},
        "model": {"kind": "circuit", "spec": CIRCUIT, "variant": variant, "steps": 10, "dt_ms": 1.0},
        "optim": {"name": "adam", "lr": 0.001}, "train": {"epochs": 1, "batch_size": 100}})


class HandWritten(nn.Module):
    """The reference model: the unrolled classifier's shapes and arithmetic in plain torch."""

    def __init__(self, n_features: int, n_inputs: int, n_units: int, n_E: int, n_classes: int,
                 alpha: torch.Tensor, steps: int, tied: bool, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        rand = lambda *s: nn.Parameter(0.1 * torch.randn(*s, generator=g))  # noqa: E731
        self.encoder = nn.Linear(n_features, n_inputs)
        self.B, self.b = rand(n_units, n_inputs), rand(n_units)
        self.Ws = nn.ParameterList([rand(n_units, n_units) for _ in range(1 if tied else steps)])
        self.readout = nn.Linear(n_E, n_classes)
        self.register_buffer("alpha", alpha.clone())
        self.steps, self.n_E = steps, n_E

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.encoder(x.flatten(1)) @ self.B.T + self.b
        r = torch.zeros_like(d)
        states = []
        for k in range(self.steps):
            W = self.Ws[min(k, len(self.Ws) - 1)]
            r = r + self.alpha * (-r + torch.relu(r @ W.T + d))
            states.append(r[:, : self.n_E])
        return self.readout(torch.stack(states))

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return f"HandWritten(n_E={self.n_E}, {sum(p.numel() for p in self.parameters()):,} parameters)"


def _reference_epoch(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                     batch: int, epoch: int, amp: bool) -> float:
    """One epoch of the hand-written loop; returns examples/s."""
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(epoch)).to(x.device)
    if x.is_cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for a in range(0, len(y), batch):
        idx = perm[a:a + batch]
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x[idx])
        loss = F.cross_entropy(logits[-1].float(), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if x.is_cuda:
        torch.cuda.synchronize()
    return len(y) / (time.perf_counter() - t0)


def _measure(variant: str, device: str, epochs: int, n_train: int | None) -> dict[str, float]:
    spec = bench_spec(variant, device, n_train)
    dev = torch.device(device)
    ds = load_data(spec)
    x = torch.as_tensor(ds.x_train, device=dev)
    y = torch.as_tensor(ds.y_train, device=dev)
    c = build_circuit(parse_spec(CIRCUIT))
    alpha = torch.as_tensor(1.0 / c.tau_ms, dtype=torch.float32)  # dt = 1 ms
    ref = HandWritten(ds.n_features, c.n_inputs, c.n_units, c.n_E, ds.n_classes, alpha, 10,
                      variant == "tied").to(dev)
    opt = torch.optim.Adam(ref.parameters(), lr=0.001)
    amp = dev.type == "cuda"
    ours, theirs = [], []
    folder = Path(tempfile.mkdtemp(prefix="cortex_bench_train_"))
    try:
        for e in range(epochs):
            s = train(spec.replace(**{"train.epochs": e + 1}), folder / "run", resume=e > 0,
                      progress=False)
            ours.append(s["examples_per_s"] if e == 0 else _last_epoch_rate(folder / "run"))
            theirs.append(_reference_epoch(ref, opt, x, y, 100, e, amp))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    ours, theirs = ours[1:] or ours, theirs[1:] or theirs  # the first epoch warms up
    return {"ours": statistics.median(ours), "reference": statistics.median(theirs),
            "ours_all": ours, "reference_all": theirs}


def _last_epoch_rate(run: Path) -> float:
    return read_metrics(run / "metrics.csv")[-1]["examples_per_s"]


def _results(device: str, epochs: int, n_train: int | None, tag: str) -> tuple[list[BenchResult], dict]:
    out, rates = [], {}
    for variant in ("tied", "untied"):
        m = _measure(variant, device, epochs, n_train)
        ratio = m["reference"] / m["ours"]
        rates[variant] = m["ours"]
        out.append(BenchResult(
            f"train_{variant}_{tag}_time_vs_handwritten", ratio, "x", "<= 1.1", ratio <= 1.1,
            {"ours_examples_per_s": m["ours"], "reference_examples_per_s": m["reference"],
             "ours_per_epoch": m["ours_all"], "reference_per_epoch": m["reference_all"],
             "threads": torch.get_num_threads(), "device": device, "epochs": epochs}))
        out.append(BenchResult(f"train_{variant}_{tag}_examples_per_s", m["ours"], "examples/s",
                               "informational", None, {}))
    return out, rates


def run(quick: bool = False) -> list[BenchResult]:
    """CPU (one thread) always; CUDA (bf16) when present, with the CPU -> GPU speed-up."""
    epochs, n_train = (3, 1000) if quick else (6, None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # nets this small run fastest on one thread, and steadiest on a busy machine
    try:
        results, cpu = _results("cpu", epochs, n_train, "cpu")
    finally:
        torch.set_num_threads(threads)
    if torch.cuda.is_available():
        gpu_results, gpu = _results("cuda", epochs, n_train, "cuda_bf16")
        results += gpu_results
        for variant in ("tied", "untied"):
            results.append(BenchResult(
                f"train_{variant}_speedup_cuda_vs_cpu", gpu[variant] / cpu[variant], "x",
                "informational", None, {"gpu": torch.cuda.get_device_name(0)}))
    else:
        results.append(BenchResult("train_cuda_bf16", float("nan"), "x", "<= 1.1 (GPU only)", None,
                                   {"skipped": "no CUDA device"}))
    return results
