"""Spiking halves of the circuit hypotheses: population rates of the spiking backend in time windows.

The spiking backend (:mod:`cortex_resnet.spiking.simulator`) runs each rate unit as a
pool of LIF neurons and returns binned pool rates in Hz (:func:`window_means` gives model units),
plus ``x`` (recurrent synapses off, same input spikes) when decomposed. A seed
is the network realisation, initial potentials and input spikes.

**Conditions as one batch** (``engine = "torch"``): the conditions of a seed that differ only in
their input run as the replicas of one torch batch (:func:`condition_run`): the same network
realisation (the seed's), replica ``c`` with its own random streams ``replica_seed(seed, c)`` (or,
``shared_streams``, all those of condition 0: common random numbers), and one gain mapping for all
(at the mean of the conditions' inputs at the end of the run). The conditions are constant inputs
(``rate-spike-agreement``: input levels) or the amplitudes of one stimulus
(:func:`~cortex_resnet.fanout.batches.amp_batch`; ``isn-paradox``: extra-drive levels of a step on
the I channel, ``amplification``: input levels). A replica does not depend on the batch it runs in,
so one condition run alone with the same keys gives the same spikes (tested). Circuits that differ
only in coupling strengths (``J_EE``: the same synapse graph, other weights, DC and noise) join one
batch with per-replica weights (:func:`circuits_run`; ``isn-paradox``: the isn and control circuits'
levels); seeds are separate runs (another graph). The batch of a seed is kept for the seed's other
conditions (:data:`_BATCHES`, the last few batches of this process).
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import Any

import numpy as np

from cortex_resnet.errors import SpecError, UnstableCircuitError
from cortex_resnet.fanout.batches import condition_keys, operating_input, run_amp_batch
from cortex_resnet.model.circuit import Circuit
from cortex_resnet.model.stimulus_spec import StimulusSpec
from cortex_resnet.spiking.initial_state import replica_seed
from cortex_resnet.spiking.replica_runs import simulate_conditions
from cortex_resnet.spiking.simulator import simulate_spiking

__all__ = ["window_means", "run_spiking", "condition_run", "circuits_run", "mean_field_of"]

_BATCHES: OrderedDict[str, Any] = OrderedDict()
_KEEP = 4


def window_means(ds: Any, var: str, t0_ms: float, t1_ms: float, batch: int = 0) -> dict[str, float]:
    """Mean of ``var`` per population over bins with centres in ``[t0, t1)`` (stimulus ``batch``), in the
    rate model's units (spiking results are in Hz: divided by their ``hz_per_unit``)."""
    t = ds["time"].values
    sel = (t >= t0_ms) & (t < t1_ms)
    v = np.asarray(ds[var].isel(batch=batch).values)[sel]
    pop = np.asarray(ds["population"].values).astype(str)
    hz = json.loads(ds.attrs["hz_per_unit"]) if ds.attrs.get("rate_units") == "Hz" and "hz_per_unit" in ds.attrs else {}
    return {p: float(v[:, pop == p].mean()) / hz.get(p, 1.0) for p in ("E", "I")}


def mean_field_of(ds: Any, batch: int = 0) -> dict | None:
    """The spiking backend's mean-field rates (Hz) of stimulus ``batch`` (its own drive where the
    dataset has them per replica), or None."""
    mf = ds.attrs.get("mean_field_rate_hz_by_replica")
    if mf is not None:
        mf = json.loads(mf) if isinstance(mf, str) else mf
        return mf[batch]
    mf = ds.attrs.get("mean_field_rate_hz")
    if isinstance(mf, str):
        mf = json.loads(mf) if mf not in ("null", "") else None
    return mf


def run_spiking(circuit: Circuit, stimulus: str, duration_ms: float, seed: int, *, decompose: bool) -> Any:
    """One spiking run (Brian2 runtime mode) of ``circuit`` with ``stimulus`` (CLI form)."""
    return simulate_spiking(circuit, stimulus, duration_ms=duration_ms, seed=int(seed), decompose=decompose)


def condition_run(circuit: Circuit, u: np.ndarray | StimulusSpec, index: int, duration_ms: float, seed: int, *,
                  decompose: bool, batched: bool = True, engine: str = "torch",
                  shared_streams: bool = False, mean_field: bool = True) -> tuple[Any, int]:
    """The run of condition ``index`` for ``seed`` (module docstring): ``(dataset, its batch index)``.

    ``u``: the constant inputs (conditions, n_inputs), or a stimulus whose ``amp`` list holds one
    amplitude per condition (:func:`~cortex_resnet.fanout.batches.amp_batch`). ``batched``: all
    conditions in one batch (computed once per seed and kept); else the condition alone with the same
    replica seed and operating input. ``shared_streams``: every condition the random streams of
    condition 0 (common random numbers; stimulus form only). ``mean_field``: False leaves out the
    mean-field rates (stimulus form only; a solve per replica, often longer than the run)."""
    if isinstance(u, StimulusSpec):
        return _stimulus_condition(circuit, u, index, duration_ms, seed, decompose=decompose, batched=batched,
                                   engine=engine, shared=shared_streams, mean_field=mean_field)
    u = np.asarray(u, np.float64)
    keys = [replica_seed(int(seed), c) for c in range(u.shape[0])]
    opts = {"duration_ms": duration_ms, "seed": int(seed), "decompose": decompose, "engine": engine,
            "u_operating": u.mean(0)}
    if not batched:
        return simulate_spiking(circuit, u[index:index + 1], replica_seeds=keys[index:index + 1], **opts), 0
    key = _batch_key(circuit, [int(seed), duration_ms, decompose, engine], u.tobytes())
    if key not in _BATCHES:
        _keep(key, simulate_spiking(circuit, u, replica_seeds=keys, **opts))
    return _BATCHES[key], index


def _stimulus_condition(circuit: Circuit, stim: StimulusSpec, index: int, duration_ms: float, seed: int, *,
                        decompose: bool, batched: bool, engine: str, shared: bool,
                        mean_field: bool) -> tuple[Any, int]:
    amps = stim.amps
    keys = condition_keys(seed, len(amps), shared=shared)
    opts = {"duration_ms": duration_ms, "seed": int(seed), "decompose": decompose, "engine": engine,
            "u_operating": operating_input(circuit, stim, duration_ms), "mean_field": mean_field}
    if not batched:
        return run_amp_batch(circuit, stim, amps[index:index + 1], keys[index:index + 1], **opts), 0
    key = _batch_key(circuit, [int(seed), duration_ms, decompose, engine, shared, mean_field,
                               stim.model_dump(mode="json")], b"")
    if key not in _BATCHES:
        _keep(key, run_amp_batch(circuit, stim, amps, keys, **opts))
    return _BATCHES[key], index


def circuits_run(circuits: list[Circuit], which: int, stim: StimulusSpec, index: int, duration_ms: float,
                 seed: int, *, decompose: bool, batched: bool = True, shared_streams: bool = False,
                 mean_field: bool = True) -> tuple[Any, int]:
    """The run of level ``index`` of circuit ``circuits[which]`` (torch engine): with ``batched``, every
    circuit's levels (``stim``'s amplitudes) in ONE batch with per-replica weights
    (:mod:`cortex_resnet.spiking.replica_runs`; circuits that differ only in coupling strengths), computed
    once per seed and kept; each circuit's part is what :func:`condition_run` of that circuit gives, batched
    or alone (the same replica seeds and operating input; tested). Circuits that do not share their
    structure, or a batch in which one circuit runs away, run circuit by circuit (the same numbers)."""
    one = {"decompose": decompose, "engine": "torch", "shared_streams": shared_streams, "mean_field": mean_field}
    if not batched or len(circuits) == 1:
        return condition_run(circuits[which], stim, index, duration_ms, seed, batched=batched, **one)
    key = _batch_key(circuits[0], [int(seed), duration_ms, decompose, shared_streams, mean_field, "circuits",
                                   [c.spec.model_dump(mode="json") for c in circuits[1:]],
                                   stim.model_dump(mode="json")], b"".join(c.W.tobytes() for c in circuits[1:]))
    if key not in _BATCHES:
        keys = condition_keys(seed, len(stim.amps), shared=shared_streams)
        try:
            _keep(key, simulate_conditions(circuits, [stim] * len(circuits), duration_ms=duration_ms, seed=int(seed),
                                           u_operating=[operating_input(c, stim, duration_ms) for c in circuits],
                                           replica_seeds=[keys] * len(circuits), decompose=decompose,
                                           mean_field=mean_field))
        except (SpecError, UnstableCircuitError):  # another structure, or a runaway: circuit by circuit
            return condition_run(circuits[which], stim, index, duration_ms, seed, batched=True, **one)
    return _BATCHES[key][which], index


def _batch_key(circuit: Circuit, what: list, extra: bytes) -> str:
    h = hashlib.sha256(json.dumps([circuit.spec.model_dump(mode="json"), *what], sort_keys=True,
                                  default=str).encode())
    h.update(extra)
    h.update(np.ascontiguousarray(circuit.W).tobytes())
    return h.hexdigest()


def _keep(key: str, ds: Any) -> None:
    _BATCHES[key] = ds
    while len(_BATCHES) > _KEEP:
        _BATCHES.popitem(last=False)
