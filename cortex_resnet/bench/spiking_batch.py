"""``cortex-resnet bench spiking-batch``: stimuli per second of the torch spiking engine vs Brian2.

The circuit: ``experiments/digits_tied.toml`` (128 E + 32 I units, dense input
projection) trained for one epoch (its weights are what matters here, not its
accuracy), realised as LIF pools the way ``compare`` does (``to_spiking``,
current input, gain scaling at the mean test input), with ``pool_size = 10``
and ``p_connect = 0.2`` (1600 neurons, ~0.5 M synapses per stimulus; the
default ``p_connect = 1`` would need ~0.2 GB of Brian2 synapse storage per
stimulus), 100 ms per stimulus (``compare``'s default), E spike counts in the
last two thirds.

Measured side by side in one process, on the same test inputs, each as the
wall time of what :meth:`SpikingModel.run` does (plan, network construction,
simulation, counting), with the plan (mapping + initial potentials, the same
work for every engine) and the engine part timed apart (``engine_only_speedup``):

* ``torch``: batch 256 (float64 and float32);
* ``brian2_runtime``: Cython runtime, the same 256 stimuli in batches of 32 (Brian2
  stores every replica's synapses: 32 x 0.5 M synapses is ~1.3 GB; a first call
  compiles and is not timed);
* ``brian2_standalone``: C++ standalone, the same 256 stimuli in batches of 32, the
  cached binary (the first batch builds and compiles it, not timed).

One core each first (torch: ``set_num_threads(1)``; Brian2's runtime and default
standalone are serial), then two threads each (:data:`THREADS`; torch: intra-op threads
and the per-replica random draws in worker threads, the same streams; Brian2: the
standalone build with OpenMP on 2 threads, its own cached binary, compiled untimed):
``torch_float32_2_threads`` and ``brian2_standalone_2_threads``. Every run's JSON entry
states its ``threads``. Results: stimuli per second of each; the ratio of the faster
torch precision to the faster Brian2 mode on one core (``torch_vs_brian2_speedup``) and of
torch to Brian2 standalone on two threads (``torch_vs_brian2_speedup_2_threads``); goal
>= 30 on this machine's CPU for both. ``quick=True``: batch 32 for torch, 8 for Brian2
runtime, no standalone, 60 ms, one thread.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from cortex_resnet.catalog import experiments_dir
from cortex_resnet.bench import BenchResult
from cortex_resnet.bridge import to_circuit
from cortex_resnet.spiking.brian import brian2_global_state
from cortex_resnet.spiking.build import build_plan
from cortex_resnet.spiking.cache import StandaloneEngine
from cortex_resnet.spiking.simulator import make_engine, to_spiking
from cortex_resnet.spiking.torch_engine import TorchEngine
from cortex_resnet.training.experiment import load_experiment
from cortex_resnet.training.loop import train
from cortex_resnet.workflows.compare import load_run

__all__ = ["run", "trained_circuit"]

EXPERIMENT = experiments_dir() / "digits_tied.toml"
SPIKING = {"pool_size": 10, "p_connect": 0.2}
GOAL = 30.0
THREADS = 2  # the two-thread comparison (this machine has 2 cores)
BRIAN2_TARGET = "cython"  # runtime code target of the Brian2 runs
SIZES = {"full": (256, 32, 100.0), "quick": (32, 8, 60.0)}  # torch batch, Brian2 batch, ms per stimulus


def _log(msg: str) -> None:
    print(f"[bench spiking-batch] {msg}", file=sys.stderr, flush=True)


def trained_circuit(folder: Path, epochs: int = 1) -> tuple[Any, np.ndarray, np.ndarray]:
    """Train the digits circuit for ``epochs`` in ``folder``; return (circuit, u_test, u_operating)."""
    import torch


    spec = load_experiment(EXPERIMENT).replace(**{"train.epochs": epochs, "device": "cpu"})
    train(spec, folder, progress=False)
    run = load_run(folder)
    with torch.no_grad():
        u = run.model.encode(torch.as_tensor(run.dataset.x_test).double()).numpy()
    return to_circuit(run.model.net), u, u.mean(0)


def _rate(circuit, u_op: np.ndarray, u: np.ndarray, duration_ms: float, engine: str = "brian2",
          dtype: str = "float64", standalone: bool = False, cache_dir: Any = None,
          batch: int | None = None, threads: int = 1) -> dict[str, Any]:
    """All of ``u`` as ``SpikingModel.run`` does it (plan, engine, counting), in batches of ``batch``
    (default: all at once), each part timed: ``plan_s`` (mapping + initial potentials: the same
    for every engine), ``engine_s`` (network construction and simulation), ``wall_s`` (all).
    ``threads``: torch's thread count, or the standalone binary's OpenMP threads (> 1: the OpenMP build)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads if engine == "torch" else previous)
    try:
        out = _timed(circuit, u_op, u, duration_ms, engine, dtype, standalone, cache_dir, batch, threads)
    finally:
        torch.set_num_threads(previous)
    return out | {"threads": threads, "engine": engine if engine == "torch" else
                  ("brian2_standalone" if standalone else f"brian2_runtime_{BRIAN2_TARGET}")}


def _timed(circuit, u_op: np.ndarray, u: np.ndarray, duration_ms: float, engine: str, dtype: str,
           standalone: bool, cache_dir: Any, batch: int | None, threads: int) -> dict[str, Any]:
    """The runs of :func:`_rate`, timed."""
    model = to_spiking(circuit, input_mode="current", u_operating=u_op, **SPIKING)
    size = u.shape[0] if batch is None else batch
    plan_s = engine_s = 0.0
    spikes = 0
    start = time.perf_counter()
    for k in range(0, u.shape[0], size):
        t0 = time.perf_counter()
        plan = build_plan(model.circuit, u[k:k + size], duration_ms, u_operating=u_op, seed=1 + k, engine=engine)
        t1 = time.perf_counter()
        with brian2_global_state():
            if engine == "torch":
                runner = TorchEngine(plan, dtype=dtype)
            elif standalone and threads > 1:
                runner = StandaloneEngine(plan, cache_dir, threads=threads)
            else:
                runner = make_engine(plan, standalone=standalone, cache_dir=cache_dir, target=BRIAN2_TARGET)
            raw = runner.run(True, 1 + k)
        plan_s, engine_s = plan_s + t1 - t0, engine_s + time.perf_counter() - t1
        spikes += int(((raw.spike_t_ms >= duration_ms / 3) & plan.is_E[raw.spike_i % plan.n]).sum())
    wall = time.perf_counter() - start
    rate = spikes / (u.shape[0] * plan.is_E.sum() * (2 * duration_ms / 3) * 1e-3)
    return {"stimuli": int(u.shape[0]), "batch": int(size), "wall_s": wall, "stimuli_per_s": u.shape[0] / wall,
            "plan_s": plan_s, "engine_s": engine_s, "engine_stimuli_per_s": u.shape[0] / engine_s,
            "mean_E_rate_hz": float(rate)}


def run(quick: bool = False) -> list[BenchResult]:
    """Measure torch vs Brian2 (module docstring) and return the results with their goals."""
    n_torch, n_brian, dur = SIZES["quick" if quick else "full"]
    load0 = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="bench_spiking_batch_"))
    try:
        _log("training the digits circuit for one epoch")
        circuit, u_test, u_op = trained_circuit(tmp / "run")
        reps = int(np.ceil(n_torch / u_test.shape[0]))
        u = np.concatenate([u_test] * reps)[:n_torch]
        res = _runs(circuit, u, u_op, n_brian, dur, quick, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _results(circuit, res, dur, load0)


def _runs(circuit, u: np.ndarray, u_op: np.ndarray, n_brian: int, dur: float, quick: bool,
          tmp: Path) -> dict[str, dict]:
    """Every engine's timed run (module docstring), Brian2 first."""
    _log("brian2 runtime: warm-up (compiles on a cold cache)")
    _rate(circuit, u_op, u[:2], dur)
    res: dict[str, dict] = {}
    n_b = u.shape[0] if not quick else n_brian  # full: the same stimuli for every engine
    _log(f"brian2 runtime: {n_b} stimuli in batches of {n_brian}")
    res["brian2_runtime"] = _rate(circuit, u_op, u[:n_b], dur, batch=n_brian)
    for threads in ((1, THREADS) if not quick else ()):
        key = "brian2_standalone" + ("" if threads == 1 else f"_{threads}_threads")
        _log(f"{key}: {n_b} stimuli in batches of {n_brian}, a first batch builds and compiles (not timed)")
        _rate(circuit, u_op, u[:n_brian], dur, standalone=True, cache_dir=tmp / "cache", threads=threads)
        res[key] = _rate(circuit, u_op, u[:n_b], dur, standalone=True, cache_dir=tmp / "cache",
                         batch=n_brian, threads=threads)
    for dtype, threads in [("float64", 1), ("float32", 1)] + ([("float32", THREADS)] if not quick else []):
        key = f"torch_{dtype}" + ("" if threads == 1 else f"_{threads}_threads")
        _log(f"{key}: {u.shape[0]} stimuli in one batch")
        res[key] = _rate(circuit, u_op, u, dur, engine="torch", dtype=dtype, threads=threads)
    return res


def _results(circuit, res: dict[str, dict], dur: float, load0: float) -> list[BenchResult]:
    """Ratios with their goals (one core; two threads when measured) and every run's numbers."""
    one = {k: v for k, v in res.items() if v["threads"] == 1}
    brian_best = max(v["stimuli_per_s"] for k, v in one.items() if k.startswith("brian2"))
    best_torch = max(("torch_float64", "torch_float32"), key=lambda k: res[k]["stimuli_per_s"])
    ratio = res[best_torch]["stimuli_per_s"] / brian_best
    engine_ratio = res[best_torch]["engine_stimuli_per_s"] / max(
        v["engine_stimuli_per_s"] for k, v in one.items() if k.startswith("brian2"))
    plan_share = res[best_torch]["plan_s"] / res[best_torch]["wall_s"]
    details = {"duration_ms": dur, "spiking": SPIKING, "n_neurons_per_stimulus": circuit.n_units * SPIKING["pool_size"],
               "runs": res, "torch": best_torch, "threads": 1, "load_average_start": load0,
               "load_average_end": os.getloadavg()[0], "engine_only_speedup": engine_ratio,
               "torch_plan_share_of_wall": plan_share, "goal": f">= {GOAL:g}x"}
    out = [BenchResult(f"{k}_stimuli_per_s", v["stimuli_per_s"], "stimuli/s", "information", None, v)
           for k, v in res.items()]
    out.append(BenchResult("torch_vs_brian2_engine_only_speedup", engine_ratio, "x", "information", None,
                           {"note": "simulation (network construction + run) only, one core each, without the "
                                    "plan (mapping, initial potentials), which every engine shares"}))
    out.append(BenchResult("torch_vs_brian2_speedup", ratio, "x", f">= {GOAL:g}", ratio >= GOAL, details))
    msg = f"{best_torch} / best brian2 = {ratio:.2f}x end to end, {engine_ratio:.2f}x engine only, one core"
    two_t, two_b = f"torch_float32_{THREADS}_threads", f"brian2_standalone_{THREADS}_threads"
    if two_t in res and two_b in res:
        r2 = res[two_t]["stimuli_per_s"] / res[two_b]["stimuli_per_s"]
        out.append(BenchResult(f"torch_vs_brian2_speedup_{THREADS}_threads", r2, "x", f">= {GOAL:g}", r2 >= GOAL,
                               {"torch": two_t, "brian2": two_b, "threads": THREADS, "goal": f">= {GOAL:g}x"}))
        msg += f"; {THREADS} threads each: {r2:.2f}x"
    _log(f"{msg} (plan {100 * plan_share:.0f} % of the torch wall time); goal >= {GOAL:g}x "
         f"{'met' if ratio >= GOAL else 'NOT met'}; load {load0:.1f} -> {os.getloadavg()[0]:.1f}")
    return out
