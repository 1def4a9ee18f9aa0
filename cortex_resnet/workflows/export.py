"""A circuit's spiking network as a NIR graph (Neuromorphic Intermediate Representation), and back.

    graph = to_nir("models/lif_ei.toml")             # or a Circuit, or a `cortex-resnet train` run folder
    write_nir(graph, "lif_ei.nir")                    # nir.write, atomically; nir.read(...) reads it
    net = from_nir(graph)                             # NIRNetwork: the parameters in ms and mV

**What is exported** -- the network :mod:`cortex_resnet.spiking.build` makes of the circuit (one
pool of ``pool_size`` neurons per rate unit, its drawn synapses, the gain scaling at the
operating input), as the graph ::

    input -> input_projection (Linear) -> lif (LIF | CubaLIF) -> output   (or -> readout (Linear) -> output)
                                           lif -> [delay (Delay)] -> recurrence (Affine) -> lif

* ``lif``: ``nir.LIF`` for delta synapses (``spiking.synapse.tau_e_ms = tau_i_ms = 0``), ``nir.CubaLIF``
  for exponential current synapses with one time constant (``tau_e_ms = tau_i_ms > 0`` -> ``tau_syn``,
  ``w_in = 1``); potentials relative to rest (``v_leak = 0``, ``v_threshold = v_th - v_rest``,
  ``v_reset = v_reset - v_rest``), time constants in seconds, ``r = tau_m / dt`` (the discrete
  convention snnTorch and Norse use: an input of 1 for one step through a weight ``w`` moves ``v``
  by ``w`` mV (LIF), or adds ``w dt / tau_syn`` to the current ``I``, which Euler adds to ``v`` every
  step (CubaLIF): a PSP of the same area ``w tau_m``). Other synapses are refused with an error naming
  the field: conductance synapses (NIR has no conductance neuron) and ``tau_e_ms != tau_i_ms``
  (CubaLIF has one ``tau_syn`` per *post*-synaptic neuron; E and I synapses share it);
* ``recurrence``: ``nir.Affine``, weight ``W[post, pre]`` in mV per spike (E positive, I negative,
  multapses summed; exponential synapses: the delta-equivalent jump ``w``, our engine's current
  increment being ``w tau_m / tau_syn``), bias = the constant drive per step ``dt / tau_m x mu_dc``
  (its steady potential ``r x bias`` is ``mu_dc`` mV);
* ``input_projection``: Poisson input (``spiking.input.mode = "poisson"``): one input spike channel
  per neuron, ``diag(w_in)`` mV per spike (the rates, Hz, of a stimulus ``u`` are in the metadata
  ``input_rate_hz_per_u`` / ``input_rate_hz_offset``, clipped at 0 Hz); current input: the
  ``n_inputs`` signals ``u`` with weight ``dt / tau_m x k B`` (``k`` the gain scaling);
* ``delay``: the synaptic delay as ``nir.Delay`` (seconds) when it is > 0 (``drop_delays=True``
  leaves it out for consumers without Delay, e.g. snnTorch: an approximation);
* ``readout`` (trained runs): the trained readout on E-pool rates as a ``nir.Linear`` on spikes:
  ``logits = sum over a window of readout(s_t) / window_s + readout_bias`` (metadata).

**Approximated or left out** (listed in the graph's metadata ``approximated``): the absolute
refractory period (NIR's LIF and CubaLIF have none), white background noise, the initial potentials
(NIR starts at rest), the Poisson coding itself (the graph takes spike trains); with CubaLIF the DC
drive (``recurrence`` bias) and a current input enter through the synaptic filter (our engine adds
them to ``v`` directly): the same steady state, their onset smoothed over ``tau_syn``. NIR describes
continuous time: consumers discretise it themselves (snnTorch and Norse: forward Euler, our
``spiking.method = "euler"``). Graph metadata also holds ``dt_s``, ``written_by``, the circuit's spec
(JSON), ``tau_syn_ms``, ``weights`` and ``convention`` (the units in words), ``neuron_unit`` and
``neuron_population``. Import: :mod:`cortex_resnet.workflows.nir_import`.
"""

from __future__ import annotations

import dataclasses
import json
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
from cortex_resnet.workflows.nir_import import NIR_NODES, NIRNetwork, _nir, from_nir, read_nir

__all__ = ["NIR_NODES", "NIRNetwork", "from_nir", "plan_to_nir", "read_nir", "to_nir", "write_nir"]

WRITTEN_BY = "cortex-resnet (cortex_resnet.workflows.export)"
CONVENTION = ("r = tau / dt: an input of 1 for one step through weight w moves v by w (mV)",
              "r = tau_mem / dt, w_in = 1: an input of 1 for one step through weight w adds w dt / tau_syn "
              "to I, which (forward Euler) adds I to v each step: a PSP of area w tau_mem (mV s)")
WEIGHTS = ("mV per spike (the jump of v)", "mV per spike, delta-equivalent: the PSP has the area of a w mV jump "
           "(w tau_m mV ms); our engine's current increment is w tau_m / tau_syn")


def _tau_syn_ms(plan: SpikingPlan) -> float:
    """The synaptic time constant of the export: 0 (delta synapses: ``LIF``) or the one ``tau_e_ms =
    tau_i_ms`` of exponential current synapses (``CubaLIF``); other synapses are refused."""
    s = plan.sspec.synapse
    got = f"{s.kind} (tau_e_ms = {s.tau_e_ms}, tau_i_ms = {s.tau_i_ms})"
    if s.kind != "current":
        raise SpecError("spiking.synapse.kind", got, "current synapses for a NIR export (NIR has no "
                        "conductance-based neuron)")
    if s.tau_e_ms != s.tau_i_ms:
        raise SpecError("spiking.synapse.tau_i_ms", got, "tau_i_ms = tau_e_ms for a NIR export: NIR's CubaLIF "
                        "has one synaptic time constant per neuron, and E and I synapses share the neuron")
    return float(s.tau_e_ms)


def _recurrent_matrix(plan: SpikingPlan, tau_syn_ms: float) -> np.ndarray:
    """``W[post, pre]`` in mV: delta jumps, or for exponential synapses the jump of equal PSP area
    (the engine's current increments ``w tau_m / tau_syn`` scaled back)."""
    W = np.zeros((plan.n, plan.n))
    for pop, sign in (("E", 1.0), ("I", -1.0)):
        pre, post, w = plan.synapses[pop]
        np.add.at(W, (post, pre), sign * w)
    if tau_syn_ms > 0:
        W *= tau_syn_ms / plan.neuron["tau_m_ms"][:, None]
    return W


def _input_projection(plan: SpikingPlan, tau_syn_ms: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """(weight, per-step drive it adds at u = 0 (mV per step), metadata) of the input."""
    nr, c = plan.neuron, plan.circuit
    step = plan.dt_ms / nr["tau_m_ms"]
    k = plan.mapping.k_unit[plan.unit_of]
    B, b = c.B[plan.unit_of], c.b[plan.unit_of]
    if plan.sspec.input.mode == "poisson":  # rate (Hz) = max(k (B u + b), 0) / (weight_mV tau_m 1e-3)
        per = (k / (plan.sspec.input.weight_mV * nr["tau_m_ms"] * 1e-3))[:, None]
        meta = {"input": "spikes, one Poisson train per neuron", "input_rate_hz_per_u": (per * B).tolist(),
                "input_rate_hz_offset": (per[:, 0] * b).tolist()}
        w_in = nr["w_in"] * (tau_syn_ms / nr["tau_m_ms"] if tau_syn_ms > 0 else 1.0)  # as the recurrence
        return np.diag(w_in), np.zeros(plan.n), meta
    return step[:, None] * k[:, None] * B, step * k * b, {"input": "currents u (n_inputs), per step"}


def _neuron_node(nir: Any, plan: SpikingPlan, tau_syn_ms: float) -> Any:
    """``nir.LIF`` (delta synapses) or ``nir.CubaLIF`` (exponential, ``tau_syn``) of the plan's neurons."""
    nr, n, dt_ms = plan.neuron, plan.n, plan.dt_ms
    rest = nr["v_rest_mV"]
    tau_s = nr["tau_m_ms"] * 1e-3
    common = {"r": nr["tau_m_ms"] / dt_ms, "v_leak": np.zeros(n), "v_threshold": nr["v_th_mV"] - rest,
              "v_reset": nr["v_reset_mV"] - rest}
    if tau_syn_ms > 0:
        return nir.CubaLIF(tau_syn=np.full(n, tau_syn_ms * 1e-3), tau_mem=tau_s, w_in=np.ones(n), **common)
    return nir.LIF(tau=tau_s, **common)


def plan_to_nir(plan: SpikingPlan, *, drop_delays: bool = False, readout: np.ndarray | None = None,
                readout_bias: np.ndarray | None = None, metadata: dict | None = None) -> Any:
    """The NIR graph of a spiking plan (module docstring). ``readout``: (n_classes, n) on spikes."""
    nir = _nir()
    tau_syn_ms = _tau_syn_ms(plan)
    nr, n, dt_s = plan.neuron, plan.n, plan.dt_ms * 1e-3
    w_in, drive0, meta_in = _input_projection(plan, tau_syn_ms)
    bias = plan.dt_ms / nr["tau_m_ms"] * nr["mu_dc_mV"] + drive0
    nodes = {"input": nir.Input({"input": np.array([w_in.shape[1]])}),
             "input_projection": nir.Linear(w_in), "lif": _neuron_node(nir, plan, tau_syn_ms),
             "recurrence": nir.Affine(_recurrent_matrix(plan, tau_syn_ms), bias)}
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
    approximated = ["refractory period (t_ref_ms, in the metadata) dropped: NIR's LIF and CubaLIF have none",
                    "initial potentials: NIR starts at rest", "Poisson coding: the graph takes spike trains"]
    if tau_syn_ms > 0:
        approximated.append("the DC drive (recurrence bias) and current input pass CubaLIF's synaptic filter "
                            f"(our engine adds them to v directly): same steady state, onset smoothed over "
                            f"tau_syn = {tau_syn_ms} ms")
    if plan.has_noise:
        approximated.append("white background noise (sigma_mV in the metadata) dropped")
    if delay_ms > 0 and drop_delays:
        approximated.append(f"synaptic delay {delay_ms} ms dropped (drop_delays)")
    c = plan.circuit
    meta = {"written_by": WRITTEN_BY, "circuit": c.spec.name, "spec": c.spec.to_json(), "dt_s": dt_s,
            "convention": CONVENTION[tau_syn_ms > 0], "potentials": "mV relative to v_rest_mV",
            "v_rest_mV": nr["v_rest_mV"].tolist(), "t_ref_ms": nr["t_ref_ms"].tolist(),
            "sigma_mV": nr["sigma_mV"].tolist(), "synaptic_delay_ms": delay_ms, "approximated": approximated,
            "tau_syn_ms": tau_syn_ms, "weights": WEIGHTS[tau_syn_ms > 0],
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
