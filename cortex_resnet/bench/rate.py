"""Rate-simulator benchmark (issue 2, "Performance"): ``cortex-resnet bench rate``.

One process, side by side, on a dense ReLU E-I circuit (N = 2000, 80 % E,
tau_E = 20 ms, tau_I = 10 ms, heterogeneous weights), B = 256 constant stimuli
(random patterns on 20 input channels), 100 ms of dynamics, float32, CPU:

(a) ``euler_gemm_fraction``: Euler, dt = 0.1 ms (1000 steps): achieved GFLOP/s of the
    recurrent products (2 B N^2 per step) over this machine's float32 GEMM throughput
    (``torch.mm`` of the same shapes). The 1000 steps run as chunks (state carried over:
    a chunked run equals the full run bit for bit) interleaved with GEMM blocks of the
    same size, so both see the same load; the value is the median of the paired ratios.
(b) ``accuracy_matched_vs_scipy``: time per stimulus to reach a relative error <= 1e-4
    at t = 100 ms against a float64 reference (RK4, dt 0.1 ms, checked with SciPy DOP853): ours (the
    fastest of RK4 / dopri5 candidates that reaches it, batched) vs
    ``scipy.integrate.solve_ivp`` RK45 per stimulus at the loosest tolerance reaching it.
(c) ``euler_vs_brian2`` (NeuronGroup + summed synaptic variable, the issue's form) and
    ``euler_vs_brian2_matrix_form`` (a ``network_operation`` doing one NumPy mat-vec per
    step): the same equations and Euler step, per stimulus, vs (a)'s Euler per stimulus.

Thread counts: torch runs with whichever of (default, 1) threads gives the faster GEMM
right now, and NumPy's BLAS (SciPy, Brian2's matrix form) likewise for its mat-vec: on a
loaded machine, threads that wait for a core can be several times slower than one.
The choices, the probes and the load average are in every result's details.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cortex_resnet.model.circuit import Circuit, build_circuit
from cortex_resnet.rate.simulator import RateSystem, integrate
from cortex_resnet.model.spec import parse_spec
from cortex_resnet.model.stimulus import Stimulus
from cortex_resnet.bench import BenchResult
from cortex_resnet.bench.rate_brian2 import brian2_results, log as _log, rel_error as _rel_error

__all__ = ["run", "Sizes", "FULL", "QUICK", "bench_circuit"]

SEED = 0
TARGET_REL_ERROR = 1e-4


@dataclass(frozen=True)
class Sizes:
    """Problem sizes; ``chunks`` pairs of (GEMM block, Euler chunk) in (a)."""

    n_units: int
    batch: int
    duration_ms: float
    dt_ms: float
    n_inputs: int
    chunks: int
    n_ref: int        # stimuli with a float64 reference (errors in (b) are measured on them)
    n_scipy: int      # stimuli SciPy integrates per tolerance tried
    n_brian: int      # stimuli Brian2 integrates (summed-variable form)
    brian_target: str


FULL = Sizes(2000, 256, 100.0, 0.1, 20, chunks=10, n_ref=4, n_scipy=3, n_brian=2, brian_target="cython")
QUICK = Sizes(300, 16, 10.0, 0.1, 5, chunks=2, n_ref=2, n_scipy=1, n_brian=1, brian_target="numpy")


def bench_circuit(n_units: int, n_inputs: int, seed: int = SEED) -> Circuit:
    """Dense ReLU E-I circuit: canonical-microcircuit couplings (J_EE = 2), weight CV 0.5, random
    input projection, E bias -3 (about 30 % of E units above threshold at steady state)."""
    n_e = int(round(0.8 * n_units))
    spec = parse_spec({
        "name": "bench_rate", "seed": seed,
        "populations": {"E": {"n": n_e, "tau_ms": 20.0}, "I": {"n": n_units - n_e, "tau_ms": 10.0}},
        "connectivity": {"kind": "dense", "J_EE": 2.0, "J_EI": 2.0, "J_IE": 1.2, "J_II": 1.0, "weight_cv": 0.5},
        "input": {"n_inputs": n_inputs, "gain_E": 1.0, "gain_I": 0.5, "projection": "random"},
        "bias": {"E": -3.0, "I": 0.0},  # about 30 % of E units above threshold: ReLU active
    })
    return build_circuit(spec)


def _stimulus(u: np.ndarray, duration_ms: float, dtype: torch.dtype) -> Stimulus:
    """Constant inputs u (batch, n_inputs) for the whole run."""
    return Stimulus.from_array(u[None], dt_ms=duration_ms, dtype=dtype)


def _best_torch_threads(n_units: int, batch: int) -> tuple[int, dict[str, float]]:
    """torch's thread count (default or 1) with the higher float32 GEMM throughput right now.

    Both sides of (a) and our side of (b), (c) run with it: on a loaded machine, threads that
    wait for a core can make two threads slower than one."""
    gen = torch.Generator().manual_seed(SEED)
    a = torch.rand(batch, n_units, generator=gen)
    w = torch.rand(n_units, n_units, generator=gen)
    out = torch.empty_like(a)
    default = torch.get_num_threads()
    rates: dict[int, float] = {}
    for n in [default, 1] * 2:  # alternated twice, best of each: robust to a load spike
        torch.set_num_threads(n)
        torch.mm(a, w, out=out)
        t0 = time.perf_counter()
        for _ in range(5):
            torch.mm(a, w, out=out)
        rates[n] = max(rates.get(n, 0.0), 5 * 2.0 * batch * n_units**2 / (time.perf_counter() - t0) / 1e9)
    torch.set_num_threads(default)
    best = max(rates, key=rates.get)
    return best, {f"gemm_gflops_threads_{k}": v for k, v in rates.items()}


# ------------------------------------------------------------------------- (a) Euler vs GEMM

def _euler_vs_gemm(circuit: Circuit, u: np.ndarray, s: Sizes) -> tuple[BenchResult, float, np.ndarray]:
    system = RateSystem(circuit, torch.float32, "cpu")
    stim = _stimulus(u, s.duration_ms, torch.float32)
    n_steps = int(round(s.duration_ms / s.dt_ms))
    per_chunk = n_steps // s.chunks
    gen = torch.Generator().manual_seed(SEED)
    a = torch.rand(s.batch, circuit.n_units, generator=gen)
    out = torch.empty_like(a)
    WT = system.WT
    for _ in range(3):  # warm-up: thread pool, allocator, first-call dispatch
        torch.mm(a, WT, out=out)
    integrate(system, stim, 5 * s.dt_ms, s.dt_ms, record_stride=5)
    t_gemm, t_euler, state = [], [], None
    for c in range(s.chunks):
        t0 = time.perf_counter()
        for _ in range(per_chunk):
            torch.mm(a, WT, out=out)
        t_gemm.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        run_ = integrate(system, stim, per_chunk * s.dt_ms, s.dt_ms, method="euler", state=state,
                         record_stride=per_chunk)
        t_euler.append(time.perf_counter() - t0)
        state = run_.state
        _log(f"(a) chunk {c + 1}/{s.chunks}: GEMM {t_gemm[-1]:.2f} s, Euler {t_euler[-1]:.2f} s")
    flop = 2.0 * s.batch * circuit.n_units**2 * per_chunk * s.chunks
    ratios = [g / e for g, e in zip(t_gemm, t_euler)]
    value = statistics.median(ratios)
    euler_s = sum(t_euler)
    details = {
        "n_units": circuit.n_units, "batch": s.batch, "steps": per_chunk * s.chunks, "dt_ms": s.dt_ms,
        "dtype": "float32", "threads": torch.get_num_threads(),
        "gemm_gflops": flop / sum(t_gemm) / 1e9, "euler_gflops": flop / euler_s / 1e9,
        "ratio_of_totals": sum(t_gemm) / euler_s, "paired_ratios": ratios,
        "euler_seconds": euler_s, "gemm_seconds": sum(t_gemm),
        "euler_ms_per_stimulus": 1e3 * euler_s / s.batch,
        "note": "value = median of paired (GEMM block, Euler chunk) ratios; the chunks form one "
                "continuous run (state carried over)",
    }
    res = BenchResult("euler_gemm_fraction", value, "ratio", ">= 0.8", bool(value >= 0.8), details)
    return res, euler_s / s.batch, state.r.numpy().astype(np.float64)


# ------------------------------------------------------------------------- (b) accuracy-matched

def _reference(circuit: Circuit, u: np.ndarray, s: Sizes, blas: int | None) -> tuple[np.ndarray, dict[str, Any]]:
    """float64 reference for the first n_ref stimuli: RK4 at dt = 0.1 ms (batched), its error
    bounded two ways: against RK4 at dt = 0.2 ms (self-convergence) and against an independent
    solver, SciPy's DOP853 (rtol 1e-9, atol 1e-11), on stimulus 0. Both are <= ~1e-6 << the 1e-4
    target. (At rtol 1e-7 DOP853 itself was off by 1.5e-5 on the quick circuit -- a ReLU kink
    stepped over -- while RK4 at dt 0.1 ms was within 1.4e-6 of DOP853 at rtol 1e-10.)
    (Tighter adaptive references cost ~1000 s here: every ReLU threshold crossing of the
    2000 units forces their step size down.)"""
    from scipy.integrate import solve_ivp
    from threadpoolctl import threadpool_limits

    t0 = time.perf_counter()
    sys64 = RateSystem(circuit, torch.float64, "cpu")
    stim = _stimulus(u, s.duration_ms, torch.float64)
    fine, coarse = (integrate(sys64, stim, s.duration_ms, dt, method="rk4",
                              record_stride=int(round(s.duration_ms / dt))).r[-1].numpy() for dt in (0.1, 0.2))
    with threadpool_limits(blas, user_api="blas"):
        sol = solve_ivp(_scipy_rhs(circuit, u[0]), (0.0, s.duration_ms), np.zeros(circuit.n_units),
                        method="DOP853", rtol=1e-9, atol=1e-11)
    return fine, {"method": "float64 RK4, dt 0.1 ms (cortex_resnet)",
                  "rel_diff_vs_rk4_dt_0.2": _rel_error(coarse, fine),
                  "rel_diff_vs_scipy_DOP853_rtol_1e-9": _rel_error(sol.y[:, -1][None], fine[:1]),
                  "seconds": time.perf_counter() - t0}


def _best_blas_threads(circuit: Circuit) -> tuple[int | None, dict[str, float]]:
    """NumPy's BLAS thread count that makes the N x N mat-vec fastest here (default or 1).

    On a loaded machine OpenBLAS threads that spin-wait for a core can make a mat-vec 4x
    slower than one thread; SciPy and Brian2 get whichever is faster (their best case)."""
    from threadpoolctl import threadpool_limits

    W = np.ascontiguousarray(circuit.W)
    x = np.ones(circuit.n_units)
    times = {}
    for label, lim in (("default", None), ("1", 1)):
        with threadpool_limits(lim, user_api="blas"):
            W @ x
            t0 = time.perf_counter()
            for _ in range(20):
                W @ x
            times[label] = (time.perf_counter() - t0) / 20
    best = min(times, key=times.get)
    return (None if best == "default" else 1), {f"matvec_ms_blas_threads_{k}": 1e3 * v for k, v in times.items()}


def _scipy_rhs(circuit: Circuit, u: np.ndarray):
    W = np.ascontiguousarray(circuit.W)
    h = circuit.B @ u + circuit.b
    tau = circuit.tau_ms

    def f(t: float, r: np.ndarray) -> np.ndarray:
        return (np.maximum(W @ r + h, 0.0) - r) / tau

    return f


OUR_CANDIDATES = [("rk4", {"dt_ms": 10.0}), ("rk4", {"dt_ms": 6.25}), ("rk4", {"dt_ms": 5.0}), ("rk4", {"dt_ms": 4.0}), ("rk4", {"dt_ms": 2.5}),
                  ("rk4", {"dt_ms": 2.0}), ("rk4", {"dt_ms": 1.0}),
                  ("dopri5", {"rtol": 1e-3, "atol": 1e-5}), ("dopri5", {"rtol": 3e-4, "atol": 3e-6}),
                  ("dopri5", {"rtol": 1e-4, "atol": 1e-6}), ("dopri5", {"rtol": 1e-5, "atol": 1e-7}),
                  ("dopri5", {"rtol": 1e-6, "atol": 1e-8})]


def _ours(system: RateSystem, u: np.ndarray, s: Sizes, method: str, opts: dict[str, float]) -> tuple[float, np.ndarray]:
    dt = opts.get("dt_ms", s.duration_ms)
    kw = {"rtol": opts["rtol"], "atol": opts["atol"]} if method == "dopri5" else {}
    stim = _stimulus(u, s.duration_ms, torch.float32)
    t0 = time.perf_counter()
    run_ = integrate(system, stim, s.duration_ms, dt, method=method, record_stride=int(round(s.duration_ms / dt)), **kw)
    return time.perf_counter() - t0, run_.r[-1].double().numpy()


def _accuracy_matched(circuit: Circuit, u: np.ndarray, s: Sizes, blas: int | None) -> BenchResult:
    from scipy.integrate import solve_ivp
    from threadpoolctl import threadpool_limits

    _log("(b) float64 reference")
    ref, ref_info = _reference(circuit, u[: s.n_ref], s, blas)
    system = RateSystem(circuit, torch.float32, "cpu")
    screened = []
    for method, opts in OUR_CANDIDATES:  # screen on the reference stimuli only (cheap)
        steps = s.duration_ms / opts.get("dt_ms", s.duration_ms)
        if abs(steps - round(steps)) > 1e-9:
            continue
        secs, r = _ours(system, u[: s.n_ref], s, method, opts)
        screened.append({"method": method, **opts, "screen_rel_error": _rel_error(r, ref), "screen_seconds": secs})
    ok = sorted((c for c in screened if c["screen_rel_error"] <= TARGET_REL_ERROR), key=lambda c: c["screen_seconds"])
    best = None
    for cand in ok[:2]:  # time the most promising on the full batch; the error is re-measured there
        opts = {k: cand[k] for k in ("dt_ms", "rtol", "atol") if k in cand}
        secs, r = _ours(system, u, s, cand["method"], opts)
        cand.update(full_batch_seconds=secs, rel_error=_rel_error(r[: s.n_ref], ref))
        _log(f"(b) ours {cand['method']} {opts}: {secs:.2f} s for {s.batch} stimuli, rel. error {cand['rel_error']:.2e}")
        if cand["rel_error"] <= TARGET_REL_ERROR and (best is None or secs < best["full_batch_seconds"]):
            best = cand
    scipy_runs, chosen = [], None
    for rtol in (1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 1e-6, 1e-7):  # loosest first: scipy's best at this accuracy
        t0 = time.perf_counter()
        finals, nfev = [], 0
        with threadpool_limits(blas, user_api="blas"):
            for b in range(s.n_scipy):
                sol = solve_ivp(_scipy_rhs(circuit, u[b]), (0.0, s.duration_ms), np.zeros(circuit.n_units),
                                method="RK45", rtol=rtol, atol=rtol * 1e-2)
                finals.append(sol.y[:, -1])
                nfev += sol.nfev
        secs = (time.perf_counter() - t0) / s.n_scipy
        err = _rel_error(np.stack(finals), ref[: s.n_scipy])
        scipy_runs.append({"rtol": rtol, "atol": rtol * 1e-2, "seconds_per_stimulus": secs, "rel_error": err,
                           "nfev_per_stimulus": nfev / s.n_scipy})
        _log(f"(b) scipy RK45 rtol {rtol:g}: {secs:.3f} s per stimulus, rel. error {err:.2e}")
        if err <= TARGET_REL_ERROR:
            chosen = scipy_runs[-1]
            break
    details: dict[str, Any] = {"target_rel_error": TARGET_REL_ERROR, "reference": ref_info,
                               "error_measured_on": f"the first {s.n_ref} stimuli (max over them)",
                               "ours_candidates": screened, "scipy_runs": scipy_runs,
                               "scipy_stimuli_timed": s.n_scipy, "batch": s.batch,
                               "scipy_blas_threads": "default" if blas is None else blas}
    if best is None or chosen is None:
        details["failure"] = "no candidate reached the target error" + ("" if best else " (ours)") + \
                             ("" if chosen else " (scipy)")
        return BenchResult("accuracy_matched_vs_scipy", float("nan"), "x", ">= 20", False, details)
    ours_per_stim = best["full_batch_seconds"] / s.batch
    value = chosen["seconds_per_stimulus"] / ours_per_stim
    details.update(ours=best, ours_seconds_per_stimulus=ours_per_stim, scipy=chosen)
    return BenchResult("accuracy_matched_vs_scipy", value, "x", ">= 20", bool(value >= 20), details)


# ------------------------------------------------------------------------- entry point

def run(quick: bool = False) -> list[BenchResult]:
    """Run (a), (b), (c); ``quick`` shrinks everything to a smoke test."""
    s = QUICK if quick else FULL
    circuit = bench_circuit(s.n_units, s.n_inputs)
    rng = np.random.default_rng(SEED + 1)
    u = np.abs(rng.standard_normal((s.batch, s.n_inputs))) * (2.0 / math.sqrt(s.n_inputs))
    load_before = os.getloadavg()
    default_threads = torch.get_num_threads()
    threads, torch_probe = _best_torch_threads(s.n_units, s.batch)
    blas, blas_probe = _best_blas_threads(circuit)
    _log(f"N = {s.n_units}, batch = {s.batch}, {s.duration_ms} ms; torch threads {threads} {torch_probe}; "
         f"NumPy BLAS threads {'default' if blas is None else blas} {blas_probe}; load {load_before}")
    torch.set_num_threads(threads)
    try:
        res_a, ours_per_stim, r_euler = _euler_vs_gemm(circuit, u, s)
        res_a.details["fraction_of_units_active_at_end"] = float(np.mean(r_euler > 0))
        res_b = _accuracy_matched(circuit, u, s, blas)
        res_c = brian2_results(circuit, u, s, r_euler, ours_per_stim, blas)
    finally:
        torch.set_num_threads(default_threads)
    conditions = {"quick": quick, "torch_threads": threads, "torch_thread_probe": torch_probe,
                  "numpy_blas_threads": "default" if blas is None else blas, "blas_probe": blas_probe,
                  "load_average_before": load_before, "load_average_after": os.getloadavg(),
                  "cpu_count": os.cpu_count()}
    results = [res_a, res_b, *res_c]
    for r in results:
        r.details["conditions"] = conditions
    return results
