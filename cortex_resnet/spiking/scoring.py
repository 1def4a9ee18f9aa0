"""A trained circuit's spiking twin scored on test inputs (``compare``, the ``spiking-conversion``
hypothesis).

One simulation per example serves every readout window: the E-pool spike
counts in each window ``[t/2, t)`` of a grid of readout times ``t`` (the
*anytime* curve; the last, ``[T/2, T)``, is the reported spiking accuracy),
converted to rate units and read out with the trained readout. The rate
circuit is run as long on the same examples and read out from its E rates
averaged over the same windows (the like-for-like reference). The torch engine
(:mod:`cortex_resnet.spiking.torch_engine`) scores whole test sets; Brian2 can
rerun a subsample as the reference (:func:`brian2_reference`).

An untied net's circuit (``step_weights``) is scored through its stage twin
(:mod:`cortex_resnet.spiking.chain`): the pools of all stages run as one network and the
readout reads the stages' rates combined into the net's ``r_K`` (:func:`spiking_twin`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from cortex_resnet.core.resources import memory_budget_bytes
from cortex_resnet.errors import SpecError
from cortex_resnet.spiking.brian import brian2_global_state
from cortex_resnet.spiking.build import build_plan, estimate_bytes
from cortex_resnet.spiking.chain import chain_circuit
from cortex_resnet.spiking.simulator import make_engine, to_spiking
from cortex_resnet.spiking.initial_state import replica_seed
from cortex_resnet.spiking.torch_engine import TorchEngine, torch_bytes

__all__ = ["CONVERSION", "MAX_POOL", "brian2_reference", "check_pool_size", "check_window_start", "rate_window_logits",
           "readout_times", "replica_seeds", "spiking_scores", "spiking_traces", "spiking_twin", "torch_batch_size", "window_counts"]

# The twin is a conversion, whatever realisation the circuit's own [spiking] table describes (e.g. the
# PD14 file's: its in-degrees, rate couplings as mV per Hz, Poisson background noise, per-synapse
# delay and weight spread): every neuron of a connected pool pair connected (the most synapses per
# coupling: the least shot noise), white noise bringing each pool's input noise to its transfer's
# sigma (the rate model's assumption), one delay for all synapses, no weight spread.
CONVERSION = {"background_noise": "match", "pathways": {}, "synapse.p_connect": 1.0, "synapse.delay_i_ms": None,
              "synapse.delay_rel_sd": 0.0, "synapse.weight_rel_sd": 0.0}
MAX_POOL = 10_000  # LIF neurons per rate unit (the engine's memory check refuses a batch that does not fit)
TORCH_BATCH = 256  # replicas per torch run (the engine's memory check refuses what does not fit)
FRACTIONS = (0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)  # readout times as fractions of the run


def readout_times(duration_ms: float, dt_ms: float) -> np.ndarray:
    """Readout times ``t`` (ms) of the anytime curve: windows ``[t/2, t)``, the last ``t`` = the run's end
    (multiples of ``2 dt``: the rate circuit's windows are whole steps)."""
    t = np.floor(np.asarray(FRACTIONS[:-1]) * duration_ms / (2 * dt_ms)) * 2 * dt_ms
    return np.unique(np.append(t[t > 0], duration_ms))


def spiking_twin(circuit) -> tuple[Any, np.ndarray]:
    """(circuit to run, ``combine`` (N, n_twin)): the net's rates ``r = combine @ r_twin``. A tied
    circuit runs as it is (``combine`` = identity); an untied one (``step_weights``) runs as its
    stage chain (:func:`~cortex_resnet.spiking.chain.chain_circuit`), whose stages combine into
    the net's ``r_K``. The readout reads the E rows."""
    if circuit.step_weights is None:
        return circuit, np.eye(circuit.n_units)
    twin = chain_circuit(circuit)
    return twin.circuit, twin.combine


def check_pool_size(pool_size: int | None) -> None:
    """SpecError naming ``--pool-size`` unless None (the circuit's own) or an integer in ``[1, MAX_POOL]``."""
    if pool_size is not None and not 1 <= pool_size <= MAX_POOL:
        raise SpecError("--pool-size", pool_size, f"an integer from 1 to {MAX_POOL} (LIF neurons per rate unit)")


def check_window_start(start_ms: float | None, duration_ms: float, dt_ms: float) -> None:
    """SpecError naming ``--window-start`` unless None (``T/2``) or a multiple of the net's step ``dt_ms``
    in ``[0, T)`` (the rate circuit is read out over the same whole steps)."""
    if start_ms is None:
        return
    steps = start_ms / dt_ms
    if not (0.0 <= start_ms < duration_ms and abs(steps - round(steps)) < 1e-9):
        raise SpecError("--window-start", start_ms, f"a time in [0, {duration_ms:g}) ms (the spiking run's "
                        f"length) that is a multiple of the net's step dt_ms = {dt_ms:g} ms")


def replica_seeds(seed: int, start: int, count: int) -> tuple[list[int], np.ndarray]:
    """Seeds of inputs ``start .. start + count - 1``: (initial potentials, noise and input spikes) of
    replica ``i % 256`` in chunk ``i // 256`` of :data:`TORCH_BATCH` (potentials ``(seed, b)``, streams
    ``(seed + chunk, b)``, as a run of 256 seeds them)."""
    i = np.arange(start, start + count)
    b, k = i % TORCH_BATCH, i // TORCH_BATCH
    return ([replica_seed(seed, int(x)) for x in b],
            np.array([replica_seed(seed + int(kk), int(x)) for kk, x in zip(k, b)], np.int64))


def torch_batch_size(model, u: np.ndarray, duration_ms: float, dtype: str = "float32") -> int:
    """Replicas per torch run: :data:`TORCH_BATCH`, or fewer when a run of that many would not fit half the
    memory budget (the engine's own estimate, :func:`~cortex_resnet.spiking.torch_engine.torch_bytes`,
    which is affine in the batch); at least 1 (the engine refuses a single replica that does not fit,
    naming the pool size and duration)."""
    plan = build_plan(model.circuit, u[:1], duration_ms, u_operating=model.u_operating, engine="torch")
    itemsize = 4 if dtype == "float32" else 8
    one, two = (torch_bytes(dataclasses.replace(plan, batch=b), 1, itemsize) for b in (1, 2))
    per, fixed = two - one, 2 * one - two
    fits = int((0.5 * memory_budget_bytes() - fixed) // max(per, 1.0))  # half: the free memory moves (as Brian2's chunks)
    return int(min(TORCH_BATCH, max(1, fits), max(1, u.shape[0])))


def window_counts(model, u: np.ndarray, windows: list[tuple[float, float]], *, duration_ms: float, seed: int,
                  engine: str = "torch", dtype: str = "float32",
                  progress: Callable[[int], None] | None = None, info: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Spike counts per rate unit (n_windows, batch, n_units) in each window ``[t0, t1)`` (ms) of
    one run per input, and the Hz per rate unit of each unit (``mapping.R_unit``). Brian2: chunk ``k``
    of the batch runs with seed ``seed + k`` (as ``SpikingModel.run``). torch: input ``i`` has the
    random streams of replica ``i % 256`` of a chunk of :data:`TORCH_BATCH` run with ``seed + i // 256``
    (:func:`replica_seeds`), whatever batch the memory allows (:func:`torch_batch_size`): the counts do
    not depend on the free memory. ``info``: filled with the mapping's description (``mapping.info``)."""
    c = model.circuit
    if engine == "torch":
        size = torch_batch_size(model, u, duration_ms, dtype)
    else:
        per = estimate_bytes(c, c.spec.spiking, 1, duration_ms,
                             int(duration_ms / c.spec.spiking.input.stimulus_dt_ms) + 2)
        size = int(max(1, min(256, 0.5 * memory_budget_bytes() // max(per, 1.0))))
    counts = np.zeros((len(windows), u.shape[0], c.n_units), np.int64)
    for k in range(math.ceil(u.shape[0] / size)):
        part = u[k * size:(k + 1) * size]
        if engine == "torch":
            v0_seeds, noise_seeds = replica_seeds(seed, k * size, part.shape[0])
            plan = build_plan(c, part, duration_ms, u_operating=model.u_operating, seed=seed, engine=engine,
                              replica_seeds=v0_seeds)
            raw = TorchEngine(plan, dtype=dtype, seeds=noise_seeds).run(True, seed)
        else:
            plan = build_plan(c, part, duration_ms, u_operating=model.u_operating, seed=seed, engine=engine)
            with brian2_global_state():
                raw = make_engine(plan).run(True, seed + k)
        if info is not None:
            info.update(plan.mapping.info)
        g = raw.spike_i
        flat = (g // plan.n) * c.n_units + plan.unit_of[g % plan.n]
        for w, (t0, t1) in enumerate(windows):
            sel = (raw.spike_t_ms >= t0) & (raw.spike_t_ms < t1)
            counts[w, k * size:k * size + part.shape[0]] = np.bincount(
                flat[sel], minlength=part.shape[0] * c.n_units).reshape(part.shape[0], c.n_units)
        if progress is not None:
            progress(part.shape[0])
    return counts, plan.mapping.R_unit


def spiking_scores(circuit, clf, u: torch.Tensor, u_operating: torch.Tensor, *, duration_ms: float, dt_ms: float,
                   seed: int, pool_size: int | None, engine: str, dtype: str = "float32",
                   progress: Callable[[int], None] | None = None, window_start_ms: float | None = None,
                   **spiking: Any) -> dict[str, Any]:
    """Run ``u`` (batch, n_inputs) through the spiking twin (:func:`spiking_twin`); logits (n_times,
    batch, classes) of every readout window (:func:`readout_times`), the windows, the mean E-pool
    spike count of the last and the spikes per example (whole run, all pools). The last window (the
    reported readout) is ``[window_start_ms, T)`` (default ``T/2``). ``spiking``: further
    ``[spiking]`` fields, dotted (e.g. ``weight_scaling="identity"``: the naive conversion;
    ``"fit"``: ``u_operating`` (S, n_inputs) is the sample the gain is fitted over), over
    :data:`CONVERSION`."""
    twin, combine = spiking_twin(circuit)
    model = to_spiking(twin, pool_size=pool_size, input_mode="current",  # signed u
                       u_operating=u_operating.detach().cpu().numpy(), **{**CONVERSION, **spiking})
    times = readout_times(duration_ms, dt_ms)
    windows = [(t / 2.0, t) for t in times]
    if window_start_ms is not None:
        windows[-1] = (float(window_start_ms), float(duration_ms))
    info: dict = {}
    counts, R = window_counts(model, u.detach().cpu().numpy(), windows + [(0.0, duration_ms)],
                              duration_ms=duration_ms, seed=seed, engine=engine, dtype=dtype, progress=progress,
                              info=info)
    total, counts = counts[-1], counts[:-1]  # the whole run: the cost in spikes
    sspec = model.circuit.spec.spiking
    width_s = np.array([(t1 - t0) * 1e-3 for t0, t1 in windows])[:, None, None]
    r = counts / (sspec.pool_size * width_s) / R  # rate units
    is_e = model.circuit.is_E
    logits = clf.readout(clf.select(torch.as_tensor(r @ combine.T, dtype=torch.float64)))
    return {"logits": logits, "times_ms": times, "windows_ms": windows, "pool_size": sspec.pool_size,
            "spikes_per_E_pool": float(counts[-1][:, is_e].mean()), "model": model, "combine": combine,
            "spikes_per_example": float(total.sum(1).mean()), "n_neurons": int(sspec.pool_size * twin.n_units),
            "mapping": model.circuit.spec.spiking.weight_scaling, "mapping_info": info}


def spiking_traces(model, u: np.ndarray, duration_ms: float, seed: int, engine: str, combine: np.ndarray,
                   is_E: np.ndarray) -> dict[str, Any]:
    """E-mean rates with and without recurrence (the net's rate units, through ``combine`` (N, n_twin))
    over time of the inputs ``u`` (batch, n_inputs), for a figure."""
    # no mean-field rates in the attributes: the figure does not show them, and for a 1,600-pool untied
    # chain their solve took ~9 min, longer than scoring the test set
    ds = model.simulate(u, duration_ms=duration_ms, seed=seed, decompose=True, engine=engine, mean_field=False)
    R = model.circuit.hz_per_unit  # spiking r is in Hz: model units per population
    hz = np.array([R[p] for p in model.circuit.unit_population])
    net = lambda v: ((v / hz) @ combine.T)[..., is_E].mean(-1)  # noqa: E731
    return {"time_ms": ds["time"].values, "rates_E_time": net(ds["r"].values), "x_E_time": net(ds["x"].values)}


def rate_window_logits(trajectory: Callable[[torch.Tensor, int], torch.Tensor], clf, u: torch.Tensor,
                       to_net: np.ndarray, windows: list[tuple[float, float]], dt_ms: float, duration_ms: float,
                       batch: int = 100) -> torch.Tensor:
    """Logits (n_windows, batch, classes) of the rate circuit's E rates averaged over each window
    (steps ``k`` with ``t0 < k dt <= t1``); ``trajectory(u, steps)`` -> (steps + 1, batch, N) of the
    circuit the spiking twin runs; ``to_net`` (N_net, N) maps them to the net's units
    (:func:`spiking_twin`'s ``combine``; identity for a tied circuit), whose read-out units
    ``clf.select`` takes."""
    steps = int(round(duration_ms / dt_ms))
    M = torch.as_tensor(to_net, dtype=torch.float64)
    out = []
    for i in range(0, u.shape[0], batch):
        r = clf.select(trajectory(u[i:i + batch], steps) @ M.T)
        csum = torch.cat([torch.zeros_like(r[:1]), torch.cumsum(r[1:], 0)])  # csum[k] = sum of steps 1..k
        means = []
        for t0, t1 in windows:
            k0, k1 = int(round(t0 / dt_ms)), int(round(t1 / dt_ms))
            means.append((csum[k1] - csum[k0]) / (k1 - k0))
        out.append(clf.readout(torch.stack(means)))
    return torch.cat(out, dim=1)


def brian2_reference(circuit, clf, u: torch.Tensor, u_operating: torch.Tensor, y: torch.Tensor,
                     pred_torch: torch.Tensor, *, duration_ms: float, dt_ms: float, seed: int,
                     pool_size: int | None, **spiking: Any) -> dict[str, Any]:
    """Brian2 on the examples ``u``: its accuracy, the torch engine's on the same examples, and the
    fraction of identical predictions (different random streams: agreement below 1 measures the
    spiking readout's own trial-to-trial variability too)."""
    ref = spiking_scores(circuit, clf, u, u_operating, duration_ms=duration_ms, dt_ms=dt_ms, seed=seed,
                         pool_size=pool_size, engine="brian2", **spiking)
    pred_ref = ref["logits"][-1].argmax(-1)
    n = int(u.shape[0])
    return {"n": n, "brian2_accuracy": float((pred_ref == y).double().mean()),
            "torch_accuracy": float((pred_torch == y).double().mean()),
            "agreement": float((pred_ref == pred_torch).double().mean())}
