"""Per-synapse delays and weight spread (Potjans & Diesmann 2014; NEST's microcircuit example).

``synapse.delay_ms`` / ``delay_i_ms`` are the mean delays of excitatory / inhibitory
synapses (by presynaptic type); ``delay_rel_sd`` makes each delay normal with sd
``delay_rel_sd * mean``, redrawn while below half a time step (NEST redraws below
``resolution - resolution / 2``), then rounded to the step (NEST and Brian2 both deliver a
spike after a whole number of steps). ``weight_rel_sd`` makes each weight normal with sd
``weight_rel_sd * |w|``, redrawn while it has the wrong sign (NEST: ``redraw(normal, 0, inf)``
for excitatory, ``(-inf, 0)`` for inhibitory: Dale's law kept).

The draws come from the synapse graph's own random stream (the circuit's seed), so they are
part of the network like the graph itself. Delays enter the compiled code (structure);
weights are run-time values.
"""

from __future__ import annotations

import numpy as np

from cortex_resnet.model.spiking_spec import SpikingSpec, SynapseSpec

__all__ = ["redrawn_normal", "spread_weights", "synapse_delays", "uniform_delay", "with_spread"]


def redrawn_normal(mean: np.ndarray, sd: np.ndarray, low: np.ndarray, high: np.ndarray,
                   rng: np.random.Generator, max_rounds: int = 1000) -> np.ndarray:
    """Normal draws ``N(mean, sd)`` redrawn until inside ``[low, high]`` (NEST's ``math.redraw``)."""
    mean, sd = np.broadcast_arrays(np.asarray(mean, float), np.asarray(sd, float))
    out = rng.normal(mean, sd)
    bad = (out < low) | (out > high)
    for _ in range(max_rounds):
        if not bad.any():
            return out
        idx = np.nonzero(bad)[0]
        out[idx] = rng.normal(mean[idx], sd[idx])
        bad[idx] = (out[idx] < np.broadcast_to(low, out.shape)[idx]) | (out[idx] > np.broadcast_to(high, out.shape)[idx])
    raise ValueError(f"{int(bad.sum())} draws still outside [{low}, {high}] after {max_rounds} rounds")


def uniform_delay(syn: SynapseSpec) -> bool:
    """Every synapse has the one delay ``delay_ms`` (no inhibitory delay of its own, no spread)."""
    return syn.delay_rel_sd == 0 and (syn.delay_i_ms is None or syn.delay_i_ms == syn.delay_ms)


def synapse_delays(syn: SynapseSpec, pop: str, n: int, dt_ms: float, rng: np.random.Generator) -> np.ndarray:
    """(n,) delays (ms, multiples of ``dt_ms``) of the ``pop`` (``"E"``/``"I"``) pathway's synapses."""
    mean = syn.delay_ms if pop == "E" or syn.delay_i_ms is None else syn.delay_i_ms
    if syn.delay_rel_sd > 0 and n:
        d = redrawn_normal(np.full(n, mean), np.full(n, mean * syn.delay_rel_sd), 0.5 * dt_ms, np.inf, rng)
    else:
        d = np.full(n, float(mean))
    return np.rint(d / dt_ms) * dt_ms


def spread_weights(w: np.ndarray, rel_sd: float, rng: np.random.Generator) -> np.ndarray:
    """Weights (signed or magnitudes) with a normal spread of ``rel_sd |w|``, keeping their sign."""
    w = np.asarray(w, np.float64)
    if rel_sd == 0 or not w.size:
        return w
    pos = w >= 0
    return redrawn_normal(w, np.abs(w) * rel_sd, np.where(pos, 0.0, -np.inf), np.where(pos, np.inf, 0.0), rng)


def with_spread(synapses: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], sspec: SpikingSpec,
                rng: np.random.Generator, engine: str = "brian2",
                dt_ms: float | None = None) -> tuple[dict, dict[str, np.ndarray] | None]:
    """The drawn synapses with their weight spread, and per-synapse delays on the grid of ``dt_ms``
    (default ``sspec.dt_ms``; None: one delay for all). ``engine``: both engines take the same
    draws (the torch engine delivers per-synapse delays through :mod:`cortex_resnet.spiking.delay_csr`)."""
    syn, dt_ms = sspec.synapse, sspec.dt_ms if dt_ms is None else dt_ms
    out = {k: (pre, post, spread_weights(w, syn.weight_rel_sd, rng)) for k, (pre, post, w) in synapses.items()}
    if uniform_delay(syn):
        return out, None
    return out, {k: synapse_delays(syn, k, v[0].size, dt_ms, rng) for k, v in out.items()}
