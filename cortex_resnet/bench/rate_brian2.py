"""Part (c) of the rate benchmark (:mod:`cortex_resnet.bench.rate`): the same circuit in Brian2.

Two forms, each integrating its stimuli one after another with Brian2's Euler: a NeuronGroup
with a summed synaptic variable (the issue's definition), and a ``network_operation`` doing one
NumPy mat-vec per step (Brian2's fastest form here). Brian2 is imported when a part runs
(deferred: it is optional here and installs a signal handler at import).
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from typing import Any

import numpy as np

from cortex_resnet.bench import BenchResult
from cortex_resnet.model.circuit import Circuit

__all__ = ["brian2_results", "log", "rel_error"]

EQS = """
dr/dt = (-r + clip(I_rec + h, 0, inf)) / tau : 1
I_rec : 1
h : 1 (constant)
tau : second (constant)
"""


def log(msg: str) -> None:
    print(f"[bench rate] {msg}", file=sys.stderr, flush=True)


def rel_error(r: np.ndarray, ref: np.ndarray) -> float:
    """Max over stimuli of ``max|r - ref| / max|ref|`` (per stimulus)."""
    return float(np.max(np.max(np.abs(r - ref), axis=1) / np.max(np.abs(ref), axis=1)))


def brian2_results(circuit: Circuit, u: np.ndarray, s: Any, r_euler: np.ndarray, ours_per_stim: float,
                   blas: int | None) -> list[BenchResult]:
    """``euler_vs_brian2`` and ``euler_vs_brian2_matrix_form``: Brian2's time per stimulus over ours.

    ``s``: the benchmark's sizes (:class:`cortex_resnet.bench.rate.Sizes`); ``r_euler``: our final
    rates (batch, N) to compare with; ``ours_per_stim``: our batched Euler time / batch (s).
    """
    H = u @ circuit.B.T + circuit.b  # (batch, N) drive per stimulus
    details: dict[str, Any] = {"dt_ms": s.dt_ms, "duration_ms": s.duration_ms, "float": "float64 (Brian2's)",
                               "equations": "dr/dt = (-r + clip(I_rec + h, 0, inf)) / tau, method='euler'"}
    summed = _summed(circuit, H, s, r_euler)
    if summed is None:  # no compiler: Brian2's own fallback is the numpy target
        s = s.__class__(**{**asdict(s), "brian_target": "numpy"})
        summed = _summed(circuit, H, s, r_euler)
    matrix = _matrix(circuit, H, s, r_euler, blas)
    t_matrix = matrix["seconds_per_stimulus"]
    details.update(ours_euler_seconds_per_stimulus=ours_per_stim,
                   note="Brian2 integrates its stimuli one after another (its cost per stimulus does not "
                        "depend on the stimulus: the mean of the stimuli timed is used); ours is (a)'s "
                        "batched Euler run / batch size; Brian2's setup (connect, compile) is not timed")
    v_sum = summed["seconds_per_stimulus"] / ours_per_stim
    v_mat = t_matrix / ours_per_stim
    return [BenchResult("euler_vs_brian2", v_sum, "x", ">= 100", bool(v_sum >= 100),
                        {**details, "brian2": summed, "stimuli_timed": s.n_brian,
                         "form": "NeuronGroup + summed synaptic variable (the issue's definition)",
                         "matrix_form_seconds_per_stimulus": t_matrix}),
            BenchResult("euler_vs_brian2_matrix_form", v_mat, "x", ">= 100", bool(v_mat >= 100),
                        {**details, "brian2": matrix, "stimuli_timed": 1,
                         "form": "NeuronGroup + network_operation I_rec = W @ r (one NumPy mat-vec per "
                                 "step), Brian2's fastest form here"})]


def _summed(circuit: Circuit, H: np.ndarray, s: Any, r_euler: np.ndarray) -> dict[str, Any] | None:
    """NeuronGroup + summed synaptic variable, ``s.n_brian`` stimuli; None when the target fails."""
    import brian2 as b2  # deferred: optional here, installs a signal handler at import

    b2.BrianLogger.log_level_error()
    ms, target = b2.ms, s.brian_target
    try:
        b2.prefs.codegen.target = target
        t0 = time.perf_counter()
        G = b2.NeuronGroup(circuit.n_units, EQS, method="euler", dt=s.dt_ms * ms)
        G.tau = circuit.tau_ms * ms
        S = b2.Synapses(G, G, "w : 1\nI_rec_post = w * r_pre : 1 (summed)", dt=s.dt_ms * ms)
        S.connect()
        S.w = circuit.W[S.j[:], S.i[:]]
        net = b2.Network(G, S)
        net.store("init")
        G.h = H[0]
        net.run(s.dt_ms * ms)  # compiles (cython) outside the timed runs
        setup = time.perf_counter() - t0
    except Exception as err:
        log(f"(c) Brian2 target {target} failed ({type(err).__name__}); using numpy")
        b2.prefs.codegen.target = "numpy"
        return None
    times, diffs = [], []
    for b in range(s.n_brian):
        net.restore("init")
        G.h = H[b]
        t0 = time.perf_counter()
        net.run(s.duration_ms * ms)
        times.append(time.perf_counter() - t0)
        diffs.append(rel_error(np.asarray(G.r[:])[None], r_euler[b:b + 1]))
        log(f"(c) Brian2 summed ({target}) stimulus {b}: {times[-1]:.2f} s")
    return {"seconds_per_stimulus": float(np.mean(times)), "times": times, "target": target,
            "setup_seconds_incl_connect_and_compile": setup,
            "rel_diff_final_rate_vs_ours_float32": max(diffs)}


def _matrix(circuit: Circuit, H: np.ndarray, s: Any, r_euler: np.ndarray, blas: int | None) -> dict[str, Any]:
    """Matrix form: the recurrent input from one NumPy mat-vec per step (stimulus 0)."""
    import brian2 as b2  # deferred: optional here, installs a signal handler at import
    from threadpoolctl import threadpool_limits

    ms = b2.ms
    W = np.ascontiguousarray(circuit.W)
    G2 = b2.NeuronGroup(circuit.n_units, EQS, method="euler", dt=s.dt_ms * ms)
    G2.tau = circuit.tau_ms * ms
    G2.h = H[0]

    @b2.network_operation(when="before_groups", dt=s.dt_ms * ms)
    def recurrent() -> None:
        G2.I_rec_ = W @ G2.r_

    net2 = b2.Network(G2, recurrent)
    with threadpool_limits(blas, user_api="blas"):
        net2.run(s.dt_ms * ms)  # warm-up step
        G2.r = 0
        t0 = time.perf_counter()
        net2.run(s.duration_ms * ms)
        t_matrix = time.perf_counter() - t0
    log(f"(c) Brian2 matrix network_operation: {t_matrix:.2f} s")
    return {"seconds_per_stimulus": t_matrix, "target": b2.prefs.codegen.target,
            "blas_threads": "default" if blas is None else blas,
            "rel_diff_final_rate_vs_ours_float32": rel_error(np.asarray(G2.r[:])[None], r_euler[:1]),
            "note": "stimulus 0, started from r = 0 after one warm-up step"}
