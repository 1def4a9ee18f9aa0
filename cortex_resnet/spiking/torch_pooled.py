"""Pool-level synaptic delivery for the torch engine: all-to-all pool pathways as one weight per pool pair.

When every neuron of pool ``b`` connects to every neuron of pool ``a`` with the one weight
``w_ab`` (``p_connect = 1`` or a fixed in-degree of the whole pool, no weight spread, one
delay ``D`` for all synapses -- the default conversion of ``compare``), the input every
neuron of pool ``a`` receives at step ``k`` is exactly

    sum_b w_ab * (spikes of pool b at step k - D),

the same for all ``M`` neurons of the pool. :class:`PooledDelivery` computes it per spike
as a row gather of the (U, U) pool table, summed per replica with one ``index_add_``
(``O(spikes x U)`` work and ``U x U`` memory instead of ``O(spikes x M U)`` work and
``M^2 U^2`` stored synapses), and adds it to the pool's neurons as a broadcast.

The plan then holds a :class:`PoolSynapses` instead of drawn arrays: the pool tables and
which pool pairs are connected. It is a read-only mapping with the per-synapse arrays'
interface (``plan.synapses["E"] -> (pre, post, w)``) that draws them only on access (exactly
the arrays :func:`~cortex_resnet.spiking.synapses.draw_synapses` draws: a complete graph
consumes no random numbers), so the Brian2 engine, the NIR export and the tests still see
synapses, while the torch engine and the plan's sizes, hash and memory estimate never draw
them (an untied MNIST-1D twin: 115 M synapses).

**Exactness.** The spike trains are those of per-synapse delivery up to the order of the
floating-point sums: per synapse, ``v + w_1 + w_2 + ...`` is added spike by spike; pooled,
``v + (w_1 + w_2 + ...)``. In float64 the two differ by a few ulp, so spike trains agree
until a potential lands within ~1e-15 mV of threshold (tested: identical over whole runs).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import numpy as np
import torch

from cortex_resnet.errors import SpecError
from cortex_resnet.model.circuit import Circuit
from cortex_resnet.model.spiking_spec import SpikingSpec
from cortex_resnet.spiking.mapping import pair_probability
from cortex_resnet.spiking.spread import uniform_delay
from cortex_resnet.spiking.synapses import draw_synapses

if TYPE_CHECKING:  # the engine and its state own the delivery; types only, no import cycle
    from cortex_resnet.spiking.torch_engine import TorchEngine
    from cortex_resnet.spiking.torch_state import _State

__all__ = ["DELIVERIES", "PoolSynapses", "PooledDelivery", "hash_synapses", "pathway_weights", "pooled_bytes",
           "pooled_synapses", "synapse_count"]

DELIVERIES = ("auto", "pooled", "synapses")


class PoolSynapses(Mapping):
    """All-to-all pathways of one replica stored per pool pair (module docstring).

    Attributes
    ----------
    tables : ``{"E": (U, U), "I": (U, U)}`` per-spike increments ``[post unit, pre unit]`` (mV jump,
        current or conductance increment, as the drawn synapses' weights), 0 where not connected
    present : ``{"E": (U, U) bool, ...}`` connected pool pairs of each pathway
    pool_size : neurons per pool ``M``
    """

    def __init__(self, circuit: Circuit, sspec: SpikingSpec, increments: np.ndarray):
        self._circuit, self._sspec, self._increments = circuit, sspec, increments
        self.pool_size = sspec.pool_size
        connected = circuit.mask & (circuit.W != 0)
        self.present, self.tables = {}, {}
        for pop, cols in (("E", circuit.is_E), ("I", ~circuit.is_E)):
            self.present[pop] = connected & cols[None, :]
            self.tables[pop] = np.where(self.present[pop], increments, 0.0)

    def __getitem__(self, pop: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The pathway's synapses ``(pre, post, w)``, drawn now (``M^2`` per connected pool pair)."""
        if pop not in self.tables:
            raise KeyError(pop)
        rng = np.random.default_rng([self._circuit.spec.seed, 0x5EED])  # unused: the graph is complete
        return draw_synapses(self._circuit, self._sspec, rng, self._increments)[pop]

    def __iter__(self) -> Iterator[str]:
        return iter(self.tables)

    def __len__(self) -> int:
        return len(self.tables)

    def count(self, pop: str) -> int:
        """Synapses of the pathway in one replica (``M^2`` per connected pool pair), without drawing them."""
        return int(self.present[pop].sum()) * self.pool_size ** 2

    def __repr__(self) -> str:
        """One line: sizes (not the arrays)."""
        U = next(iter(self.tables.values())).shape[0]
        return (f"PoolSynapses({U} pools x {self.pool_size} neurons, "
                f"{sum(self.count(p) for p in self.tables):,} synapses as {U}x{U} tables)")


def _not_complete(circuit: Circuit, sspec: SpikingSpec) -> str | None:
    """Why the pool pathways are not all-to-all with one weight and one delay (None: they are)."""
    syn, M = sspec.synapse, sspec.pool_size
    p = np.broadcast_to(np.asarray(pair_probability(circuit, sspec), np.float64), circuit.W.shape)
    used = p[circuit.mask & (circuit.W != 0)]
    if syn.fixed_total_number and used.size:
        return "spiking.synapse.fixed_total_number (uniformly drawn ends with multapses, not all-to-all pools)"
    if syn.fixed_indegree and used.size and np.rint(used * M).min() < M:
        return f"spiking.synapse.fixed_indegree: round(p_connect x pool_size) = {int(np.rint(used * M).min())} < {M}"
    if not syn.fixed_indegree and used.size and used.min() < 1.0:
        return f"p_connect = {used.min():g} < 1 (random pairs, not all-to-all pools)"
    if syn.weight_rel_sd > 0:
        return f"spiking.synapse.weight_rel_sd = {syn.weight_rel_sd:g} (one weight per synapse)"
    if not uniform_delay(syn):
        return "per-synapse delays (spiking.synapse.delay_i_ms / delay_rel_sd)"
    return None


def pooled_synapses(circuit: Circuit, sspec: SpikingSpec, increments: np.ndarray, engine: str,
                    delivery: str = "auto") -> tuple[PoolSynapses | None, str]:
    """The plan's synapses as pool tables when pooled delivery applies exactly, and the delivery in words.

    ``delivery``: ``auto`` (pooled wherever exact, with the torch engine), ``pooled`` (refused, naming
    the reason, where it is not exact) or ``synapses`` (always per synapse). Returns ``(None, why)``
    where the synapses are to be drawn.
    """
    if delivery not in DELIVERIES:
        raise SpecError("delivery", delivery, f"one of {', '.join(DELIVERIES)}")
    why = ("delivery = 'synapses'" if delivery == "synapses" else
           f"engine {engine!r} (pooled delivery is the torch engine's)" if engine != "torch" else
           _not_complete(circuit, sspec))
    if why is None:
        return PoolSynapses(circuit, sspec, increments), "pooled: all-to-all pools, one weight per pool pair"
    if delivery == "pooled":
        raise SpecError("delivery", "pooled", f"a plan whose pools connect all-to-all with one weight and one "
                        f"delay and engine 'torch'; here: {why}")
    return None, f"per synapse: {why}"


def synapse_count(synapses: Mapping, pop: str) -> int:
    """Synapses of pathway ``pop`` in one replica, drawn or pooled (never draws)."""
    return synapses.count(pop) if isinstance(synapses, PoolSynapses) else int(synapses[pop][0].size)


def pathway_weights(synapses: Mapping, pop: str) -> np.ndarray:
    """The distinct-in-kind weights of a pathway: every synapse's (drawn) or every connected pool pair's (pooled)."""
    if isinstance(synapses, PoolSynapses):
        return synapses.tables[pop][synapses.present[pop]]
    return synapses[pop][2]


def hash_synapses(h: "hashlib._Hash", synapses: Mapping, delays_ms: dict | None) -> None:
    """Feed the synapse graph into ``h``: drawn arrays, or (pooled) the connected pool pairs and ``M``."""
    for key in sorted(synapses):
        if isinstance(synapses, PoolSynapses):
            h.update(f"pooled {key} M={synapses.pool_size}".encode())
            h.update(np.packbits(synapses.present[key]).tobytes())
            continue
        pre, post, _ = synapses[key]
        h.update(np.ascontiguousarray(pre, dtype=np.int32).tobytes())
        h.update(np.ascontiguousarray(post, dtype=np.int32).tobytes())
        if delays_ms is not None:
            h.update(np.ascontiguousarray(delays_ms[key], dtype=np.float64).tobytes())


def pooled_bytes(synapses: PoolSynapses, spikes_per_step: float, rows: int, itemsize: int) -> float:
    """Memory (bytes) of pooled delivery: the pool tables, one step's gathered rows and the pool input."""
    U = next(iter(synapses.tables.values())).shape[0]
    return (len(synapses.tables) * U * U + (spikes_per_step + rows) * U) * itemsize


class PooledDelivery:
    """The torch side: per pathway the transposed pool table ``[pre unit, post unit]`` (module docstring)."""

    def __init__(self, eng: TorchEngine, synapses: PoolSynapses):
        p = eng.plan
        rw = getattr(p, "replica", None)  # per-replica weights (spiking.replica_weights): a table per condition
        sets = [synapses.tables] if rw is None else [{pop: w[c] for pop, w in rw.weights.items()}
                                                     for c in range(rw.n_conditions)]
        self.U = sets[0]["E"].shape[0]
        self.M = p.n // self.U
        if p.synapse_kind == "delta":  # both pathways move v: one signed table (disjoint columns: exact)
            sets = [{"V": tab["E"] - tab["I"]} for tab in sets]
        self.wt = {pop: eng._t(np.concatenate([tab[pop].T for tab in sets]))
                   for pop in sets[0] if any(np.any(tab[pop]) for tab in sets)}
        self.cols = torch.arange(self.U, device=eng.device)
        # per-replica weights: row offset (condition * U) of each (copy, replica) row into the stacked tables
        self.wrow = None if rw is None else torch.as_tensor(np.tile(rw.condition * self.U, 2), device=eng.device)

    def deliver(self, st: _State, src: torch.Tensor) -> None:
        """Add the spikes ``src`` (flat indices into (R, B, n)) as pool input to ``v`` / ``I`` / ``g``."""
        pool = src // self.M
        unit = pool % self.U
        tgt = ((pool - unit)[:, None] + self.cols).view(-1)  # flat (replica row, post unit) of each spike's row
        rows = st.R * st.p.batch
        wu = unit if self.wrow is None else unit + self.wrow[pool // self.U]
        for pop, wt in self.wt.items():
            inp = torch.zeros(rows * self.U, dtype=wt.dtype, device=wt.device)
            inp.index_add_(0, tgt, wt[wu].view(-1))  # 1-D: one kernel (a 2-D index_add_ is one op per spike)
            inp = inp.view(rows, self.U)
            dest = st.v if pop == "V" else st.syn[pop]
            dest.view(rows, self.U, self.M).add_(inp.unsqueeze(-1))

    def __repr__(self) -> str:
        """One line: sizes."""
        return f"PooledDelivery({self.U} pools x {self.M} neurons, pathways {', '.join(self.wt)})"
