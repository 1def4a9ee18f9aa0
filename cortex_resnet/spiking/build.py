"""A circuit as a spiking network: neurons, synapses and input, as NumPy arrays (a "plan").

The plan is what both Brian2 devices (runtime and C++ standalone) build from,
and what the standalone cache is keyed on: :meth:`SpikingPlan.structure_hash`
covers everything compiled into the code (sizes, equations, the synapse
graph, delays, duration, time step, recorded neurons), never the parameter
values (weights, neuron parameters, input rates, noise), which are set at
run time.

Layout: a stimulus batch of ``B`` becomes ``B`` independent replicas of the
network (same synapse graph, own input, own initial potentials). Within a
replica, neuron ``n`` belongs to rate unit ``n // M`` (excitatory populations'
units first), so E neurons come first; each neuron has its population's LIF
parameters (``spiking.populations.NAME``).
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from cortex_resnet.model.circuit import Circuit
from cortex_resnet.errors import SpecError
from cortex_resnet.spiking.meanfield import PoolModel
from cortex_resnet.core.resources import check_memory
from cortex_resnet.model.spec import StimulusSpec
from cortex_resnet.spiking.initial_state import initial_potentials, replica_generators
from cortex_resnet.spiking.mapping import FITTED, Mapping, map_circuit, per_unit, pool_connectivity, pool_model
from cortex_resnet.model.spiking_spec import SpikingSpec
from cortex_resnet.model.stimulus import make_stimulus
from cortex_resnet.spiking.input_split import split_dc
from cortex_resnet.spiking.delay_csr import DelayCSR
from cortex_resnet.spiking.lean_graph import draw_graph
from cortex_resnet.spiking.synapses import draw_synapses
from cortex_resnet.spiking.torch_pooled import hash_synapses, pathway_weights, pooled_synapses, synapse_count

__all__ = ["SpikingPlan", "build_plan", "estimate_bytes", "draw_synapses", "sample_drive", "PLAN_VERSION"]

PLAN_VERSION = "cortex_resnet.spiking/1"
BYTES_PER_SYNAPSE = 80  # our index/weight arrays plus Brian2's synapse and spike-queue storage
BYTES_PER_NEURON = 400
BYTES_PER_SPIKE = 16
ASSUMED_RATE_HZ = 50.0  # for the spike-monitor estimate


@dataclass
class SpikingPlan:
    """Everything needed to build and run the spiking network (see module docstring).

    Per-replica neuron arrays have shape (n,), ``n = n_units * M``; stimulus-
    dependent arrays carry the batch. Potentials in mV relative to nothing
    (absolute), times in ms.
    """

    circuit: Circuit
    sspec: SpikingSpec
    batch: int
    duration_ms: float
    dt_ms: float
    unit_of: np.ndarray            # (n,) rate unit of each neuron
    is_E: np.ndarray               # (n,) bool
    neuron: dict[str, np.ndarray]  # tau_m_ms, v_rest_mV, v_th_mV, v_reset_mV, t_ref_ms, mu_dc_mV, sigma_mV, w_in
    synapses: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # "E"/"I": (pre, post, w) per replica, or a
    # torch_pooled.PoolSynapses (all-to-all pools: pool tables, arrays drawn only on access)
    input_values: np.ndarray | None  # (T_in, batch * n_units): Hz (poisson) or mV (current)
    stim_dt_ms: float
    u: np.ndarray                  # (T_in, batch, n_inputs) the stimulus samples
    v0_mV: np.ndarray              # (batch, n)
    trace_neurons: np.ndarray      # neurons of replica 0 whose potential is recorded
    mapping: Mapping
    pool_model: PoolModel          # mean field of one replica at the operating input
    drive_mV: np.ndarray           # (T_in, batch, n_units) feedforward drive in mV
    info: dict = field(default_factory=dict)
    specialize: bool = True        # generate code for the values' special cases (see below)
    delays_ms: dict[str, np.ndarray] | None = None  # per-synapse delays (spiking.spread); None: delay_ms
    graph: DelayCSR | None = None  # the lean graph (spiking.lean_graph; torch engine): then synapses are empty

    @property
    def n(self) -> int:
        """Neurons per replica."""
        return int(self.unit_of.shape[0])

    @property
    def n_total(self) -> int:
        return self.n * self.batch

    @property
    def n_synapses(self) -> int:
        """Synapses in all replicas."""
        return self.batch * (sum(synapse_count(self.synapses, k) for k in self.synapses) if self.graph is None
                             else self.graph.nnz)

    @property
    def synapse_kind(self) -> str:
        """``delta``, ``exponential`` (current) or ``conductance`` for E and I pathways."""
        s = self.sspec.synapse
        if s.kind == "conductance":
            return "conductance"
        return "delta" if s.tau_e_ms == 0 and s.tau_i_ms == 0 else "exponential"

    @property
    def has_noise(self) -> bool:
        return bool(np.any(self.neuron["sigma_mV"] > 0))

    # Special cases of the values that allow leaner code, as a hand-written script would
    # have (one shared value instead of an array). Which values are shared is part of the
    # structure (a sweep that keeps the pattern reuses the build); ``specialize=False``
    # generates the general code for every network.
    @property
    def has_dc(self) -> bool:
        return not self.specialize or bool(np.any(self.neuron["mu_dc_mV"] != 0))

    def shared_weight(self, pop: str) -> bool:
        """All synapses of the pathway have one weight: a shared variable instead of one per synapse."""
        w = pathway_weights(self.synapses, pop)
        return self.specialize and bool(w.size and np.all(w == w[0]))

    @property
    def uniform_input(self) -> bool:
        """Every pool of every replica gets the same input at each time: a 1-D TimedArray."""
        v = self.input_values
        return self.specialize and v is not None and bool(np.all(v == v[:, :1]))

    @property
    def shared_params(self) -> bool:
        """E and I neurons have the same parameters: one shared value each."""
        keys = ("tau_m_ms", "v_rest_mV", "v_th_mV", "v_reset_mV", "t_ref_ms", "w_in")
        return self.specialize and all(np.all(self.neuron[k] == self.neuron[k][0]) for k in keys)

    def replica_pool_model(self, b: int, t_index: int = -1) -> PoolModel:
        """Mean field of replica ``b`` with its own drive at stimulus sample ``t_index``."""
        m = self.mapping
        return pool_model(self.circuit, self.sspec, m.k_unit, m.R_unit, m.dc_unit,
                          self.drive_mV[t_index, b], m.sigma_white_unit, self.dt_ms)

    def structure(self) -> dict:
        """What determines the generated code (see :meth:`structure_hash`): sizes, equations, which
        values are shared (E and I parameters, a pathway's weights, every pool's input), the
        synapse graph (hashed separately), delays, duration and time step."""
        s = self.sspec
        return {
            "version": PLAN_VERSION, "n": self.n, "batch": self.batch, "n_E": int(self.is_E.sum()),
            "synapse_kind": s.synapse.kind, "delta_e": s.synapse.tau_e_ms == 0,
            "delta_i": s.synapse.tau_i_ms == 0, "noise": self.has_noise, "method": s.method,
            "dc": self.has_dc, "shared_params": self.shared_params, "uniform_input": self.uniform_input,
            "shared_w": [self.shared_weight(p) for p in ("E", "I")],
            "input": None if self.input_values is None else [s.input.mode, list(self.input_values.shape),
                                                               self.stim_dt_ms],
            "delay_ms": s.synapse.delay_ms, "delays": self.delays_ms is not None, "dt_ms": self.dt_ms,
            "duration_ms": self.duration_ms,
            "pathways": {k: synapse_count(self.synapses, k) for k in self.synapses},
            "traces": self.trace_neurons.tolist(), "trace_stride": s.monitor.trace_stride,
        }

    def structure_hash(self) -> str:
        """SHA-256 (hex, 20 chars) of :meth:`structure` and the synapse graph."""
        h = hashlib.sha256(json.dumps(self.structure(), sort_keys=True).encode())
        hash_synapses(h, self.synapses, self.delays_ms)  # pooled plans: the connected pool pairs (torch_pooled)
        return h.hexdigest()[:20]

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return (f"SpikingPlan({self.circuit.spec.name!r}: {self.n} neurons x batch {self.batch}, {self.duration_ms:g} ms at "
                f"dt {self.dt_ms:g} ms, {self.synapse_kind} synapses ({self.n_synapses // max(self.batch, 1):,}))")


def estimate_bytes(circuit: Circuit, sspec: SpikingSpec, batch: int, duration_ms: float,
                   n_inputs_samples: int) -> float:
    """Memory a run will need (bytes), estimated from sizes before anything is allocated."""
    M = sspec.pool_size
    n = circuit.n_units * M
    K = pool_connectivity(circuit, sspec)  # (N, N) expected synapses per neuron
    syn = batch * M * float(K.sum())
    spikes = 2 * batch * n * ASSUMED_RATE_HZ * duration_ms * 1e-3  # main run and x run
    traces = 2 * sspec.monitor.n_traces * duration_ms / (sspec.dt_ms * sspec.monitor.trace_stride)
    return (syn * BYTES_PER_SYNAPSE + batch * n * BYTES_PER_NEURON + spikes * BYTES_PER_SPIKE
            + 8 * traces + 8 * n_inputs_samples * batch * circuit.n_units * 2)


def sample_drive(circuit: Circuit, stimulus: StimulusSpec | str | np.ndarray, duration_ms: float,
                 stim_dt_ms: float) -> tuple[np.ndarray, np.ndarray, str]:
    """Stimulus samples ``u`` (T_in, batch, n_inputs) at ``k * stim_dt_ms``, ``B u + b`` (T_in, batch, N)
    and a description (JSON). An array (batch, n_inputs) is a batch of constant inputs."""
    n_t = int(math.ceil(duration_ms / stim_dt_ms - 1e-9)) + 1
    if isinstance(stimulus, np.ndarray):
        arr = np.asarray(stimulus, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != circuit.n_inputs or arr.shape[0] < 1 or not np.all(np.isfinite(arr)):
            raise SpecError("u", f"array of shape {arr.shape}", f"finite values of shape (batch, {circuit.n_inputs})")
        u = np.broadcast_to(arr, (n_t,) + arr.shape).copy()
        desc = json.dumps({"kind": "constant array", "batch": arr.shape[0]})
    else:
        stim = make_stimulus(stimulus, circuit.n_inputs)
        t = np.arange(n_t) * stim_dt_ms
        u = np.stack([stim(float(ti)).numpy() for ti in t])
        desc = stim.spec.model_dump_json()
    return u, (u[..., None, :] @ circuit.B.T)[..., 0, :] + circuit.b, desc  # per row: batch-independent rounding


def _check_run(circuit: Circuit, duration_ms: float, dt_ms: float) -> None:
    if not (math.isfinite(duration_ms) and duration_ms > 0):
        raise SpecError("duration_ms", duration_ms, "a finite duration > 0 ms")
    if not (math.isfinite(dt_ms) and 0 < dt_ms <= 10):
        raise SpecError("dt_ms", dt_ms, "a step in (0, 10] ms")
    if circuit.step_weights is not None:
        raise SpecError("circuit.step_weights", "present", "a circuit with one weight matrix: step-dependent "
                        "(areas-in-a-chain) circuits run on the rate backend only")


def _increments(circuit: Circuit, sspec: SpikingSpec, model: PoolModel) -> tuple[np.ndarray, np.ndarray]:
    """Per-spike increments (N, N) of the pools' synapses and of the input synapses (N,).

    mV jump-equivalent (current) or g (conductance); exponential current synapses
    increment I (mV) by ``w tau_m / tau_s``.
    """
    syn = sspec.synapse
    increments, w_in = model.w.copy(), model.w_in.copy()
    if syn.kind == "current":
        tau_m_unit = model.tau_m_ms
        tau_s = np.where(circuit.is_E, syn.tau_e_ms, syn.tau_i_ms)
        scale = np.where(tau_s[None, :] > 0, tau_m_unit[:, None] / np.where(tau_s > 0, tau_s, 1.0)[None, :], 1.0)
        increments = increments * scale
        if syn.tau_e_ms > 0:
            w_in = w_in * tau_m_unit / syn.tau_e_ms
    return increments, w_in


def _input_values(sspec: SpikingSpec, drive: np.ndarray, tau_m_unit: np.ndarray) -> np.ndarray | None:
    """(T_in, batch * N) Poisson rates (Hz) or currents (mV) of the feedforward drive; None if all 0."""
    if sspec.input.mode == "poisson":
        if np.any(drive < 0):
            warnings.warn("negative feedforward drive cannot be Poisson-coded and is clipped at 0 "
                          "(use spiking.input.mode = 'current' for signed input)", stacklevel=3)
        values = np.maximum(drive, 0.0) / (sspec.input.weight_mV * tau_m_unit * 1e-3)  # Hz
    else:
        values = drive
    return None if not np.any(values) else values.reshape(values.shape[0], -1)


def _trace_neurons(is_E: np.ndarray, n_tr: int) -> np.ndarray:
    """Recorded neurons: ``n_tr`` E and ``n_tr`` I neurons spread over each group."""
    return np.concatenate([np.where(is_E)[0][:: max(1, int(is_E.sum()) // max(n_tr, 1))][:n_tr],
                           np.where(~is_E)[0][:: max(1, int((~is_E).sum()) // max(n_tr, 1))][:n_tr]]).astype(np.int64)


def _neuron_arrays(circuit: Circuit, sspec: SpikingSpec, mapping: Mapping, w_in: np.ndarray,
                   unit_of: np.ndarray) -> dict[str, np.ndarray]:
    """Per-neuron parameters (each population's own LIF neuron) of one replica."""
    per = lambda f: per_unit(circuit, sspec, f)[unit_of]  # noqa: E731
    return {
        "tau_m_ms": per(lambda l: l.tau_m_ms), "v_rest_mV": per(lambda l: l.v_rest_mV),
        "v_th_mV": per(lambda l: l.v_th_mV), "v_reset_mV": per(lambda l: l.v_reset_mV),
        "t_ref_ms": per(lambda l: l.t_ref_ms), "mu_dc_mV": mapping.dc_unit[unit_of],
        "sigma_mV": mapping.sigma_white_unit[unit_of], "w_in": w_in[unit_of],
    }


def _operating_input(circuit: Circuit, u: np.ndarray, u_operating: np.ndarray | None) -> np.ndarray:
    """(n_inputs,) or (S, n_inputs): default the final stimulus, averaged over the batch (fitted
    mappings: the batch's final stimuli, a sample to fit over)."""
    fitted = circuit.spec.spiking.weight_scaling in FITTED
    u_op = (u[-1] if fitted else u[-1].mean(axis=0)) if u_operating is None else np.asarray(u_operating, np.float64)
    if u_op.ndim > 2 or u_op.shape[-1:] != (circuit.n_inputs,) or u_op.size == 0:
        raise SpecError("u_operating", f"shape {u_op.shape}", f"shape ({circuit.n_inputs},) or (samples, {circuit.n_inputs})")
    return u_op


def build_plan(circuit: Circuit, stimulus: StimulusSpec | str | np.ndarray, duration_ms: float, *,
               dt_ms: float | None = None, u_operating: np.ndarray | None = None,
               seed: int | None = None, specialize: bool = True, engine: str = "brian2",
               replica_seeds: list[int] | None = None, delivery: str = "auto",
               graph: str = "standard") -> SpikingPlan:
    """Map a circuit and a stimulus onto a spiking network (see :mod:`cortex_resnet.spiking.mapping`).

    Parameters
    ----------
    circuit : the rate circuit (its ``spec.spiking`` says how; any number of named populations,
        each with its own LIF neuron ``spiking.populations.NAME``)
    stimulus : the stimulus (a batch makes replicas)
    duration_ms : run length (ms)
    dt_ms : integration step (default ``spec.spiking.dt_ms``)
    u_operating : (n_inputs,) operating input for the gain scaling (default: the
        stimulus at the end of the run, averaged over the batch)
    seed : seed of the initial potentials (default: the spec's); the synapse graph is part of
        the circuit and always drawn from ``circuit.spec.seed``
    replica_seeds : seed of each replica's initial potentials (default ``replica_seed(seed, b)``)
    engine : ``torch``: no Brian2 memory estimate (the engine checks its own), all-to-all pools get pool
        tables, no drawn synapses (``delivery`` auto/pooled/synapses: :mod:`~cortex_resnet.spiking.torch_pooled`;
        ``graph`` standard or lean: :mod:`~cortex_resnet.spiking.lean_graph`)
    specialize : lean code for special values (shared parameters, weights, uniform input); False: general

    Raises
    ------
    SpecError
        Bad durations, step-dependent weights; :class:`ResourceError` when the
        network would not fit the memory budget (checked before allocating).
    """
    sspec = circuit.spec.spiking
    dt_ms = sspec.dt_ms if dt_ms is None else float(dt_ms)
    _check_run(circuit, duration_ms, dt_ms)
    stim_dt = max(sspec.input.stimulus_dt_ms, dt_ms)
    u, ext, stim_desc = sample_drive(circuit, stimulus, duration_ms, stim_dt)
    batch = u.shape[1]
    check_memory(0.0 if engine == "torch" else estimate_bytes(circuit, sspec, batch, duration_ms, u.shape[0]),
                 "spiking network",
                 f"{batch} x {circuit.n_units * sspec.pool_size} neurons, ~"
                 f"{batch * sspec.pool_size * pool_connectivity(circuit, sspec).sum():.3g} synapses; "
                 "lower spiking.pool_size, spiking.synapse.p_connect, the batch or the duration")
    seed, mapping = circuit.spec.seed if seed is None else int(seed), map_circuit(
        circuit, sspec, _operating_input(circuit, u, u_operating), dt_ms)
    mapping, drive = split_dc(circuit, sspec, mapping, mapping.k_unit * ext)  # drive (T_in, batch, N) mV
    unit_of, is_E = np.repeat(np.arange(circuit.n_units), sspec.pool_size), np.repeat(circuit.is_E, sspec.pool_size)
    model = pool_model(circuit, sspec, mapping.k_unit, mapping.R_unit, mapping.dc_unit,
                       drive[-1].mean(axis=0), mapping.sigma_white_unit, dt_ms)
    increments, w_in = _increments(circuit, sspec, model)
    syn, delays, lean, how = _synapses(circuit, sspec, increments, engine, dt_ms, delivery, graph)
    neuron = _neuron_arrays(circuit, sspec, mapping, w_in, unit_of)
    plan = SpikingPlan(
        circuit=circuit, sspec=sspec, batch=batch, duration_ms=float(duration_ms), dt_ms=dt_ms,
        unit_of=unit_of, is_E=is_E, neuron=neuron, synapses=syn, delays_ms=delays, graph=lean,
        input_values=_input_values(sspec, drive, model.tau_m_ms), stim_dt_ms=stim_dt, u=u,
        v0_mV=np.zeros((batch, unit_of.size)), trace_neurons=_trace_neurons(is_E, sspec.monitor.n_traces),
        mapping=mapping, pool_model=model, drive_mV=drive,
        info={"stimulus": stim_desc, "seed": seed, "graph_seed": circuit.spec.seed, "mapping": mapping.info,
              "delivery": how}, specialize=specialize)  # delivery: pooled or per synapse, and why
    plan.v0_mV, plan.info["v_init"] = _v_init(plan, replica_generators(seed, batch, replica_seeds))
    return plan


def _synapses(circuit: Circuit, sspec: SpikingSpec, increments: np.ndarray, engine: str, dt_ms: float,
              delivery: str, graph: str) -> tuple[dict, dict | None, DelayCSR | None, str]:
    """The synapses (drawn, or pool tables: :mod:`cortex_resnet.spiking.torch_pooled`), per-synapse delays
    (None: one delay), the lean CSR (``graph = "lean"``: :mod:`cortex_resnet.spiking.lean_graph`; else
    None) and the delivery in words."""
    if graph == "lean" and delivery == "pooled":
        raise SpecError("delivery", "pooled", "auto or synapses with graph = 'lean' (a lean graph is drawn "
                        "synapse by synapse; pool tables are for all-to-all pools)")
    pooled, how = pooled_synapses(circuit, sspec, increments, engine, delivery) if graph != "lean" else (
        None, "per synapse: the lean graph (graph = 'lean')")
    if pooled is not None:
        return pooled, None, None, how
    graph_rng = np.random.default_rng([circuit.spec.seed, 0x5EED])
    syn, delays, lean = draw_graph(graph, circuit, sspec, graph_rng, increments, engine, dt_ms)
    return syn, delays, lean, how


def _v_init(plan: SpikingPlan, rngs: list[np.random.Generator]) -> tuple[np.ndarray, dict]:
    """Initial potentials (batch, n) at every replica's initial drive (:mod:`cortex_resnet.spiking.initial_state`)."""
    m, nr = plan.mapping, plan.neuron
    initial = pool_model(plan.circuit, plan.sspec, m.k_unit, m.R_unit, m.dc_unit, plan.drive_mV[0],
                         m.sigma_white_unit, plan.dt_ms)  # inputs (batch, N)
    return initial_potentials({"sspec": plan.sspec, "is_E": plan.is_E, "unit_of": plan.unit_of, "batch": plan.batch,
                               "model": initial, "v_reset_mV": nr["v_reset_mV"], "v_th_mV": nr["v_th_mV"],
                               "v_rest_mV": nr["v_rest_mV"]}, rngs)
