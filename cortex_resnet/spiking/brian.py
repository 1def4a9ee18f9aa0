"""Brian2 objects from a :class:`~cortex_resnet.spiking.build.SpikingPlan`, and the runtime engine.

One ``NeuronGroup`` holds every neuron of every replica (parameters are
per-neuron variables, so E and I neurons differ without separate groups);
two ``Synapses`` objects carry the E and I pathways; input is a 2-D
``TimedArray`` (time x pool) read as Poisson rates by a ``run_regularly``
operation (``poisson()`` counts per step) or as a current. Every numerical
value is a variable, never a constant in the code, so the C++ standalone
build can be rerun with other values (:mod:`cortex_resnet.spiking.cache`).

Equations (``v`` in volt; ``xi`` white noise; ``(unless refractory)`` clamps
``v`` at the reset for ``t_ref``)::

    dv/dt = (v_rest - v + mu_dc + <synaptic input> + <input current>) / tau_m
            + sigma xi tau_m^-1/2

with ``<synaptic input>`` = ``I_e - I_i`` (exponential currents),
``g_e (E_e - v) + g_i (E_i - v)`` (conductances) or nothing (delta synapses:
spikes move ``v`` directly, and not while the neuron is refractory).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from cortex_resnet.spiking.build import SpikingPlan

__all__ = ["RawRun", "equations", "construct", "RuntimeEngine", "runtime_target", "run_values",
           "brian2_global_state"]


@contextlib.contextmanager
def brian2_global_state():
    """Undo, on exit, what importing and running Brian2 changes outside Brian2.

    ``import brian2`` installs ``sys.excepthook`` (every later uncaught error of the
    user's script would be reported as a possible Brian 2 bug), routes Python
    warnings into logging (``logging.captureWarnings(True)``) and adds its console
    handler to the ``py.warnings`` logger. All three are restored to what they were.
    """
    hook = sys.excepthook
    showwarning = warnings.showwarning
    pyw = logging.getLogger("py.warnings")
    handlers, propagate = list(pyw.handlers), pyw.propagate
    try:
        yield
    finally:
        sys.excepthook = hook
        if warnings.showwarning is not showwarning:
            logging.captureWarnings(False)  # resets logging's own record of the hook
            warnings.showwarning = showwarning
        for h in list(pyw.handlers):
            if h not in handlers:
                pyw.removeHandler(h)
        pyw.propagate = propagate


@dataclass
class RawRun:
    """Output of one network run: spikes (global neuron index, ms) and traces (ms, mV)."""

    spike_i: np.ndarray
    spike_t_ms: np.ndarray
    trace_t_ms: np.ndarray
    trace_v_mV: np.ndarray  # (T, n_traces)

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return f"RawRun({self.spike_i.size} spikes, {self.trace_t_ms.size} trace samples)"


def equations(plan: SpikingPlan) -> dict[str, Any]:
    """Model strings for the neuron group, the synapses and the input (see module docstring)."""
    syn = plan.sspec.synapse
    kind = plan.synapse_kind
    flag = "(constant, shared)" if plan.shared_params else "(constant)"
    params = [f"tau_m : second {flag}", f"v_rest : volt {flag}", f"v_th : volt {flag}",
              f"v_reset : volt {flag}", f"t_ref : second {flag}"]
    num = "v_rest - v"
    if plan.has_dc:
        params.append("mu_dc : volt (constant)")
        num += " + mu_dc"
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
        lookup = "I_in(t)" if plan.uniform_input else "I_in(t, col)"
        if not plan.uniform_input:
            params.append("col : integer (constant)")
        if plan.sspec.input.mode == "current":
            num += f" + {lookup}"
        else:
            unit = "1" if syn.kind == "conductance" else "volt"
            params.append(f"w_in : {unit} {flag}")
            count = f"poisson({lookup}*dt)"
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
    par = (lambda a: float(np.asarray(a)[0])) if plan.shared_params else tile  # noqa: E731
    syn = plan.sspec.synapse
    vals: dict[str, np.ndarray | float] = {
        "neurons.tau_m": par(nr["tau_m_ms"]) * 1e-3, "neurons.v_rest": par(nr["v_rest_mV"]) * 1e-3,
        "neurons.v_th": par(nr["v_th_mV"]) * 1e-3, "neurons.v_reset": par(nr["v_reset_mV"]) * 1e-3,
        "neurons.t_ref": par(nr["t_ref_ms"]) * 1e-3,
        "neurons.v": np.asarray(plan.v0_mV, np.float64).ravel() * 1e-3,
    }
    if plan.has_dc:
        vals["neurons.mu_dc"] = tile(nr["mu_dc_mV"]) * 1e-3
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
        values = np.asarray(plan.input_values, np.float64)
        if plan.uniform_input:
            values = values[:, 0]
        else:
            vals["neurons.col"] = (np.arange(B)[:, None] * n_units + plan.unit_of[None, :]).ravel().astype(np.int32)
        if plan.sspec.input.mode == "poisson":
            vals["neurons.w_in"] = par(nr["w_in"]) * si
            vals["input_ta.values"] = values
        else:
            vals["input_ta.values"] = values * 1e-3
    for pop, (pre, _, w) in plan.synapses.items():
        if pre.size:
            if not recurrent:
                vals[f"syn_{pop}.w"] = 0.0
            else:
                vals[f"syn_{pop}.w"] = float(w[0]) * si if plan.shared_weight(pop) else np.tile(w, B) * si
    return vals


def construct(plan: SpikingPlan, b2: Any, *, placeholder: bool = False) -> dict[str, Any]:
    """Create the Brian2 objects (no values set when ``placeholder``: standalone builds)."""
    eq = equations(plan)
    rv = run_values(plan)
    clock = b2.Clock(dt=plan.dt_ms * b2.ms, name="cortex_clock")
    ns: dict[str, Any] = {}
    if plan.input_values is not None:
        unit = b2.Hz if plan.sspec.input.mode == "poisson" else b2.volt
        values = rv["input_ta.values"]
        ns["I_in"] = b2.TimedArray((np.zeros_like(values) if placeholder else values) * unit,
                                   dt=plan.stim_dt_ms * b2.ms, name="input_ta")
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
        model = f"w : {unit} (constant, shared)" if plan.shared_weight(pop) else f"w : {unit}"
        delay = None if plan.delays_ms is not None else plan.sspec.synapse.delay_ms * b2.ms
        S = b2.Synapses(G, G, model, on_pre=on_pre, delay=delay, clock=clock, name=f"syn_{pop}")
        S.connect(i=(pre[None] + offs).ravel(), j=(post[None] + offs).ravel())
        if plan.delays_ms is not None:  # structure: set in standalone builds too
            S.delay_ = np.tile(plan.delays_ms[pop], plan.batch) * 1e-3
        objs[f"syn_{pop}"] = S
    objs["spikes"] = b2.SpikeMonitor(G, record=True, name="spikes")
    if plan.trace_neurons.size:
        if _traces_on_main_clock(plan):
            objs["traces"] = b2.StateMonitor(G, "v", record=plan.trace_neurons, clock=clock, name="traces")
        else:
            objs["traces"] = b2.StateMonitor(G, "v", record=plan.trace_neurons,
                                             dt=plan.dt_ms * plan.sspec.monitor.trace_stride * b2.ms, name="traces")
    if not placeholder:
        for key, val in rv.items():
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
        from brian2.codegen.runtime.cython_rt import CythonCodeObject  # deferred: slow, sets global hooks

        _TARGET_CACHE["target"] = "cython" if CythonCodeObject.is_available() else "numpy"
    if _TARGET_CACHE["target"] == "numpy":
        warnings.warn("no working C/C++ compiler for Cython: the spiking backend falls back to Brian2's "
                      "numpy target, which is much slower (install a compiler, e.g. gcc, to speed it up)",
                      RuntimeWarning, stacklevel=2)
    return _TARGET_CACHE["target"]


class RuntimeEngine:
    """Brian2 runtime mode (Cython, else NumPy): build once, run with and without recurrence.

    Every run is one ``Network.run`` (as in a hand-written script). ``compile_s`` is
    the time the first run spent before its first time step (code generation and,
    on a cold cache, compilation; Brian2 caches compiled code on disk across
    processes); ``last_run_s`` the simulation time of the latest run after that.
    """

    def __init__(self, plan: SpikingPlan, target: str = "cython"):
        import brian2 as b2  # deferred: slow, sets global hooks

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
        self.build_s = time.perf_counter() - t0
        self.compile_s = 0.0
        self.last_run_s = 0.0
        self.runs = 0

    def run(self, recurrent: bool = True, seed: int = 0, progress=None) -> RawRun:
        """Run from the initial state; ``recurrent=False`` switches the synapses off
        (the same input spike trains: the random stream is consumed identically).
        ``progress``: optional callback with the completed fraction (every ~0.5 s)."""
        b2 = self.b2
        b2.prefs.codegen.target = self.target
        if self.runs:
            self.net.restore("init")
        for key in ("syn_E", "syn_I"):
            if key in self.objs:
                self.objs[key].active = recurrent
        b2.seed(int(seed) % (2**32))
        marks: list[float] = []

        def report(elapsed, completed, start, duration):
            marks.append(time.perf_counter())
            if progress is not None:
                progress(float(completed))

        t0 = time.perf_counter()
        self.net.run(self.plan.duration_ms * b2.ms, namespace={}, report=report,
                     report_period=(0.5 if progress is not None else 1e9) * b2.second)
        if progress is not None:
            progress(1.0)
        t1 = time.perf_counter()
        started = marks[0] if marks else t0
        if self.runs == 0:
            self.compile_s = started - t0
        self.last_run_s = t1 - started
        self.runs += 1
        sp = self.objs["spikes"]
        out_i = np.asarray(sp.i[:], dtype=np.int64)
        out_t = np.asarray(sp.t_[:], dtype=np.float64) * 1e3
        if "traces" in self.objs:
            tr = self.objs["traces"]
            tt, tv = np.asarray(tr.t_[:]) * 1e3, np.asarray(tr.v_[:]).T * 1e3
            step = trace_every(self.plan)
            tt, tv = tt[::step], tv[::step]
        else:
            tt, tv = np.zeros(0), np.zeros((0, 0))
        return RawRun(out_i, out_t, tt, tv)

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return f"RuntimeEngine(Brian2 {self.target}: {self.plan.n} neurons x batch {self.plan.batch})"


def trace_every(plan: SpikingPlan) -> int:
    """Recorded steps to skip when traces share the network's clock (see :func:`construct`)."""
    return plan.sspec.monitor.trace_stride if _traces_on_main_clock(plan) else 1


def _traces_on_main_clock(plan: SpikingPlan) -> bool:
    """Small trace sets are recorded every step and thinned afterwards: one clock keeps
    Brian2's fast single-clock loop (a second clock costs Python work every step)."""
    n_steps = plan.duration_ms / plan.dt_ms
    return plan.trace_neurons.size * n_steps <= 4e6
