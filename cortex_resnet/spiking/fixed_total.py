"""The fixed-total-number connection rule of Potjans & Diesmann (2014) and NEST's example.

With ``spiking.synapse.fixed_total_number``, each connected pair of populations (post ``X``, pre
``Y``) gets exactly ``round(p N_X N_Y)`` synapses (``N``: neurons; ``p`` the pair probability of
``spiking.pathways``, so ``p N_Y`` is the in-degree ``K`` and the total is NEST's ``K N_X``), each
with its presynaptic neuron drawn uniformly from ``Y`` and its postsynaptic neuron uniformly from
``X``, independently: autapses and multapses allowed (NEST's ``fixed_total_number`` defaults). The
in-degree of a neuron is then Binomial(total, 1/N_X) (variance ~K), not Bernoulli's K (1 - p):
at scale 0.1 the rule alone moves NEST's L6E rate by 19 % (docs/populations.md), so matching the
published rates needs it.

Equivalent form used for chunked draws (:mod:`cortex_resnet.spiking.lean_graph`): the number of
synapses each presynaptic neuron sends into ``X`` is Multinomial(total, uniform over ``Y``), and
its targets are that many independent uniform draws over ``X``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cortex_resnet.errors import SpecError
from cortex_resnet.model.circuit import Circuit
from cortex_resnet.model.spiking_spec import SpikingSpec
from cortex_resnet.spiking.pools import pair_probability

__all__ = ["Pathway", "draw_fixed_total", "fixed_total_pathways", "sorted_uniform_targets"]

CHUNK = 4_000_000  # synapses drawn at once


@dataclass(frozen=True)
class Pathway:
    """One connected population pair: neuron ranges ``post = [post0, post1)``, ``pre = [pre0, pre1)``,
    the pair probability ``p`` and the exact number of synapses ``total``."""

    post0: int
    post1: int
    pre0: int
    pre1: int
    p: float
    total: int

    def __repr__(self) -> str:
        """One line: neuron ranges, p and the total."""
        return (f"Pathway(post [{self.post0}, {self.post1}), pre [{self.pre0}, {self.pre1}), p={self.p:.4g}, "
                f"{self.total} synapses)")


def fixed_total_pathways(circuit: Circuit, sspec: SpikingSpec) -> list[Pathway]:
    """Every connected (post, pre) population pair in unit order; refuses (naming the field) a pair
    whose units do not share one probability or whose presence differs between units."""
    M = sspec.pool_size
    P = np.broadcast_to(pair_probability(circuit, sspec), (circuit.n_units, circuit.n_units))
    present = circuit.mask & (circuit.W != 0)
    out = []
    for post, sa in circuit.layout.items():
        for pre, sb in circuit.layout.items():
            block, there = P[sa, sb], present[sa, sb]
            if not there.any():
                continue
            if not there.all() or np.ptp(block) > 0:
                raise SpecError("spiking.synapse.fixed_total_number", True,
                                f"false: the units of {pre} -> {post} differ in connection (a fixed total needs "
                                "one probability per population pair)")
            n_post, n_pre = (sa.stop - sa.start) * M, (sb.stop - sb.start) * M
            p = float(min(block.flat[0], 1.0))
            out.append(Pathway(sa.start * M, sa.stop * M, sb.start * M, sb.stop * M, p, int(round(p * n_post * n_pre))))
    return out


def sorted_uniform_targets(counts: np.ndarray, lo: int, hi: int, rng: np.random.Generator) -> np.ndarray:
    """For rows sending ``counts[r]`` synapses each: that many uniform targets in ``[lo, hi)`` per
    row, ascending within each row, rows one after another."""
    t = rng.integers(lo, hi, size=int(counts.sum()))
    row = np.repeat(np.arange(counts.size), counts)
    return t[np.lexsort((t, row))]


def draw_fixed_total(circuit: Circuit, sspec: SpikingSpec, rng: np.random.Generator,
                     weight_table: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The standard graph's ``{"E": (pre, post, w), "I": ...}`` (int32, int32, float64) by the rule."""
    M = sspec.pool_size
    unit_of = np.repeat(np.arange(circuit.n_units), M)
    is_E_neuron = np.repeat(np.asarray(circuit.is_E, bool), M)
    parts = {"E": ([], []), "I": ([], [])}
    for pw in fixed_total_pathways(circuit, sspec):
        key = "E" if is_E_neuron[pw.pre0] else "I"
        for start in range(0, pw.total, CHUNK):
            n = min(CHUNK, pw.total - start)
            parts[key][0].append(rng.integers(pw.pre0, pw.pre1, size=n).astype(np.int32))
            parts[key][1].append(rng.integers(pw.post0, pw.post1, size=n).astype(np.int32))
    out = {}
    for key, (pres, posts) in parts.items():
        pre = np.concatenate(pres) if pres else np.zeros(0, np.int32)
        post = np.concatenate(posts) if posts else np.zeros(0, np.int32)
        out[key] = (pre, post, weight_table[unit_of[post], unit_of[pre]].astype(np.float64))
    return out
