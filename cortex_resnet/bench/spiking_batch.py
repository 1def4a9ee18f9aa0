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

Every engine gets one core (torch: ``set_num_threads(1)``; Brian2's runtime
and default standalone are serial). Results: stimuli per second of each, and
the ratio of the faster torch precision to the faster Brian2 mode; goal >= 30
on this machine's CPU. ``quick=True``: batch 32
for torch, 8 for Brian2 runtime, no standalone, 60 ms.
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
from cortex_resnet.spiking.simulator import make_engine, to_spiking
from cortex_resnet.spiking.torch_engine import TorchEngine
from cortex_resnet.training.experiment import load_experiment
from cortex_resnet.training.loop import train
from cortex_resnet.workflows.compare import load_run

__all__ = ["run", "trained_circuit"]

EXPERIMENT = experiments_dir() / "digits_tied.toml"
SPIKING = {"pool_size": 10, "p_connect": 0.2}
GOAL = 30.0
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
          batch: int | None = None) -> dict[str, Any]:
    """All of ``u`` as ``SpikingModel.run`` does it (plan, engine, counting), in batches of ``batch``
    (default: all at once), each part timed: ``plan_s`` (mapping + initial potentials: the same
    for every engine), ``engine_s`` (network construction and simulation), ``wall_s`` (all)."""
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
            runner = (TorchEngine(plan, dtype=dtype) if engine == "torch" else
                      make_engine(plan, standalone=standalone, cache_dir=cache_dir, target=BRIAN2_TARGET))
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
    import torch

    n_torch, n_brian, dur = SIZES["quick" if quick else "full"]
    load0 = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="bench_spiking_batch_"))
    try:
        _log("training the digits circuit for one epoch")
        circuit, u_test, u_op = trained_circuit(tmp / "run")
        reps = int(np.ceil(n_torch / u_test.shape[0]))
        u = np.concatenate([u_test] * reps)[:n_torch]
        _log("brian2 runtime: warm-up (compiles on a cold cache)")
        _rate(circuit, u_op, u[:2], dur)
        res: dict[str, dict] = {}
        n_b = n_torch if not quick else n_brian  # full: the same stimuli for every engine
        _log(f"brian2 runtime: {n_b} stimuli in batches of {n_brian}")
        res["brian2_runtime"] = _rate(circuit, u_op, u[:n_b], dur, batch=n_brian)
        if not quick:
            _log(f"brian2 standalone: {n_b} stimuli in batches of {n_brian}, a first batch builds and "
                 "compiles (not timed)")
            _rate(circuit, u_op, u[:n_brian], dur, standalone=True, cache_dir=tmp / "cache")
            res["brian2_standalone"] = _rate(circuit, u_op, u[:n_b], dur, standalone=True, cache_dir=tmp / "cache",
                                             batch=n_brian)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # one core each: Brian2's runtime and (default) standalone are serial
        try:
            for dtype in ("float64", "float32"):
                _log(f"torch {dtype}: {n_torch} stimuli in one batch")
                res[f"torch_{dtype}"] = _rate(circuit, u_op, u, dur, engine="torch", dtype=dtype)
        finally:
            torch.set_num_threads(threads)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    brian_best = max(v["stimuli_per_s"] for k, v in res.items() if k.startswith("brian2"))
    best_torch = max(("torch_float64", "torch_float32"), key=lambda k: res[k]["stimuli_per_s"])
    ratio = res[best_torch]["stimuli_per_s"] / brian_best
    engine_ratio = res[best_torch]["engine_stimuli_per_s"] / max(
        v["engine_stimuli_per_s"] for k, v in res.items() if k.startswith("brian2"))
    plan_share = res[best_torch]["plan_s"] / res[best_torch]["wall_s"]
    details = {"duration_ms": dur, "spiking": SPIKING, "n_neurons_per_stimulus": circuit.n_units * SPIKING["pool_size"],
               "runs": res, "torch": best_torch, "load_average_start": load0, "load_average_end": os.getloadavg()[0],
               "engine_only_speedup": engine_ratio, "torch_plan_share_of_wall": plan_share}
    out = [BenchResult(f"{k}_stimuli_per_s", v["stimuli_per_s"], "stimuli/s", "information", None, v)
           for k, v in res.items()]
    out.append(BenchResult("torch_vs_brian2_speedup", ratio, "x", f">= {GOAL:g}", ratio >= GOAL, details))
    details["goal"] = f">= {GOAL:g}x"
    out.insert(-1, BenchResult("torch_vs_brian2_engine_only_speedup", engine_ratio, "x", "information", None,
                               {"note": "simulation (network construction + run) only, without the plan "
                                        "(mapping, initial potentials), which every engine shares"}))
    _log(f"{best_torch} / best brian2 = {ratio:.2f}x end to end, {engine_ratio:.2f}x engine only "
         f"(plan {100 * plan_share:.0f} % of the torch wall time); goal >= {GOAL:g}x "
         f"{'met' if ratio >= GOAL else 'NOT met'}; load {load0:.1f} -> {os.getloadavg()[0]:.1f}")
    return out
