"""The random synapse graph of one replica: Bernoulli pairs, a fixed in-degree per pool pair, or a
fixed total number per population pair.

Drawn in row blocks so that at most ~4 M random numbers exist at once; the draw order (and
so the graph for a seed) is what the standalone cache's structure hash covers.
"""

from __future__ import annotations

import numpy as np

from cortex_resnet.model.circuit import Circuit
from cortex_resnet.model.spiking_spec import SpikingSpec
from cortex_resnet.spiking.fixed_total import draw_fixed_total
from cortex_resnet.spiking.mapping import pair_probability

__all__ = ["draw_synapses"]


def draw_synapses(circuit: Circuit, sspec: SpikingSpec, rng: np.random.Generator,
                  weight_table: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Random synapses of one replica, per presynaptic population.

    Neuron ``i`` (post) and ``j`` (pre) are connected with probability
    ``p_connect`` where the circuit connects their units (or, with
    ``fixed_indegree``, ``i`` receives exactly ``round(p_connect M)`` distinct
    neurons of each connected pool); the weight is the pool-level
    ``weight_table[unit(i), unit(j)]``. Drawn in row blocks so that at most
    ~4 M random numbers exist at once.

    With ``fixed_total_number``, each connected population pair gets a fixed total of
    synapses with uniformly drawn ends (:mod:`cortex_resnet.spiking.fixed_total`).

    Returns ``{"E": (pre, post, w), "I": ...}`` (int32, int32, float64).
    """
    if sspec.synapse.fixed_total_number:
        return draw_fixed_total(circuit, sspec, rng, weight_table)
    M = sspec.pool_size
    p = pair_probability(circuit, sspec)
    unit_of = np.repeat(np.arange(circuit.n_units), M)
    present = circuit.mask & (circuit.W != 0)
    out = {}
    for pop, cols in (("E", np.where(circuit.is_E)[0]), ("I", np.where(~circuit.is_E)[0])):
        if sspec.synapse.fixed_indegree:
            pres, posts = _fixed_indegree(present, p, M, cols, unit_of, rng)
        else:
            pres, posts = _bernoulli(present, p, M, cols, unit_of, rng)
        pre = np.concatenate(pres) if pres else np.zeros(0, np.int32)
        post = np.concatenate(posts) if posts else np.zeros(0, np.int32)
        out[pop] = (pre, post, weight_table[unit_of[post], unit_of[pre]].astype(np.float64))
    return out


def _fixed_indegree(present: np.ndarray, p: np.ndarray | float, M: int, cols: np.ndarray, unit_of: np.ndarray,
                    rng: np.random.Generator) -> tuple[list, list]:
    """Every neuron of a connected post pool gets exactly ``round(p M)`` distinct neurons of pool b."""
    pres, posts = [], []
    for b in cols:
        post_all = np.where(present[unit_of, b])[0]
        ks = np.full(post_all.size, int(round(p * M))) if np.ndim(p) == 0 else \
            np.rint(np.asarray(p)[unit_of[post_all], b] * M).astype(int)
        for K in np.unique(ks):
            group = post_all[ks == K]
            rows = max(1, 4_000_000 // M)
            for start in range(0, group.size, rows):
                post_ix = group[start:start + rows]
                if K >= M:
                    pick = np.broadcast_to(np.arange(M), (post_ix.size, M))
                else:
                    pick = np.argpartition(rng.random((post_ix.size, M)), K - 1, axis=1)[:, :K]
                pres.append((b * M + np.sort(pick, axis=1)).ravel().astype(np.int32))
                posts.append(np.repeat(post_ix, pick.shape[1]).astype(np.int32))
    return pres, posts


def _bernoulli(present: np.ndarray, p: np.ndarray | float, M: int, cols: np.ndarray, unit_of: np.ndarray,
               rng: np.random.Generator) -> tuple[list, list]:
    """Each neuron pair of connected pools independently with probability ``p`` (scalar or per unit pair)."""
    pres, posts = [], []
    n = unit_of.size
    pre_neurons = (cols[:, None] * M + np.arange(M)[None]).ravel()
    if pre_neurons.size:
        rows = max(1, int(4_000_000 // pre_neurons.size))
        pre_units = unit_of[pre_neurons]
        for start in range(0, n, rows):
            post_ix = np.arange(start, min(n, start + rows))
            allowed = present[np.ix_(unit_of[post_ix], pre_units)]
            if np.ndim(p) == 0:
                hit = allowed & (rng.random(allowed.shape) < p) if p < 1 else allowed
            else:
                hit = allowed & (rng.random(allowed.shape) < np.asarray(p)[np.ix_(unit_of[post_ix], pre_units)])
            r, c = np.nonzero(hit)
            posts.append(post_ix[r].astype(np.int32))
            pres.append(pre_neurons[c].astype(np.int32))
    return pres, posts
