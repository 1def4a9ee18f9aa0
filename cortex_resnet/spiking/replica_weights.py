"""Per-replica weights: conditions that differ only in coupling strengths (and drives) as one torch batch.

The torch engine (:mod:`cortex_resnet.spiking.torch_engine`) runs ``B`` replicas of one network:
one synapse graph, one set of delays and, without this module, one set of weights. Conditions of a
hypothesis or a sweep that differ only in a coupling (``connectivity.J_EE``: another weight of the
E -> E pathway; and, through the gain mapping, other weights of every pathway into a population whose
gain changed, another DC and another background noise) share the graph, so they can share a batch if
each replica has its own weights.

**Representation** (:class:`ReplicaWeights`, attached to a merged plan by :func:`merge_plans`): the
plan of each condition is built alone (its own mapping at its own operating point, its own weights,
the same graph: drawn from the circuit's seed), then the plans are checked to share their structure
(sizes, the spiking spec, the graph, delays, the neuron parameters other than DC and noise; a
difference is refused naming the field) and merged: replica ``b`` belongs to condition
``condition[b]`` and uses that condition's weights: per pathway (``E``/``I``, by presynaptic type) the
pool table (C, U, U) where delivery is pooled, else every synapse's weight (C, nnz) in the graph's
order. The engine keeps the weights of all conditions stacked and gathers a spike's weight row at
``condition * rows + row`` (the pooled table's pre unit, the ELL row of the presynaptic neuron) --
the same one gather per spike as with shared weights; the delay-CSR delivery walks its segments once
per condition with that condition's weights (:class:`ReplicaDelayedDelivery`). Per replica too: the
DC (``mu_dc_mV``) and white-noise amplitude (``sigma_mV``), (B, n).

**Exactness.** A replica's weights, DC, noise amplitude, input table and initial potentials are the
values its condition's plan holds alone, and a replica's spikes are added in the same order as alone,
so a condition in a merged batch gives bit-identical (float64) spike trains to the condition run alone
(tested: current and conductance synapses, pooled, per-synapse and delay-CSR delivery).
A pathway scale ``s`` per (replica, pathway) is the special case ``weights_c = s_c w`` computed in the
plan (:func:`scaled_plan`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np

from cortex_resnet.errors import SpecError
from cortex_resnet.spiking.build import SpikingPlan
from cortex_resnet.spiking.delay_csr import DelayedDelivery, csr_from_synapses
from cortex_resnet.spiking.torch_pooled import PoolSynapses

__all__ = ["ReplicaWeights", "ReplicaDelayedDelivery", "condition_rows", "condition_synapses", "merge_plans",
           "replica_bytes", "scaled_plan", "split_raw"]

PER_REPLICA = ("mu_dc_mV", "sigma_mV")  # neuron arrays a condition may change (the gain mapping's DC, noise)


@dataclass
class ReplicaWeights:
    """Per-replica values of a merged plan (module docstring).

    ``condition``: (B,) condition of each replica; ``starts``: (C + 1,) first replica of each condition;
    ``weights``: per pathway ``E``/``I``, (C, U, U) pool tables (pooled plans) or (C, nnz) synapse weights
    in the order of ``plan.synapses``; ``mu_dc_mV``, ``sigma_mV``: (B, n) per replica.
    """

    condition: np.ndarray
    starts: np.ndarray
    weights: dict[str, np.ndarray]
    mu_dc_mV: np.ndarray
    sigma_mV: np.ndarray

    @property
    def n_conditions(self) -> int:
        return int(self.starts.size - 1)

    def __repr__(self) -> str:
        """One line: sizes."""
        return f"ReplicaWeights({self.condition.size} replicas in {self.n_conditions} conditions)"


def _first_difference(a: dict, b: dict, prefix: str) -> str | None:
    """Dotted path of the first field where two nested dicts differ (None: equal)."""
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            sub = _first_difference(x, y, f"{prefix}.{key}")
            if sub:
                return sub
        elif x != y:
            return f"{prefix}.{key}"
    return None


def _refuse(field: str, what: str) -> None:
    raise SpecError(field, what, "conditions that share the network's structure (sizes, spiking spec, synapse "
                    "graph, delays): one torch batch can differ only in coupling strengths and drives; run "
                    "the others as separate batches")


def _check_structure(p0: SpikingPlan, p: SpikingPlan) -> None:
    """SpecError naming the first field in which plan ``p`` does not share ``p0``'s structure."""
    diff = _first_difference(p0.sspec.model_dump(mode="json"), p.sspec.model_dump(mode="json"), "spiking")
    if diff:
        _refuse(diff, "differs between the conditions")
    if p.n != p0.n or not np.array_equal(p.unit_of, p0.unit_of) or not np.array_equal(p.is_E, p0.is_E):
        _refuse("populations", f"{p0.n} vs {p.n} neurons per replica (population sizes differ)")
    for name, a, b in (("dt_ms", p0.dt_ms, p.dt_ms), ("duration_ms", p0.duration_ms, p.duration_ms),
                       ("stimulus (samples)", p0.u.shape[0], p.u.shape[0]),
                       ("stimulus (drive)", p0.input_values is None, p.input_values is None)):
        if a != b:
            _refuse(name, f"{a!r} vs {b!r}")
    if p0.graph is not None or p.graph is not None:
        _refuse("graph", "lean (a graph drawn per condition)")
    for key, v in p0.neuron.items():
        if key not in PER_REPLICA and not np.array_equal(v, p.neuron[key]):
            _refuse(f"neuron parameter {key}", "differs between the conditions")
    if p0.has_noise != p.has_noise:
        _refuse("spiking.background_noise", "white noise in some conditions only (another random stream)")
    _check_graph(p0, p)


def _check_graph(p0: SpikingPlan, p: SpikingPlan) -> None:
    """The same synapse graph (pooled: connected pool pairs; drawn: pre/post arrays) and delays."""
    s0, s = p0.synapses, p.synapses
    if isinstance(s0, PoolSynapses) != isinstance(s, PoolSynapses):
        _refuse("delivery", "pooled in some conditions, per synapse in others")
    for pop in s0:
        same = (np.array_equal(s0.present[pop], s.present[pop]) if isinstance(s0, PoolSynapses) else
                all(np.array_equal(a, b) for a, b in zip(s0[pop][:2], s[pop][:2])))
        if not same:
            _refuse("connectivity", f"another synapse graph of the {pop} pathway (a coupling of 0 removes "
                    "a pathway; another p_connect or seed draws other pairs)")
        if (p0.delays_ms is None) != (p.delays_ms is None) or (
                p0.delays_ms is not None and not np.array_equal(p0.delays_ms[pop], p.delays_ms[pop])):
            _refuse("spiking.synapse.delay_ms", f"other delays of the {pop} pathway")


def merge_plans(plans: list[SpikingPlan]) -> SpikingPlan:
    """One plan whose replicas are those of ``plans`` in order, each with its own condition's weights, DC
    and noise (module docstring); SpecError naming the field where they do not share the structure."""
    if not plans:
        raise SpecError("conditions", "[]", "at least one condition")
    p0 = plans[0]
    for p in plans[1:]:
        _check_structure(p0, p)
    counts = np.array([p.batch for p in plans])
    starts = np.concatenate([[0], np.cumsum(counts)])
    if isinstance(p0.synapses, PoolSynapses):
        weights = {pop: np.stack([p.synapses.tables[pop] for p in plans]) for pop in p0.synapses.tables}
    else:
        weights = {pop: np.stack([p.synapses[pop][2] for p in plans]) for pop in p0.synapses}
    per = {k: np.concatenate([np.broadcast_to(p.neuron[k], (p.batch, p.n)) for p in plans]) for k in PER_REPLICA}
    rw = ReplicaWeights(condition=np.repeat(np.arange(len(plans)), counts), starts=starts, weights=weights, **per)
    table = None if p0.input_values is None else np.concatenate([p.input_values for p in plans], axis=1)
    merged = dataclasses.replace(
        p0, batch=int(starts[-1]), input_values=table, u=np.concatenate([p.u for p in plans], axis=1),
        v0_mV=np.concatenate([p.v0_mV for p in plans]), drive_mV=np.concatenate([p.drive_mV for p in plans], axis=1),
        info={**p0.info, "conditions": len(plans)})
    merged.replica = rw
    return merged


def scaled_plan(plan: SpikingPlan, scales: dict[str, float]) -> SpikingPlan:
    """``plan`` with every weight of pathway ``E``/``I`` multiplied by ``scales[pop]`` (NumPy, float64):
    a pathway scale as a condition of its own, for :func:`merge_plans`."""
    syn = plan.synapses
    if isinstance(syn, PoolSynapses):
        new = PoolSynapses.__new__(PoolSynapses)
        new.__dict__.update(syn.__dict__)
        new.tables = {pop: t * scales.get(pop, 1.0) for pop, t in syn.tables.items()}
    else:
        new = {pop: (pre, post, w * scales.get(pop, 1.0)) for pop, (pre, post, w) in syn.items()}
    return dataclasses.replace(plan, synapses=new)


def replica_bytes(plan: SpikingPlan, itemsize: int) -> float:
    """Memory (bytes) of the per-replica tensors of a merged plan: the stacked weights (per synapse, the
    ELL rows padded to the widest row: counted at 2x), the per-replica DC and noise, the row offsets."""
    rw = getattr(plan, "replica", None)
    if rw is None:
        return 0.0
    pad = 1.0 if isinstance(plan.synapses, PoolSynapses) else 2.0
    w = sum(a.size for a in rw.weights.values()) * itemsize * pad
    return w + 3 * rw.mu_dc_mV.size * itemsize + 16 * rw.condition.size


def condition_synapses(plan: SpikingPlan, c: int) -> dict:
    """The drawn synapses ``{pop: (pre, post, w)}`` of a merged plan with condition ``c``'s weights."""
    return {pop: (pre, post, plan.replica.weights[pop][c]) for pop, (pre, post, _) in plan.synapses.items()}


def condition_rows(plan: SpikingPlan, copies: int, rows: int) -> np.ndarray | None:
    """(copies * B,) offset of each (copy, replica) row into the stacked weights: ``condition * rows``
    (None without per-replica weights)."""
    rw = getattr(plan, "replica", None)
    return None if rw is None else np.tile(rw.condition * rows, copies)


def split_raw(raw, plan: SpikingPlan, c: int, n_traces: int):
    """The part of a merged run's :class:`~cortex_resnet.spiking.brian.RawRun` that belongs to condition
    ``c``: its replicas' spikes (renumbered from 0) and its first replica's traces."""
    rw = plan.replica
    lo, hi = int(rw.starts[c]) * plan.n, int(rw.starts[c + 1]) * plan.n
    keep = (raw.spike_i >= lo) & (raw.spike_i < hi)
    tr = raw.trace_v_mV[:, c * n_traces:(c + 1) * n_traces] if raw.trace_v_mV.size else raw.trace_v_mV
    return type(raw)(raw.spike_i[keep] - lo, raw.spike_t_ms[keep], raw.trace_t_ms, tr)


class ReplicaDelayedDelivery(DelayedDelivery):
    """The delay-CSR delivery (:class:`~cortex_resnet.spiking.delay_csr.DelayedDelivery`) with each
    condition's own synapse weights: the arriving spikes are split by condition and each part walks the
    segments with its condition's weights (a replica's additions keep their order: exact)."""

    def __init__(self, plan: SpikingPlan, copies: int, channels: int, dtype, device):
        graph = csr_from_synapses(plan.synapses, plan.delays_ms, plan.sspec.synapse.delay_ms, plan.n,
                                  int(plan.is_E.sum()), plan.dt_ms)
        super().__init__(graph, copies, channels, dtype, device)
        rw, base = plan.replica, self.w_np
        self.w_conditions = []
        for c in range(rw.n_conditions):
            w = csr_from_synapses(condition_synapses(plan, c), plan.delays_ms, plan.sspec.synapse.delay_ms, plan.n,
                                  int(plan.is_E.sum()), plan.dt_ms).w.astype(base.dtype)
            if channels == 1:
                w[graph.exc_end():] *= -1.0
            self.w_conditions.append(w)
        self.row_condition = np.tile(rw.condition, copies // rw.condition.size)
        self._part: tuple[np.ndarray, np.ndarray] | None = None

    def _sources(self, k, spikes, limit):
        return self._part if self._part is not None else super()._sources(k, spikes, limit)

    def deliver(self, k, spikes, limit, dest) -> None:
        """As the shared-weight delivery, once per condition present among the arriving spikes."""
        if k < self.d_min or not limit:
            return
        src, col = super()._sources(k, spikes, limit)
        if not src.size:
            return
        cond = self.row_condition[src // self.n]
        try:
            for c in np.unique(cond):
                sel = cond == c
                self._part, self.w_np = (src[sel], col[sel]), self.w_conditions[c]
                super().deliver(k, spikes, limit, dest)
        finally:
            self._part = None

    def __repr__(self) -> str:
        """One line: sizes and conditions."""
        return super().__repr__()[:-1] + f", {len(self.w_conditions)} weight sets)"


def describe(plan: SpikingPlan) -> str:
    """JSON line: conditions and replicas per condition (for result attributes)."""
    rw = plan.replica
    return json.dumps({"conditions": rw.n_conditions, "replicas": np.diff(rw.starts).tolist()})
