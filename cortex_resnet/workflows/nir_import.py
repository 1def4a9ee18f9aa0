"""NIR graphs that fit our model, read back in our units (ms, mV), to run on our engines.

    net = from_nir(nir.read("lif_ei.nir"))     # or read_nir("lif_ei.nir"): a NIRNetwork
    plan = net.into_plan(plan)                  # the same network on the torch / Brian2 engines

Reads what :mod:`cortex_resnet.workflows.export` writes -- ``Input -> Linear/Affine -> LIF`` (delta
synapses) or ``CubaLIF`` (exponential current synapses with one ``tau_syn``), a recurrence ``LIF ->
[Delay ->] Linear/Affine -> LIF`` and ``LIF -> [Linear readout ->] Output`` -- and any graph of that
shape from another tool. Every other node type is refused with an error naming the node and its type.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cortex_resnet.errors import SpecError
from cortex_resnet.spiking.build import SpikingPlan

__all__ = ["NIR_NODES", "NIRNetwork", "from_nir", "read_nir"]

NIR_NODES = ("Input", "Output", "Linear", "Affine", "LIF", "CubaLIF", "Delay")  # what from_nir reads


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
    tau_syn_ms : synaptic time constant of a CubaLIF graph (exponential current synapses; weights are
        then delta-equivalent mV, see the module docstring), 0 for a LIF graph (delta synapses)
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
    tau_syn_ms: float = 0.0

    def __repr__(self) -> str:
        """One line: sizes, synapses, delay and step (not the arrays)."""
        syn = f"CubaLIF tau_syn {self.tau_syn_ms:g} ms" if self.tau_syn_ms > 0 else "LIF (delta synapses)"
        ro = "" if self.readout is None else f", readout {self.readout.shape[0]} classes"
        return (f"NIRNetwork({self.tau_m_ms.size} neurons, {self.w_in.shape[1]} inputs, {np.count_nonzero(self.w_rec):,} "
                f"synapses, {syn}, delay {self.delay_ms:g} ms, dt {self.dt_ms:g} ms{ro})")

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
        if self.tau_syn_ms > 0:  # delta-equivalent mV -> the engine's current increments
            scale = self.tau_m_ms / self.tau_syn_ms
            neuron["w_in"] = neuron["w_in"] * scale
        w_rec = self.w_rec * (scale[:, None] if self.tau_syn_ms > 0 else 1.0)
        post, pre = np.nonzero(w_rec)
        w = w_rec[post, pre]
        syn = {"E": (pre[w > 0].astype(np.int32), post[w > 0].astype(np.int32), w[w > 0]),
               "I": (pre[w < 0].astype(np.int32), post[w < 0].astype(np.int32), -w[w < 0])}
        sspec = plan.sspec.model_copy(update={"synapse": plan.sspec.synapse.model_copy(update={
            "kind": "current", "delay_ms": float(self.delay_ms), "tau_e_ms": self.tau_syn_ms,
            "tau_i_ms": self.tau_syn_ms})})
        return dataclasses.replace(plan, neuron=neuron, synapses=syn, sspec=sspec)


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


def _neuron_params(name: str, L: Any, metadata: dict) -> dict:
    """tau_m (ms), dt (s), tau_syn (ms), the input scale ``w_in`` (n,) of a LIF or CubaLIF node."""
    kind = type(L).__name__
    tau = np.asarray(L.tau if kind == "LIF" else L.tau_mem, np.float64).reshape(-1)
    dt_s = float(metadata.get("dt_s", 0.0)) if metadata else 0.0
    if dt_s <= 0:  # the convention r = tau / dt gives dt
        dt_s = float(np.median(tau / np.asarray(L.r).reshape(-1)))
    if not np.allclose(np.asarray(L.r) * dt_s, tau, rtol=1e-6):
        raise SpecError(f"nir {kind} {name!r} r", "not tau / dt", f"r = tau / dt with one dt (here {dt_s} s) "
                        "for every neuron")
    if not np.allclose(L.v_leak, 0.0):
        raise SpecError(f"nir {kind} {name!r} v_leak", "nonzero", "0 (potentials relative to rest)")
    tau_syn_ms, w_in = 0.0, np.ones(tau.size)
    if kind == "CubaLIF":
        ts = np.asarray(L.tau_syn, np.float64).reshape(-1) * 1e3
        if not np.allclose(ts, ts[0], rtol=1e-9) or ts[0] <= 0:
            raise SpecError(f"nir CubaLIF {name!r} tau_syn", f"{ts.min():g} .. {ts.max():g} ms", "one positive "
                            "synaptic time constant for every neuron (our spiking.synapse.tau_e_ms = tau_i_ms)")
        tau_syn_ms, w_in = float(ts[0]), np.asarray(L.w_in, np.float64) * np.ones(tau.size)
    return {"tau_ms": tau * 1e3, "dt_s": dt_s, "tau_syn_ms": tau_syn_ms, "w_in": w_in}


def from_nir(graph: Any) -> NIRNetwork:
    """Read a NIR graph that fits our model: ``Input -> Linear/Affine -> LIF`` (or ``CubaLIF``), a
    recurrence ``LIF -> [Delay ->] Linear/Affine -> LIF``, and ``LIF -> [Linear readout ->] Output``.

    A CubaLIF needs one ``tau_syn`` for all neurons (our exponential synapses with ``tau_e_ms =
    tau_i_ms``); its ``w_in`` is folded into the weights, which are then delta-equivalent mV.

    Raises
    ------
    SpecError
        naming the node and its type when the graph has a node of another type (our model has no
        ``Conv2d``, ``IF``, ``CubaLI``, ...), or a parameter our model cannot take, or what is missing or extra.
    """
    nodes, edges = dict(graph.nodes), [tuple(e) for e in graph.edges]
    for name, node in nodes.items():
        if type(node).__name__ not in NIR_NODES:
            raise SpecError(f"nir node {name!r}", type(node).__name__, f"a node of our model: {', '.join(NIR_NODES)}")
    lif = _one(nodes, edges, None, None, "neuron", ("LIF", "CubaLIF"))
    inp = _one(nodes, edges, None, None, "Input", ("Input",))
    proj = _one(nodes, edges, inp, lif, "input projection", ("Linear", "Affine"))
    delay = [k for k in nodes if type(nodes[k]).__name__ == "Delay"]
    rec = _one(nodes, edges, delay[0] if delay else lif, lif, "recurrence", ("Linear", "Affine"))
    L = nodes[lif]
    par = _neuron_params(lif, L, dict(graph.metadata or {}))
    tau_ms, n, w_scale = par["tau_ms"], par["tau_ms"].size, par["w_in"]
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
    dt_ms = par["dt_s"] * 1e3
    return NIRNetwork(tau_m_ms=tau_ms, v_th_mV=np.asarray(L.v_threshold, np.float64) * np.ones(n),
                      v_reset_mV=v_reset, mu_dc_mV=w_scale * bias * tau_ms / dt_ms, w_in=w_scale[:, None] * W_in,
                      w_rec=w_scale[:, None] * W_rec, delay_ms=delay_ms, dt_ms=dt_ms, readout=readout,
                      metadata=dict(graph.metadata or {}), tau_syn_ms=par["tau_syn_ms"])
