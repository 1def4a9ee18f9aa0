"""Our microcircuit side by side with NEST's: per-population spike statistics and KS distances.

The statistics are those of the community's reference-data protocol for the microcircuit
(van Albada et al. 2018, Front Neurosci 12:291; Gutzen et al. 2018): per population, the
distributions over neurons of the time-averaged rate (Hz), of the CV of the inter-spike
intervals (neurons with >= 5 ISIs) and of the pairwise Pearson correlation of spike counts in
2 ms bins (the first 200 neurons with spikes). Two simulators agree when the KS distance
between their distributions is within the spread between seeds of one simulator.

:func:`run_brian2` runs our Brian2 engine on the model file's network (``circuit_data``) at a
scale, returning spikes per population as :func:`cortex_resnet.spiking.nest_ref.run_nest` does.
"""

from __future__ import annotations

import time
import warnings
from itertools import combinations

import numpy as np

from cortex_resnet.model import pd14 as P
from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.model.spec import parse_spec
from cortex_resnet.spiking.brian import RuntimeEngine, brian2_global_state
from cortex_resnet.spiking.build import build_plan
from cortex_resnet.spiking.cache import StandaloneEngine
from cortex_resnet.spiking.nest_ref import PopulationSpikes
from cortex_resnet.spiking.pd14_file import model_file_data
from cortex_resnet.spiking.torch_engine import TorchEngine

__all__ = ["STATS", "ks_distance", "ks_table", "population_statistics", "run_brian2", "run_torch"]

STATS = ("rate_hz", "cv_isi", "corr")
CORR_BIN_MS, CORR_NEURONS, MIN_ISIS = 2.0, 200, 5


def run_brian2(scale: float, duration_ms: float, *, seed: int = 0, standalone: bool = False,
               pool_size: int | None = None, cache_dir=None, threads: int = 1) -> PopulationSpikes:
    """The model file's network at ``scale`` in Brian2 (runtime or cached C++ standalone).

    ``seed`` seeds the synapse graph, weights and delays (the circuit's seed) and the initial
    potentials and input (the run's). ``timing``: ``build_s`` (plan and Brian2 objects or the
    standalone build), ``sim_s`` (the run: for standalone, the binary's whole run); ``threads``:
    standalone OpenMP threads.
    """
    data = dict(model_file_data(scale, pool_size), seed=int(seed))
    t0 = time.perf_counter()
    with warnings.catch_warnings(), brian2_global_state():
        warnings.simplefilter("ignore")
        circuit = build_circuit(parse_spec(data))
        plan = build_plan(circuit, "constant:amp=0.0", duration_ms, seed=seed)
        engine = StandaloneEngine(plan, cache_dir, threads) if standalone else RuntimeEngine(plan)
        t1 = time.perf_counter()
        raw = engine.run(seed=seed)
        t2 = time.perf_counter()
    mode = "standalone" if standalone else "runtime"
    timing = {"build_s": t1 - t0, "sim_s": t2 - t1}
    if standalone:
        timing.update(compile_s=engine.compile_s, loop_s=engine.last_sim_s)
    return _by_population(plan, raw, duration_ms, timing, f"brian2 {mode}")


def run_torch(scale: float, duration_ms: float, *, seed: int = 0, dtype: str = "float32",
              pool_size: int | None = None, graph: str = "standard", poisson: str = "torch") -> PopulationSpikes:
    """The model file's network at ``scale`` in the torch engine (batch 1, CPU), as :func:`run_brian2`.

    ``graph``: ``standard`` (the Brian2 engine's synapse arrays) or ``lean`` (drawn directly as a
    delay-sorted CSR with int32 targets and float32 weights: :mod:`cortex_resnet.spiking.lean_graph`,
    the one that fits scale 1); ``poisson``: the input sampler (``TorchEngine``). ``timing``:
    ``build_s`` (plan, graph, engine), ``sim_s`` (the run), ``sim_cpu_s`` (its CPU time: robust to
    a loaded machine).
    """
    data = dict(model_file_data(scale, pool_size), seed=int(seed))
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        circuit = build_circuit(parse_spec(data))
        plan = build_plan(circuit, "constant:amp=0.0", duration_ms, seed=seed, engine="torch", graph=graph)
        engine = TorchEngine(plan, dtype=dtype, poisson=poisson)
        t1, c1 = time.perf_counter(), time.process_time()
        raw = engine.run(True, seed)
        t2, c2 = time.perf_counter(), time.process_time()
    return _by_population(plan, raw, duration_ms, {"build_s": t1 - t0, "sim_s": t2 - t1, "sim_cpu_s": c2 - c1},
                          f"torch {dtype} ({graph} graph, {poisson} Poisson input)")


def _by_population(plan, raw, duration_ms: float, timing: dict, engine: str) -> PopulationSpikes:
    """A run's spikes per population (indices within the population, times in ms)."""
    spikes, sizes = {}, {}
    M = plan.sspec.pool_size
    for name in P.POPULATIONS:
        sl = plan.circuit.layout[name]
        first, last = sl.start * M, sl.stop * M
        sel = (raw.spike_i >= first) & (raw.spike_i < last)
        spikes[name] = (raw.spike_i[sel] - first, raw.spike_t_ms[sel])
        sizes[name] = last - first
    return PopulationSpikes(sizes=sizes, spikes=spikes, duration_ms=float(duration_ms), timing=timing, engine=engine)


def _per_neuron_cv(i: np.ndarray, t: np.ndarray) -> np.ndarray:
    order = np.lexsort((t, i))
    i, t = i[order], t[order]
    same = i[1:] == i[:-1]
    isi, owner = np.diff(t)[same], i[1:][same]
    if isi.size == 0:
        return np.zeros(0)
    _, inv, counts = np.unique(owner, return_inverse=True, return_counts=True)
    s1, s2 = np.bincount(inv, weights=isi), np.bincount(inv, weights=isi**2)
    keep = counts >= MIN_ISIS
    mean = s1[keep] / counts[keep]
    return np.sqrt(np.maximum(s2[keep] / counts[keep] - mean**2, 0.0)) / mean


def _correlations(i: np.ndarray, t: np.ndarray, t0_ms: float, t1_ms: float) -> np.ndarray:
    neurons = np.unique(i)[:CORR_NEURONS]
    if neurons.size < 2:
        return np.zeros(0)
    n_bins = int((t1_ms - t0_ms) // CORR_BIN_MS)
    sel = np.isin(i, neurons) & (t < t0_ms + n_bins * CORR_BIN_MS)
    rows = np.searchsorted(neurons, i[sel])
    cols = ((t[sel] - t0_ms) // CORR_BIN_MS).astype(np.int64)
    counts = np.zeros((neurons.size, n_bins))
    np.add.at(counts, (rows, cols), 1.0)
    c = np.corrcoef(counts)
    return c[np.triu_indices(neurons.size, 1)]


def population_statistics(run: PopulationSpikes, t0_ms: float = 200.0) -> dict[str, dict[str, np.ndarray]]:
    """Per population: per-neuron rates (Hz, every neuron), CVs (>= 5 ISIs) and pairwise
    correlations, over ``[t0_ms, duration)`` (the first ``t0_ms`` are the start transient)."""
    out = {}
    t1 = run.duration_ms
    for name, (i, t) in run.spikes.items():
        sel = t >= t0_ms
        i, t = i[sel], t[sel]
        rates = np.bincount(i, minlength=run.sizes[name])[:run.sizes[name]] / ((t1 - t0_ms) * 1e-3)
        out[name] = {"rate_hz": rates, "cv_isi": _per_neuron_cv(i, t), "corr": _correlations(i, t, t0_ms, t1)}
    return out


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov distance (sup of the difference of the empirical CDFs);
    NaN when a sample is empty."""
    a, b = np.sort(a[np.isfinite(a)]), np.sort(b[np.isfinite(b)])
    if not a.size or not b.size:
        return float("nan")
    x = np.concatenate([a, b])
    return float(np.max(np.abs(np.searchsorted(a, x, "right") / a.size - np.searchsorted(b, x, "right") / b.size)))


def _nan_mean(values) -> float:
    """Mean over the finite values; NaN (without numpy's "Mean of empty slice" warning) where there are
    none (a population without ISIs or pairs at a small scale)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def ks_table(ours: list[dict], ref: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """Per population and statistic: ``cross`` = mean KS distance over (ours, ref) seed pairs,
    ``within`` = mean and ``within_max`` = largest over the pairs of reference seeds (the seed spread)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name in P.POPULATIONS:
        out[name] = {}
        for s in STATS:
            cross = [ks_distance(a[name][s], b[name][s]) for a in ours for b in ref]
            within = [ks_distance(a[name][s], b[name][s]) for a, b in combinations(ref, 2)]
            out[name][s] = {"cross": _nan_mean(cross), "within": _nan_mean(within),
                            "within_max": float(np.nanmax(within)) if np.isfinite(within).any() else float("nan")}
    return out


def summary(runs: list[PopulationSpikes], t0_ms: float = 200.0) -> dict[str, dict[str, float]]:
    """Per population, over seeds: mean and sd of the population rate (Hz), mean CV, mean correlation."""
    stats = [population_statistics(r, t0_ms) for r in runs]
    out = {}
    for name in P.POPULATIONS:
        rates = [float(s[name]["rate_hz"].mean()) for s in stats]
        out[name] = {"rate_hz": float(np.mean(rates)), "rate_sd_hz": float(np.std(rates, ddof=1)) if len(rates) > 1
                     else float("nan"),
                     "cv_isi": _nan_mean([np.mean(s[name]["cv_isi"]) if s[name]["cv_isi"].size else np.nan
                                          for s in stats]),
                     "corr": _nan_mean([np.mean(s[name]["corr"]) if s[name]["corr"].size else np.nan
                                        for s in stats])}
    return out
