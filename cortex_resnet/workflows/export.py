"""A circuit's spiking network as a NIR graph (Neuromorphic Intermediate Representation), and back.

    graph = to_nir("models/lif_ei.toml")             # or a Circuit, or a `cortex-resnet train` run folder
    write_nir(graph, "lif_ei.nir")                    # nir.write, atomically; nir.read(...) reads it
    net = from_nir(graph)                             # NIRNetwork: the parameters in ms and mV

**What is exported** -- the network :mod:`cortex_resnet.spiking.build` makes of the circuit (one
pool of ``pool_size`` LIF neurons per rate unit, its drawn synapses, the gain scaling at the
operating input), as the graph ::

    input -> input_projection (Linear) -> lif (LIF) -> output            (or -> readout (Linear) -> output)
                                           lif -> [delay (Delay)] -> recurrence (Affine) -> lif

* ``lif``: ``nir.LIF`` per neuron, potentials relative to rest (``v_leak = 0``,
  ``v_threshold = v_th - v_rest``, ``v_reset = v_reset - v_rest``), ``tau`` in seconds,
  ``r = tau / dt`` (the discrete convention snnTorch and Norse use: an input of 1 for one step
  through a weight ``w`` moves ``v`` by ``w`` mV);
* ``recurrence``: ``nir.Affine``, weight ``W[post, pre]`` in mV per spike (E positive, I negative,
  multapses summed), bias = the constant drive per step ``dt / tau_m x mu_dc`` (its steady
  potential ``r x bias`` is ``mu_dc`` mV);
* ``input_projection``: Poisson input (``spiking.input.mode = "poisson"``): one input spike channel
  per neuron, ``diag(w_in)`` mV per spike (the rates, Hz, of a stimulus ``u`` are in the metadata
  ``input_rate_hz_per_u`` / ``input_rate_hz_offset``, clipped at 0 Hz); current input: the
  ``n_inputs`` signals ``u`` with weight ``dt / tau_m x k B`` (``k`` the gain scaling);
* ``delay``: the synaptic delay as ``nir.Delay`` (seconds) when it is > 0 (``drop_delays=True``
  leaves it out for consumers without Delay, e.g. snnTorch: an approximation);
* ``readout`` (trained runs): the trained readout on E-pool rates as a ``nir.Linear`` on spikes:
  ``logits = sum over a window of readout(s_t) / window_s + readout_bias`` (metadata).

**Approximated or left out** (listed in the graph's metadata ``approximated``): the absolute
refractory period (NIR's LIF has none), white background noise, the initial potentials (NIR
starts at rest), the Poisson coding itself (the graph takes spike trains). Exponential-current
and conductance synapses are refused with an error naming the field: only delta synapses are
exported. Graph metadata also holds ``dt_s``, ``written_by``, the circuit's spec (JSON),
``neuron_unit`` and ``neuron_population``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cortex_resnet.errors import SpecError
from cortex_resnet.io.results import atomic_path
from cortex_resnet.model.circuit import Circuit, build_circuit
from cortex_resnet.model.spec import load_spec
from cortex_resnet.spiking.build import SpikingPlan, build_plan
from cortex_resnet.bridge import to_circuit
from cortex_resnet.workflows.compare import load_run

__all__ = ["NIR_NODES", "NIRNetwork", "from_nir", "plan_to_nir", "read_nir", "to_nir", "write_nir"]

WRITTEN_BY = "cortex-resnet (cortex_resnet.workflows.export)"
NIR_NODES = ("Input", "Output", "Linear", "Affine", "LIF", "Delay")  # what from_nir reads


def _nir() -> Any:
    try:  # deferred: optional dependency (the interop extra), needed only to export or import
        import nir
    except ImportError:
        raise SpecError("--format", "nir", "the nir package (pip install 'cortex-resnet[interop]')") from None
    return nir


@dataclass(frozen=True)
class NIRNetwork:
    """A NIR graph our model fits, in our units (ms, mV; potentials relative to rest).

    Attributes
    ----------
    tau_m_ms, v_th_mV, v_reset_mV, mu_dc_mV : (n,) per neuron (threshold/reset above rest; constant drive)
    w_in : (n, n_in) input weights (mV per input spike, or per step of current input)
    w_rec : (n, n) recurrent weights, ``[post, pre]``, mV per spike
    delay_ms : synaptic delay (0 without a Delay node)
    dt_ms : the step of the graph's convention (``r = tau / dt``)
    readout : (n_classes, n) or None
    metadata : the graph's metadata
    """

    tau_m_ms: np.ndarray
    v_th_mV: np.ndarray
    v_reset_mV: np.ndarray
    mu_dc_mV: np.ndarray
    w_in: np.ndarray
    w_rec: np.ndarray
    delay_ms: float
    dt_ms: float
    readout: np.ndarray | None
    metadata: dict

    def into_plan(self, plan: SpikingPlan) -> SpikingPlan:
        """``plan`` with this network's neurons and synapses, to run on our engines (Poisson-input
        graphs, one input channel per neuron, as many neurons as ``plan``). Potentials keep ``plan``'s
        rest; the refractory period is the metadata's ``t_ref_ms`` (0 when absent)."""
        n = plan.n
        if self.w_rec.shape != (n, n) or self.w_in.shape != (n, n):
            raise SpecError("nir graph", f"{self.w_rec.shape[0]} neurons, input {self.w_in.shape}",
                            f"{n} neurons with one input spike channel each (the plan's network)")
        if not np.allclose(self.w_in, np.diag(np.diag(self.w_in))):
            raise SpecError("nir input_projection", "not diagonal", "one input spike channel per neuron")
        if abs(self.delay_ms / plan.dt_ms - round(self.delay_ms / plan.dt_ms)) > 1e-6:
            raise SpecError("nir delay", f"{self.delay_ms} ms", f"a multiple of dt = {plan.dt_ms} ms")
        rest = plan.neuron["v_rest_mV"]
        t_ref = np.asarray(self.metadata.get("t_ref_ms", np.zeros(n)), np.float64).reshape(-1)
        neuron = {**plan.neuron, "tau_m_ms": self.tau_m_ms.copy(), "v_th_mV": rest + self.v_th_mV,
                  "v_reset_mV": rest + self.v_reset_mV, "mu_dc_mV": self.mu_dc_mV.copy(),
                  "w_in": np.diag(self.w_in).copy(), "t_ref_ms": np.broadcast_to(t_ref, (n,)).copy()}
        post, pre = np.nonzero(self.w_rec)
        w = self.w_rec[post, pre]
        syn = {"E": (pre[w > 0].astype(np.int32), post[w > 0].astype(np.int32), w[w > 0]),
               "I": (pre[w < 0].astype(np.int32), post[w < 0].astype(np.int32), -w[w < 0])}
        sspec = plan.sspec.model_copy(update={"synapse": plan.sspec.synapse.model_copy(
            update={"delay_ms": float(self.delay_ms)})})
        return dataclasses.replace(plan, neuron=neuron, synapses=syn, sspec=sspec)


def _check_exportable(plan: SpikingPlan) -> None:
    if plan.synapse_kind != "delta":
        kind = plan.sspec.synapse.kind
        raise SpecError("spiking.synapse", f"{kind} (tau_e_ms = {plan.sspec.synapse.tau_e_ms}, tau_i_ms = "
                        f"{plan.sspec.synapse.tau_i_ms})", "delta synapses (current with tau_e_ms = tau_i_ms = 0) "
                        "for a NIR export")


def _recurrent_matrix(plan: SpikingPlan) -> np.ndarray:
    W = np.zeros((plan.n, plan.n))
    for pop, sign in (("E", 1.0), ("I", -1.0)):
        pre, post, w = plan.synapses[pop]
        np.add.at(W, (post, pre), sign * w)
    return W


def _input_projection(plan: SpikingPlan) -> tuple[np.ndarray, np.ndarray, dict]:
    """(weight, per-step drive it adds at u = 0 (mV per step), metadata) of the input."""
    nr, c = plan.neuron, plan.circuit
    step = plan.dt_ms / nr["tau_m_ms"]
    k = plan.mapping.k_unit[plan.unit_of]
    B, b = c.B[plan.unit_of], c.b[plan.unit_of]
    if plan.sspec.input.mode == "poisson":  # rate (Hz) = max(k (B u + b), 0) / (weight_mV tau_m 1e-3)
        per = (k / (plan.sspec.input.weight_mV * nr["tau_m_ms"] * 1e-3))[:, None]
        meta = {"input": "spikes, one Poisson train per neuron", "input_rate_hz_per_u": (per * B).tolist(),
                "input_rate_hz_offset": (per[:, 0] * b).tolist()}
        return np.diag(nr["w_in"]), np.zeros(plan.n), meta
    return step[:, None] * k[:, None] * B, step * k * b, {"input": "currents u (n_inputs), per step"}


def plan_to_nir(plan: SpikingPlan, *, drop_delays: bool = False, readout: np.ndarray | None = None,
                readout_bias: np.ndarray | None = None, metadata: dict | None = None) -> Any:
    """The NIR graph of a spiking plan (module docstring). ``readout``: (n_classes, n) on spikes."""
    nir = _nir()
    _check_exportable(plan)
    nr, n, dt_s = plan.neuron, plan.n, plan.dt_ms * 1e-3
    rest = nr["v_rest_mV"]
    tau_s = nr["tau_m_ms"] * 1e-3
    w_in, drive0, meta_in = _input_projection(plan)
    bias = plan.dt_ms / nr["tau_m_ms"] * nr["mu_dc_mV"] + drive0
    nodes = {"input": nir.Input({"input": np.array([w_in.shape[1]])}),
             "input_projection": nir.Linear(w_in),
             "lif": nir.LIF(tau=tau_s, r=tau_s / dt_s, v_leak=np.zeros(n), v_threshold=nr["v_th_mV"] - rest,
                            v_reset=nr["v_reset_mV"] - rest),
             "recurrence": nir.Affine(_recurrent_matrix(plan), bias)}
    edges = [("input", "input_projection"), ("input_projection", "lif"), ("recurrence", "lif")]
    delay_ms = plan.sspec.synapse.delay_ms
    if delay_ms > 0 and not drop_delays:
        nodes["delay"] = nir.Delay(np.full(n, delay_ms * 1e-3))
        edges += [("lif", "delay"), ("delay", "recurrence")]
    else:
        edges.append(("lif", "recurrence"))
    n_out = n if readout is None else readout.shape[0]
    if readout is not None:
        nodes["readout"] = nir.Linear(np.asarray(readout, np.float64))
        edges += [("lif", "readout"), ("readout", "output")]
    else:
        edges.append(("lif", "output"))
    nodes["output"] = nir.Output({"output": np.array([n_out])})
    approximated = ["refractory period (t_ref_ms, in the metadata) dropped: NIR's LIF has none",
                    "initial potentials: NIR starts at rest", "Poisson coding: the graph takes spike trains"]
    if plan.has_noise:
        approximated.append("white background noise (sigma_mV in the metadata) dropped")
    if delay_ms > 0 and drop_delays:
        approximated.append(f"synaptic delay {delay_ms} ms dropped (drop_delays)")
    c = plan.circuit
    meta = {"written_by": WRITTEN_BY, "circuit": c.spec.name, "spec": c.spec.to_json(), "dt_s": dt_s,
            "convention": "r = tau / dt: an input of 1 for one step through weight w moves v by w (mV)",
            "potentials": "mV relative to v_rest_mV", "v_rest_mV": rest.tolist(), "t_ref_ms": nr["t_ref_ms"].tolist(),
            "sigma_mV": nr["sigma_mV"].tolist(), "synaptic_delay_ms": delay_ms, "approximated": approximated,
            "neuron_unit": plan.unit_of.tolist(), "neuron_population": "".join(np.where(plan.is_E, "E", "I")),
            "readout_bias": None if readout_bias is None else np.asarray(readout_bias).tolist(),
            **meta_in, **(metadata or {})}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={k: _storable(v) for k, v in meta.items() if v is not None})


def _storable(v: Any) -> Any:
    """A metadata value nir.write (HDF5) stores: numbers, strings, arrays; lists of strings as JSON."""
    if isinstance(v, list) and v and isinstance(v[0], str):
        return json.dumps(v)
    return np.asarray(v) if isinstance(v, list) else v


def _trained(run_dir: Path, data_dir: Any) -> tuple[Circuit, np.ndarray, np.ndarray, np.ndarray, dict]:
    """Circuit, operating input, readout (n_classes, n_E units) and bias of a `train` run folder."""

    run = load_run(run_dir, data_dir)
    circuit = to_circuit(run.model.net)
    if circuit.step_weights is not None:
        raise SpecError("model.variant", run.spec.model.variant, "a tied circuit (untied nets have step-dependent "
                        "weights, which have no spiking network)")
    with torch.no_grad():
        u_op = run.model.encode(torch.as_tensor(run.dataset.x_train, dtype=torch.float64)).mean(0).numpy()
    meta = {"run": str(run_dir), "readout_on": "E pools: see the module docstring"}
    return (circuit, u_op, run.model.readout_weight.detach().numpy().copy(),
            run.model.readout_bias.detach().numpy().copy(), meta)


def to_nir(source: str | Path | Circuit, *, u_operating: np.ndarray | None = None, drop_delays: bool = False,
           data_dir: str | Path | None = None) -> Any:
    """The NIR graph of a circuit: a :class:`Circuit`, a model file (TOML) or a ``cortex-resnet train``
    run folder (its trained circuit with the readout; signed input as currents, as ``compare``).

    ``u_operating``: (n_inputs,) operating input of the gain scaling (default: the model's stimulus at
    its end; a run's mean encoded training input).
    """
    readout = bias = None
    meta: dict = {}
    if isinstance(source, Circuit):
        circuit = source
    elif Path(source).is_dir():
        circuit, u_run, readout, bias, meta = _trained(Path(source), data_dir)
        circuit = dataclasses.replace(circuit, spec=circuit.spec.replace(**{"spiking.input.mode": "current"}))
        u_operating = u_run if u_operating is None else u_operating
    elif Path(source).is_file():
        circuit = build_circuit(load_spec(source))
    else:
        raise SpecError("RUN_OR_MODEL", str(source), "a model file (.toml) or a `cortex-resnet train` run folder")
    stim = circuit.spec.simulation.stimulus if u_operating is None else np.asarray(u_operating, np.float64)[None]
    plan = build_plan(circuit, stim, circuit.spec.spiking.dt_ms * 2, u_operating=u_operating, engine="torch")
    if readout is not None:  # rates in rate units from spike counts: r = count / (M window_s R_unit)
        e_units = np.where(circuit.is_E)[0]
        col = np.full(circuit.n_units, -1)
        col[e_units] = np.arange(e_units.size)
        scale = 1.0 / (plan.sspec.pool_size * plan.mapping.R_unit[plan.unit_of])
        per_neuron = np.where(col[plan.unit_of] >= 0, readout[:, np.maximum(col[plan.unit_of], 0)], 0.0)
        readout = per_neuron * scale
    return plan_to_nir(plan, drop_delays=drop_delays, readout=readout, readout_bias=bias, metadata=meta)


def write_nir(graph: Any, path: str | Path) -> Path:
    """``nir.write`` to ``path`` atomically (never replacing a file a cortex-resnet command did not write
    inside a claimed folder; the command line also checks ``--force``)."""
    nir = _nir()
    path = Path(path)
    with atomic_path(path) as tmp:
        nir.write(tmp, graph)
    return path


def read_nir(path: str | Path) -> NIRNetwork:
    """``nir.read`` a file and :func:`from_nir` it."""
    nir = _nir()
    path = Path(path)
    if not path.is_file():
        raise SpecError("NIR file", str(path), "an existing .nir file")
    try:
        graph = nir.read(path)
    except (OSError, KeyError, ValueError) as err:
        raise SpecError("NIR file", str(path), f"a readable NIR graph ({type(err).__name__}: {err})") from None
    return from_nir(graph)


def _one(nodes: dict, edges: list, src: str | None, dst: str | None, what: str, types: tuple) -> str:
    """The one node between ``src`` and ``dst`` (edges src -> X, X -> dst) of one of ``types``."""
    hits = [k for k in nodes if (src is None or (src, k) in edges) and (dst is None or (k, dst) in edges)
            and type(nodes[k]).__name__ in types]
    if len(hits) != 1:
        raise SpecError("nir graph", f"{len(hits)} {what} nodes", f"exactly one {what} ({' or '.join(types)})")
    return hits[0]


def from_nir(graph: Any) -> NIRNetwork:
    """Read a NIR graph that fits our model: ``Input -> Linear/Affine -> LIF``, a recurrence
    ``LIF -> [Delay ->] Linear/Affine -> LIF``, and ``LIF -> [Linear readout ->] Output``.

    Raises
    ------
    SpecError
        naming the node and its type when the graph has a node of another type (our model has no
        ``Conv2d``, ``CubaLIF``, ``IF``, ...), or naming what is missing or extra.
    """
    nodes, edges = dict(graph.nodes), [tuple(e) for e in graph.edges]
    for name, node in nodes.items():
        if type(node).__name__ not in NIR_NODES:
            raise SpecError(f"nir node {name!r}", type(node).__name__, f"a node of our model: {', '.join(NIR_NODES)}")
    lif = _one(nodes, edges, None, None, "LIF", ("LIF",))
    inp = _one(nodes, edges, None, None, "Input", ("Input",))
    proj = _one(nodes, edges, inp, lif, "input projection", ("Linear", "Affine"))
    delay = [k for k in nodes if type(nodes[k]).__name__ == "Delay"]
    rec = _one(nodes, edges, delay[0] if delay else lif, lif, "recurrence", ("Linear", "Affine"))
    L = nodes[lif]
    tau_ms = np.asarray(L.tau, np.float64).reshape(-1) * 1e3
    n = tau_ms.size
    dt_s = float(graph.metadata.get("dt_s", 0.0)) if graph.metadata else 0.0
    if dt_s <= 0:  # the convention r = tau / dt gives dt
        dt_s = float(np.median(np.asarray(L.tau) / np.asarray(L.r)))
    if not np.allclose(np.asarray(L.r) * dt_s, np.asarray(L.tau), rtol=1e-6):
        raise SpecError("nir LIF r", "not tau / dt", f"r = tau / dt with one dt (here {dt_s} s) for every neuron")
    if not np.allclose(L.v_leak, 0.0):
        raise SpecError("nir LIF v_leak", "nonzero", "0 (potentials relative to rest)")
    W_rec = np.asarray(nodes[rec].weight, np.float64)
    bias = np.asarray(getattr(nodes[rec], "bias", np.zeros(n)), np.float64) * np.ones(n)
    W_in = np.asarray(nodes[proj].weight, np.float64)
    if type(nodes[proj]).__name__ == "Affine":
        bias = bias + np.asarray(nodes[proj].bias, np.float64)
    if W_rec.shape != (n, n) or W_in.shape[0] != n:
        raise SpecError("nir graph", f"recurrence {W_rec.shape}, input {W_in.shape}", f"({n}, {n}) and ({n}, n_in)")
    delay_ms = float(np.max(np.asarray(nodes[delay[0]].delay))) * 1e3 if delay else 0.0
    outs = [k for k in nodes if (lif, k) in edges and k not in (rec, *delay)]
    readout = None
    if outs and type(nodes[outs[0]]).__name__ in ("Linear", "Affine"):
        readout = np.asarray(nodes[outs[0]].weight, np.float64)
    v_reset = np.zeros(n) if L.v_reset is None else np.asarray(L.v_reset, np.float64) * np.ones(n)
    dt_ms = dt_s * 1e3
    return NIRNetwork(tau_m_ms=tau_ms, v_th_mV=np.asarray(L.v_threshold, np.float64) * np.ones(n),
                      v_reset_mV=v_reset, mu_dc_mV=bias * tau_ms / dt_ms, w_in=W_in, w_rec=W_rec,
                      delay_ms=delay_ms, dt_ms=dt_ms, readout=readout, metadata=dict(graph.metadata or {}))
