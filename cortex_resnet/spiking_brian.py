"""Brian2 objects from a :class:`~cortex_resnet.spiking_build.SpikingPlan`, and the runtime engine.

One ``NeuronGroup`` holds every neuron of every replica (parameters are
per-neuron variables, so E and I neurons differ without separate groups);
two ``Synapses`` objects carry the E and I pathways; input is a 2-D
``TimedArray`` (time x pool) read as Poisson rates by a ``run_regularly``
operation (``poisson()`` counts per step) or as a current. Every numerical
value is a variable, never a constant in the code, so the C++ standalone
build can be rerun with other values (:mod:`cortex_resnet.spiking_cache`).

Equations (``v`` in volt; ``xi`` white noise; ``(unless refractory)`` clamps
``v`` at the reset for ``t_ref``)::

    dv/dt = (v_rest - v + mu_dc + <synaptic input> + <input current>) / tau_m
            + sigma xi tau_m^-1/2

with ``<synaptic input>`` = ``I_e - I_i`` (exponential currents),
``g_e (E_e - v) + g_i (E_i - v)`` (conductances) or nothing (delta synapses:
spikes move ``v`` directly, and not while the neuron is refractory).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .spiking_build import SpikingPlan

__all__ = ["RawRun", "equations", "construct", "RuntimeEngine", "runtime_target", "run_values"]


@dataclass
class RawRun:
    """Output of one network run: spikes (global neuron index, ms) and traces (ms, mV)."""

    spike_i: np.ndarray
    spike_t_ms: np.ndarray
    trace_t_ms: np.ndarray
    trace_v_mV: np.ndarray  # (T, n_traces)


def equations(plan: SpikingPlan) -> dict[str, Any]:
    """Model strings for the neuron group, the synapses and the input (see module docstring)."""
    syn = plan.sspec.synapse
    kind = plan.synapse_kind
    params = ["tau_m : second (constant)", "v_rest : volt (constant)", "v_th : volt (constant)",
              "v_reset : volt (constant)", "t_ref : second (constant)", "mu_dc : volt (constant)"]
    num = "v_rest - v + mu_dc"
    extra = []
    targets = {}
    for s, tau, sign in (("e", syn.tau_e_ms, "+"), ("i", syn.tau_i_ms, "-")):
        if syn.kind == "conductance":
            num += f" + g_{s}*(E_{s} - v)"
            extra.append(f"dg_{s}/dt = -g_{s}/tau_{s} : 1")
            params += [f"tau_{s} : second (constant, shared)", f"E_{s} : volt (constant, shared)"]
            targets[s] = (f"g_{s}_post += w", "1")
        elif tau > 0:
            num += f" {sign} I_{s}"
            extra.append(f"dI_{s}/dt = -I_{s}/tau_{s} : volt")
            params.append(f"tau_{s} : second (constant, shared)")
            targets[s] = (f"I_{s}_post += w", "volt")
        else:
            targets[s] = (f"v_post {sign}= w*int(not_refractory_post)", "volt")
    input_code = None
    if plan.input_values is not None:
        params.append("col : integer (constant)")
        if plan.sspec.input.mode == "current":
            num += " + I_in(t, col)"
        else:
            unit = "1" if syn.kind == "conductance" else "volt"
            params.append(f"w_in : {unit} (constant)")
            count = "poisson(I_in(t, col)*dt)"
            if syn.kind == "conductance":
                input_code = f"g_e += w_in*{count}"
            elif syn.tau_e_ms > 0:
                input_code = f"I_e += w_in*{count}"
            else:
                input_code = f"v += w_in*{count}*int(not_refractory)"
    noise = ""
    if plan.has_noise:
        params.append("sigma : volt (constant)")
        noise = " + sigma*xi*tau_m**-0.5"
    model = "\n".join([f"dv/dt = ({num})/tau_m{noise} : volt (unless refractory)"] + extra + params)
    return {"model": model, "synapses": targets, "input": input_code, "kind": kind}


def run_values(plan: SpikingPlan, recurrent: bool = True) -> dict[str, np.ndarray | float]:
    """Every run-time value in SI units, keyed ``object.variable`` (tiled over replicas)."""
    B = plan.batch
    nr = plan.neuron
    tile = lambda a: np.tile(np.asarray(a, np.float64), B)  # noqa: E731
    syn = plan.sspec.synapse
    vals: dict[str, np.ndarray | float] = {
        "neurons.tau_m": tile(nr["tau_m_ms"]) * 1e-3, "neurons.v_rest": tile(nr["v_rest_mV"]) * 1e-3,
        "neurons.v_th": tile(nr["v_th_mV"]) * 1e-3, "neurons.v_reset": tile(nr["v_reset_mV"]) * 1e-3,
        "neurons.t_ref": tile(nr["t_ref_ms"]) * 1e-3, "neurons.mu_dc": tile(nr["mu_dc_mV"]) * 1e-3,
        "neurons.v": np.asarray(plan.v0_mV, np.float64).ravel() * 1e-3,
    }
    if plan.has_noise:
        vals["neurons.sigma"] = tile(nr["sigma_mV"]) * 1e-3
    if syn.kind == "conductance":
        vals.update({"neurons.tau_e": syn.tau_e_ms * 1e-3, "neurons.tau_i": syn.tau_i_ms * 1e-3,
                     "neurons.E_e": syn.E_e_mV * 1e-3, "neurons.E_i": syn.E_i_mV * 1e-3})
    else:
        if syn.tau_e_ms > 0:
            vals["neurons.tau_e"] = syn.tau_e_ms * 1e-3
        if syn.tau_i_ms > 0:
            vals["neurons.tau_i"] = syn.tau_i_ms * 1e-3
    si = 1.0 if syn.kind == "conductance" else 1e-3  # mV -> V for current/delta weights
    if plan.input_values is not None:
        n_units = plan.circuit.n_units
        vals["neurons.col"] = (np.arange(B)[:, None] * n_units + plan.unit_of[None, :]).ravel().astype(np.int32)
        if plan.sspec.input.mode == "poisson":
            vals["neurons.w_in"] = tile(nr["w_in"]) * si
            vals["input_ta.values"] = np.asarray(plan.input_values, np.float64)
        else:
            vals["input_ta.values"] = np.asarray(plan.input_values, np.float64) * 1e-3
    for pop, (pre, _, w) in plan.synapses.items():
        if pre.size:
            vals[f"syn_{pop}.w"] = (np.tile(w, B) * si) if recurrent else 0.0
    return vals


def construct(plan: SpikingPlan, b2: Any, *, placeholder: bool = False) -> dict[str, Any]:
    """Create the Brian2 objects (no values set when ``placeholder``: standalone builds)."""
    eq = equations(plan)
    clock = b2.Clock(dt=plan.dt_ms * b2.ms, name="cortex_clock")
    ns: dict[str, Any] = {}
    if plan.input_values is not None:
        unit = b2.Hz if plan.sspec.input.mode == "poisson" else b2.volt
        values = np.zeros(plan.input_values.shape) if placeholder else run_values(plan)["input_ta.values"]
        ns["I_in"] = b2.TimedArray(values * unit, dt=plan.stim_dt_ms * b2.ms, name="input_ta")
    G = b2.NeuronGroup(plan.n_total, eq["model"], threshold="v > v_th", reset="v = v_reset",
                       refractory="t_ref", method=plan.sspec.method, namespace=ns, clock=clock,
                       name="neurons")
    objs: dict[str, Any] = {"neurons": G, "clock": clock}
    if eq["input"] is not None:
        objs["input"] = G.run_regularly(eq["input"], when="start", name="neurons_input")
    offs = (np.arange(plan.batch) * plan.n)[:, None]
    for pop, s in (("E", "e"), ("I", "i")):
        pre, post, _ = plan.synapses[pop]
        if not pre.size:
            continue
        on_pre, unit = eq["synapses"][s]
        S = b2.Synapses(G, G, f"w : {unit}", on_pre=on_pre, delay=plan.sspec.synapse.delay_ms * b2.ms,
                        clock=clock, name=f"syn_{pop}")
        S.connect(i=(pre[None] + offs).ravel(), j=(post[None] + offs).ravel())
        objs[f"syn_{pop}"] = S
    objs["spikes"] = b2.SpikeMonitor(G, record=True, name="spikes")
    if plan.trace_neurons.size:
        objs["traces"] = b2.StateMonitor(G, "v", record=plan.trace_neurons,
                                         dt=plan.dt_ms * plan.sspec.monitor.trace_stride * b2.ms, name="traces")
    if not placeholder:
        for key, val in run_values(plan).items():
            obj, var = key.split(".")
            if obj in objs and var != "values":
                setattr(objs[obj], var + "_", val)  # SI values, no unit check
    objs["network"] = b2.Network([o for k, o in objs.items() if k not in ("clock", "input")])
    return objs


_TARGET_CACHE: dict[str, str] = {}


def runtime_target(preferred: str = "cython") -> str:
    """``cython`` when a compiler works, else ``numpy`` with a warning (checked once)."""
    if preferred == "numpy":
        return "numpy"
    if "target" not in _TARGET_CACHE:
        from brian2.codegen.runtime.cython_rt import CythonCodeObject

        _TARGET_CACHE["target"] = "cython" if CythonCodeObject.is_available() else "numpy"
    if _TARGET_CACHE["target"] == "numpy":
        warnings.warn("no working C/C++ compiler for Cython: the spiking backend falls back to Brian2's "
                      "numpy target, which is much slower (install a compiler, e.g. gcc, to speed it up)",
                      RuntimeWarning, stacklevel=2)
    return _TARGET_CACHE["target"]


class RuntimeEngine:
    """Brian2 runtime mode (Cython, else NumPy): build once, run with and without recurrence.

    ``compile_s`` is the time of the first (zero-length) run, which generates
    and compiles the code (cached on disk by Brian2 across processes).
    """

    def __init__(self, plan: SpikingPlan, target: str = "cython"):
        import brian2 as b2

        from brian2.devices.device import get_device, set_device

        self.b2, self.plan = b2, plan
        if type(get_device()).__name__ != "RuntimeDevice":
            set_device("runtime")
        self.target = runtime_target(target)
        b2.prefs.codegen.target = self.target
        t0 = time.perf_counter()
        self.objs = construct(plan, b2)
        self.net = self.objs["network"]
        self.net.store("init")
        self.net.run(0 * b2.ms, namespace={})
        self.compile_s = time.perf_counter() - t0
        self.runs = 0

    def run(self, recurrent: bool = True, seed: int = 0) -> RawRun:
        """Run from the stored initial state; ``recurrent=False`` switches the synapses off
        (the same input spike trains: the random stream is consumed identically)."""
        b2 = self.b2
        b2.prefs.codegen.target = self.target
        self.net.restore("init")
        for key in ("syn_E", "syn_I"):
            if key in self.objs:
                self.objs[key].active = recurrent
        b2.seed(int(seed) % (2**32))
        self.net.run(self.plan.duration_ms * b2.ms, namespace={})
        self.runs += 1
        sp = self.objs["spikes"]
        out_i = np.asarray(sp.i[:], dtype=np.int64)
        out_t = np.asarray(sp.t_[:], dtype=np.float64) * 1e3
        if "traces" in self.objs:
            tr = self.objs["traces"]
            tt, tv = np.asarray(tr.t_[:]) * 1e3, np.asarray(tr.v_[:]).T * 1e3
        else:
            tt, tv = np.zeros(0), np.zeros((0, 0))
        return RawRun(out_i, out_t, tt, tv)
