"""Spiking halves of the circuit hypotheses: population rates of the Brian2 backend in time windows.

The spiking backend (:mod:`cortex_resnet.spiking.simulator`) runs each rate unit as a
pool of LIF neurons and returns binned pool rates in Hz (:func:`window_means` gives model units),
plus ``x`` (recurrent synapses off, same input spikes) when decomposed. A seed
is the network realisation, initial potentials and input spikes.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from cortex_resnet.model.circuit import Circuit
from cortex_resnet.spiking.simulator import simulate_spiking

__all__ = ["window_means", "run_spiking"]


def window_means(ds: Any, var: str, t0_ms: float, t1_ms: float) -> dict[str, float]:
    """Mean of ``var`` per population over bins with centres in ``[t0, t1)`` (first stimulus), in the
    rate model's units (spiking results are in Hz: divided by their ``hz_per_unit``)."""
    t = ds["time"].values
    sel = (t >= t0_ms) & (t < t1_ms)
    v = np.asarray(ds[var].isel(batch=0).values)[sel]
    pop = np.asarray(ds["population"].values).astype(str)
    hz = json.loads(ds.attrs["hz_per_unit"]) if ds.attrs.get("rate_units") == "Hz" and "hz_per_unit" in ds.attrs else {}
    return {p: float(v[:, pop == p].mean()) / hz.get(p, 1.0) for p in ("E", "I")}


def run_spiking(circuit: Circuit, stimulus: str, duration_ms: float, seed: int, *, decompose: bool) -> Any:
    """One spiking run (Brian2 runtime mode) of ``circuit`` with ``stimulus`` (CLI form)."""
    return simulate_spiking(circuit, stimulus, duration_ms=duration_ms, seed=int(seed), decompose=decompose)
