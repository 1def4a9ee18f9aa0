"""``make gpu-check``: everything that needs a GPU, in one prepared command (<= 10 min on an H100/H200).

    python -m cortex_resnet.bench.gpu_check [--out gpu_check.json] [--tiny] [--no-tests]

Parts (each reports its numbers, or one ``skipped: ...`` line on stderr and
``{"skipped": reason}`` in the JSON):

``card``           the GPU (name, capability, memory), torch/CUDA builds, this machine's CPU.
``gpu_tests``      ``pytest -m gpu`` (the suite's CUDA tests) in a subprocess.
``rate``           rate simulator, dense ReLU E/I circuit N = 2000, batch 256, Euler
                   1000 steps of 0.1 ms, float32: the final rates on CUDA vs CPU (relative
                   difference, must be <= 1e-4) and the time per run on each (speed-up).
``mnist1d_bf16``   MNIST-1D, tied and untied circuits (experiments/mnist1d_*.toml), trained
                   on CUDA with bf16 autocast (the default) for the experiment's epochs; one
                   float32 CPU epoch of each for the examples/s speed-up.
``resnet20``       one epoch of ResNet-20 on CIFAR-shaped synthetic data (50 000 x 3 x 32 x 32),
                   bf16, channels_last, cudnn.benchmark; CPU images/s (float32) from a few batches.
``conv_circuit``   the conv E/I circuits (CUDA only, float32): experiments/mnist1d_conv_circuit.toml
                   trained for its epochs (goal: test accuracy >= 0.90), and one epoch of
                   experiments/cifar10_conv_circuit.toml on CIFAR-shaped random data (images/s;
                   a full CIFAR-10 run is compared with ResNet-20's published 8.75 % error).
``ddp``            one data-parallel step in a 1-process NCCL group (gloo on CPU without a GPU).

Without a GPU the CPU-possible parts run (CPU timings, a bf16-autocast training run on
CPU, the gloo DDP step) and the rest is skipped; the exit status is 0 unless a part that
ran failed (1). ``--tiny`` shrinks every size (the default suite runs it in seconds).
The JSON goes to stdout (and to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import torch

from cortex_resnet.catalog import experiments_dir
from cortex_resnet.bench import machine_info
from cortex_resnet.rate.simulator import RateSystem, integrate
from cortex_resnet.model.stimulus import Stimulus
from cortex_resnet.bench.rate import bench_circuit
from cortex_resnet.training.experiment import load_experiment
from cortex_resnet.training.build import build_model
from cortex_resnet.training.loop import train
from cortex_resnet.training.baselines import build_baseline
from cortex_resnet.training.epoch import fit_epoch, global_batches

__all__ = ["main", "run_checks", "Sizes", "FULL", "TINY", "PARITY_REL_TOL"]

PARITY_REL_TOL = 1e-4  # float32 CPU vs GPU after 1000 Euler steps (issue 12)


@dataclass(frozen=True)
class Sizes:
    """Problem sizes of one check run."""

    rate_n: int
    rate_batch: int
    rate_steps: int
    mnist_epochs: int | None      # None: the experiment's own
    mnist_n_train: int | None     # None: the whole set
    mnist_tiny_data: bool         # digits instead of MNIST-1D (generating MNIST-1D takes ~5 s), no CPU float32 run
    resnet_images: int
    resnet_cpu_batches: int
    batch: int                    # ResNet batch


FULL = Sizes(2000, 256, 1000, None, None, False, 50_000, 3, 128)
TINY = Sizes(100, 8, 50, 1, 100, True, 24, 1, 8)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


# ------------------------------------------------------------------ parts

def card(gpu: bool) -> dict[str, Any]:
    """The GPU and this machine's CPU."""
    out: dict[str, Any] = {"cpu": machine_info(), "torch": torch.__version__, "cuda_build": torch.version.cuda}
    if gpu:
        p = torch.cuda.get_device_properties(0)
        out.update({"gpu": p.name, "capability": f"{p.major}.{p.minor}", "gpu_memory_gib": p.total_memory / 2**30,
                    "gpu_count": torch.cuda.device_count(), "bf16_supported": torch.cuda.is_bf16_supported()})
    return out


def gpu_tests(gpu: bool, s: Sizes) -> dict[str, Any]:
    """``pytest -m gpu`` on the installed suite."""
    if not gpu:
        return {"skipped": "no CUDA device: the gpu-marked tests skip"}
    tests = Path.cwd() / "tests"  # `make gpu-check` runs in the checkout; tests are not installed
    if not tests.is_dir():
        return {"skipped": f"no tests/ folder in {Path.cwd()}: run from a checkout (make gpu-check)"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", str(tests)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tests.parent)
    tail = p.stdout.strip().splitlines()[-1:] or [""]
    return {"returncode": p.returncode, "summary": tail[0], "seconds": time.perf_counter() - t0,
            "ok": p.returncode == 0, **({"output_tail": p.stdout[-3000:] + p.stderr[-2000:]} if p.returncode else {})}


def _rate_run(dev: torch.device, s: Sizes) -> tuple[np.ndarray, float]:
    c = bench_circuit(s.rate_n, 20)
    u = np.random.default_rng(0).uniform(0.0, 2.0, size=(s.rate_batch, 20))
    dt = 0.1
    system = RateSystem(c, torch.float32, dev)
    stim = Stimulus.from_array(u[None], dt_ms=s.rate_steps * dt, dtype=torch.float32)
    integrate(system, stim, 5 * dt, dt, record_stride=5)  # warm-up: kernels, allocator
    _sync(dev)
    t0 = time.perf_counter()
    run = integrate(system, stim, s.rate_steps * dt, dt, record_stride=s.rate_steps)
    _sync(dev)
    return run.r[-1].double().cpu().numpy(), time.perf_counter() - t0


def rate(gpu: bool, s: Sizes) -> dict[str, Any]:
    """CPU/GPU parity of the final rates and the time of one run on each."""
    r_cpu, t_cpu = _rate_run(torch.device("cpu"), s)
    out: dict[str, Any] = {"n_units": s.rate_n, "batch": s.rate_batch, "steps": s.rate_steps,
                           "dtype": "float32", "cpu_s": t_cpu,
                           "cpu_steps_per_s": s.rate_steps / t_cpu}
    if not gpu:
        _log("skipped: rate on CUDA (parity and speed): no CUDA device; CPU timing done")
        return {**out, "gpu": {"skipped": "no CUDA device"}}
    r_gpu, t_gpu = _rate_run(torch.device("cuda"), s)
    rel = float(np.max(np.abs(r_gpu - r_cpu)) / max(float(np.max(np.abs(r_cpu))), 1e-30))
    return {**out, "gpu_s": t_gpu, "gpu_steps_per_s": s.rate_steps / t_gpu, "speedup": t_cpu / t_gpu,
            "max_rel_diff": rel, "parity_tol": PARITY_REL_TOL, "ok": rel <= PARITY_REL_TOL}


def _train_exp(name: str, device: str, amp: str, s: Sizes, epochs: int | None, out: Path) -> dict[str, Any]:
    spec = load_experiment(experiments_dir() / f"{name}.toml")
    changes: dict[str, Any] = {"device": device, "train.amp": amp}
    if epochs is not None:
        changes["train.epochs"] = epochs
    if s.mnist_tiny_data:
        changes["data"] = {"name": "digits", "n_train": s.mnist_n_train, "n_test": s.mnist_n_train}
    elif s.mnist_n_train is not None:
        changes.update({"data.n_train": s.mnist_n_train, "data.n_test": s.mnist_n_train})
    t0 = time.perf_counter()
    summ = train(spec.replace(**changes), out, progress=False)
    return {"test_accuracy": summ["test_accuracy"], "epochs": summ["epochs"],
            "examples_per_s": summ["examples_per_s"], "seconds": time.perf_counter() - t0,
            "device": summ["device"], "amp": amp}


def mnist1d_bf16(gpu: bool, s: Sizes) -> dict[str, Any]:
    """Tied and untied MNIST-1D circuits: bf16 on CUDA (full epochs); on CPU one epoch in float32
    (the speed reference) -- and, without a GPU, the same epoch with bf16 autocast on CPU."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in ("tied", "untied"):
            name = f"mnist1d_{variant}"
            res: dict[str, Any] = {}
            if not s.mnist_tiny_data:
                res["cpu_float32"] = _train_exp(name, "cpu", "off", s, 1, Path(tmp) / f"{name}_c32")
            if gpu:
                res["cuda_bf16"] = _train_exp(name, "cuda", "auto", s, s.mnist_epochs, Path(tmp) / f"{name}_g")
                if "cpu_float32" in res:
                    res["speedup"] = res["cuda_bf16"]["examples_per_s"] / res["cpu_float32"]["examples_per_s"]
            else:
                res["cpu_bf16"] = _train_exp(name, "cpu", "bf16", s, 1, Path(tmp) / f"{name}_c16")
                res["cuda_bf16"] = {"skipped": "no CUDA device"}
            out[variant] = res
    if not gpu:
        _log("skipped: MNIST-1D bf16 training on CUDA: no CUDA device; one epoch each with bf16 autocast "
             "on CPU done")
    return out


def _resnet_epoch(dev: torch.device, n_images: int, batch: int, max_batches: int | None) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n_images, 3, 32, 32, generator=gen).to(dev)
    y = torch.randint(0, 10, (n_images,), generator=gen).to(dev)
    torch.manual_seed(0)
    model = build_baseline("resnet", (3, 32, 32), 10, {"depth": 20})
    cl = dev.type == "cuda"
    model = model.to(dev, memory_format=torch.channels_last) if cl else model.to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    batches = global_batches(n_images, batch, True, 1)
    warm, batches = batches[:2], batches[2:] if max_batches is None else batches[2:2 + max_batches]
    perm = torch.arange(n_images, device=dev)
    amp = dev.type == "cuda"  # bf16 on the GPU; the CPU reference in float32 (what a CPU run uses)
    fit_epoch(model, opt, x, y, perm, warm, amp=amp, channels_last=cl)  # cudnn.benchmark picks here
    _sync(dev)
    t0 = time.perf_counter()
    sums = fit_epoch(model, opt, x, y, perm, batches, amp=amp, channels_last=cl)
    _sync(dev)
    dt = time.perf_counter() - t0
    n = sum(b - a for a, b in batches)
    return {"images": n, "seconds": dt, "images_per_s": n / dt, "train_loss": float(sums.loss) / n}


def resnet20(gpu: bool, s: Sizes) -> dict[str, Any]:
    """One ResNet-20 epoch on CIFAR-shaped random data (bf16, channels_last) vs float32 CPU batches."""
    n_cpu = s.batch * (s.resnet_cpu_batches + 2)
    out: dict[str, Any] = {"cpu_float32": _resnet_epoch(torch.device("cpu"), n_cpu, s.batch, s.resnet_cpu_batches)}
    if not gpu:
        _log("skipped: ResNet-20 epoch on CUDA: no CUDA device; float32 CPU batches done")
        return {**out, "cuda_bf16": {"skipped": "no CUDA device"}}
    bench = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        out["cuda_bf16"] = _resnet_epoch(torch.device("cuda"), s.resnet_images, s.batch, None)
    finally:
        torch.backends.cudnn.benchmark = bench
    out["speedup"] = out["cuda_bf16"]["images_per_s"] / out["cpu_float32"]["images_per_s"]
    return out


def conv_circuit(gpu: bool, s: Sizes) -> dict[str, Any]:
    """The conv E/I circuits on CUDA: MNIST-1D trained (goal >= 0.90), one CIFAR-shaped epoch timed."""
    if not gpu:
        _log("skipped: conv E/I circuits on CUDA: no CUDA device (on CPU: cortex-resnet train "
             "experiments/mnist1d_conv_circuit.toml)")
        return {"skipped": "no CUDA device"}
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        res = _train_exp("mnist1d_conv_circuit", "cuda", "off", s, s.mnist_epochs, Path(tmp) / "mnist1d_conv")
        out["mnist1d"] = {**res, "goal": ">= 0.90", "met": res["test_accuracy"] >= 0.90}
    dev = torch.device("cuda")
    spec = load_experiment(experiments_dir() / "cifar10_conv_circuit.toml")
    shape = SimpleNamespace(in_shape=(3, 32, 32), n_classes=10)  # build_model reads only these two
    torch.manual_seed(0)
    model = build_model(spec, shape)[0].to(dev)  # type: ignore[arg-type]
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(s.resnet_images, 3, 32, 32, generator=gen).to(dev)
    y = torch.randint(0, 10, (s.resnet_images,), generator=gen).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    batches = global_batches(s.resnet_images, s.batch, True, 1)
    perm = torch.arange(s.resnet_images, device=dev)
    fit_epoch(model, opt, x, y, perm, batches[:2], amp=False, channels_last=False)  # warm-up
    _sync(dev)
    t0 = time.perf_counter()
    fit_epoch(model, opt, x, y, perm, batches[2:], amp=False, channels_last=False)
    _sync(dev)
    dt, n = time.perf_counter() - t0, sum(b - a for a, b in batches[2:])
    out["cifar10_epoch"] = {"images": n, "seconds": dt, "images_per_s": n / dt, "published_resnet20_error": 0.0875}
    out["ok"] = out["mnist1d"]["met"]
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ddp(gpu: bool, s: Sizes) -> dict[str, Any]:
    """One DDP step in a 1-process group: NCCL on CUDA (gloo on CPU without a GPU)."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    backend, dev = ("nccl", torch.device("cuda:0")) if gpu else ("gloo", torch.device("cpu"))
    if dist.is_initialized():
        return {"skipped": "a process group is already initialised in this process"}
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        model = torch.nn.Linear(16, 4).to(dev)
        ref = torch.nn.Linear(16, 4).to(dev)
        ref.load_state_dict(model.state_dict())
        x = torch.rand(8, 16, device=dev)
        DDP(model, device_ids=[0] if gpu else None)(x).square().sum().backward()
        ref(x).square().sum().backward()
        t = torch.ones(3, device=dev)
        dist.all_reduce(t)
        same = all(torch.allclose(a.grad, b.grad) for a, b in zip(model.parameters(), ref.parameters()))
        out = {"backend": backend, "world_size": 1, "grads_equal_single_process": same,
               "all_reduce_ok": bool(torch.equal(t.cpu(), torch.ones(3))), "ok": same}
    finally:
        dist.destroy_process_group()
    if not gpu:
        _log("skipped: NCCL DDP step: no CUDA device; the same step with gloo on CPU done")
    return out


PARTS: dict[str, Callable[[bool, Sizes], dict[str, Any]]] = {
    "gpu_tests": gpu_tests, "rate": rate, "mnist1d_bf16": mnist1d_bf16, "resnet20": resnet20,
    "conv_circuit": conv_circuit, "ddp": ddp,
}


def run_checks(sizes: Sizes = FULL, *, tests: bool = True, gpu: bool | None = None) -> dict[str, Any]:
    """Run every part; a part that raises reports ``{"error": ...}`` and the others still run."""
    gpu = torch.cuda.is_available() if gpu is None else gpu
    report: dict[str, Any] = {"gpu_available": gpu, "card": card(gpu)}
    for name, fn in PARTS.items():
        if name == "gpu_tests" and not tests:
            report[name] = {"skipped": "--no-tests"}
            continue
        t0 = time.perf_counter()
        _log(f"[gpu-check] {name} ...")
        try:
            report[name] = fn(gpu, sizes)
        except Exception as err:  # noqa: BLE001 - report every part, then fail the run
            import traceback

            report[name] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-3000:]}
        report[name]["part_seconds"] = time.perf_counter() - t0
        if name == "gpu_tests" and "skipped" in report[name]:
            _log(f"skipped: gpu-marked tests: {report[name]['skipped']}")
    report["ok"] = not any("error" in v or v.get("ok") is False for k, v in report.items()
                           if isinstance(v, dict) and k in PARTS)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cortex_resnet.bench.gpu_check", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (seconds; for the test suite)")
    ap.add_argument("--no-tests", action="store_true", help="do not run the gpu-marked tests")
    args = ap.parse_args(argv)
    if args.out is not None and args.out.exists():
        _log(f"error: --out {args.out} exists; choose a new file (nothing is overwritten)")
        return 2
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    if args.tiny:
        torch.set_num_threads(1)  # tiny problems: thread start-up would dominate
    try:
        report = run_checks(TINY if args.tiny else FULL, tests=not args.no_tests)
    finally:
        torch.set_num_threads(threads)
    report["seconds"] = time.perf_counter() - t0
    text = json.dumps(report, indent=1, default=str)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
