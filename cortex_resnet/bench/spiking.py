"""Spiking-backend benchmark (issue 3, "Performance"): ``cortex-resnet bench spiking``.

The Vogels-Abbott COBA network of ``models/vogels_abbott_coba.toml`` (4000
conductance-based LIF neurons, p = 0.02, 50 ms Poisson kick) for 1 s of
biological time, side by side in one process with :func:`handwritten_coba`,
the same network written the way a Brian2 user would (one ``NeuronGroup``,
two ``Synapses``, a ``SpikeMonitor`` and a ``StateMonitor`` of the same four
membrane potentials every 1 ms that our engine records, constants in the namespace):

(a) ``runtime_vs_handwritten``: Brian2 runtime mode (Cython), wall time of
    ``Network.run`` (code generation from the warm cache + simulation) in our
    engine (one run, no decomposition: the same work) / in the script; both after
    a warm-up that compiled the code. Best of ``repeats`` each, alternating.
    Goal <= 1.1. The details also give the time from start of run to spikes in hand
    (``total_s``: network construction, synapses, run, statistics).
(b) ``standalone_vs_handwritten``: C++ standalone, the compiled binary's run time,
    ours / the script's (best of ``repeats``). Goal <= 1.1.
(c) ``cached_standalone_rerun``: our second standalone run of the same structure
    with other weights (all couplings +5 %) and another seed, total time / the first
    run's total (which built and compiled the project). Goal <= 0.2.
(d) ``handwritten_changed_weight_rerun`` (information): the script rerun in its
    build folder with a changed excitatory weight -- a constant in its code, so
    Brian2 regenerates and recompiles -- over its first build.

``quick=True``: 200 ms, one repetition, runtime mode only (a smoke run).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from cortex_resnet.catalog import models_dir
from cortex_resnet.bench import BenchResult
from cortex_resnet.spiking.simulator import simulate_spiking
from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.model.spec import load_spec

__all__ = ["run", "handwritten_coba", "COBA_MODEL"]

COBA_MODEL = models_dir() / "vogels_abbott_coba.toml"


def _log(msg: str) -> None:
    print(f"[bench spiking] {msg}", file=sys.stderr, flush=True)


def handwritten_coba(duration_ms: float = 1000.0, *, seed: int = 0, we: float = 0.6,
                     standalone_dir: str | None = None) -> dict[str, Any]:
    """The COBA network as a Brian2 user writes it (Brette et al. 2007, benchmark 1, as in
    Brian2's own version, plus the model file's 50 ms Poisson kick).

    ``standalone_dir``: build and run as C++ standalone in this folder (else runtime mode).
    Returns the spike count, rates and timings (s): ``build_s`` (objects, synapses),
    ``run_s`` (``Network.run``; in standalone: the binary), ``total_s``.
    """
    import brian2 as b2  # deferred: Brian2 installs a signal handler at import; only this bench needs it

    t0 = time.perf_counter()
    _coba_device(b2, standalone_dir)
    b2.seed(seed)
    net, M = _coba_network(b2)
    t1 = time.perf_counter()
    marks: list[float] = []
    ns = _coba_namespace(b2, we)
    if standalone_dir is not None:
        net.run(duration_ms * b2.ms, namespace=ns)
        b2.device.build(directory=standalone_dir, compile=True, run=True, with_output=False)
        run_s = sim_s = b2.device.timers["run_binary"]
    else:  # the report callback marks the end of code generation (start of the first step)
        net.run(duration_ms * b2.ms, namespace=ns, report=lambda *a: marks.append(time.perf_counter()),
                report_period=1e9 * b2.second)
        run_s = time.perf_counter() - t1
        sim_s = time.perf_counter() - marks[0]
    i = np.asarray(M.i[:])
    total = time.perf_counter() - t0
    out = {"n_spikes": int(i.size), "rate_E_hz": float((i < 3200).sum() / 3200 / (duration_ms * 1e-3)),
           "rate_I_hz": float((i >= 3200).sum() / 800 / (duration_ms * 1e-3)), "build_s": t1 - t0,
           "run_s": float(run_s), "sim_s": float(sim_s), "total_s": total}
    if standalone_dir is not None:
        out["make_s"] = b2.device.timers["compile"]["make"]
        b2.set_device("runtime")
        b2.devices.device.all_devices["cpp_standalone"].reinit()
    return out


def _coba_device(b2: Any, standalone_dir: str | None) -> None:
    if standalone_dir is not None:
        b2.devices.device.all_devices["cpp_standalone"].reinit()
        b2.set_device("cpp_standalone", directory=standalone_dir, build_on_run=False)
    else:
        b2.set_device("runtime")
        b2.prefs.codegen.target = "cython"


def _coba_namespace(b2: Any, we: float) -> dict[str, Any]:
    """The script's constants (what its local variables would be)."""
    mV, ms, Hz = b2.mV, b2.ms, b2.Hz
    return {"taum": 20 * ms, "taue": 5 * ms, "taui": 10 * ms, "Vt": -50 * mV, "Vr": -60 * mV, "El": -60 * mV,
            "Ee": 0 * mV, "Ei": -80 * mV, "we": we,
            "wi": 6.7,  # 67 nS / 10 nS leak (we: 6 nS -> 0.6)
            "w_kick": 0.5 * 20.0 / (5.0 * 55.0),  # 0.5 mV-equivalent conductance jumps at -55 mV
            "kick": b2.TimedArray([2000.0, 0.0] * Hz, dt=50 * ms)}  # 20 mV of drive for 50 ms


def _coba_network(b2: Any) -> tuple[Any, Any]:
    """4000 LIF neurons (3200 E, 800 I), 2 % random connections; the network and its spike monitor."""
    ms = b2.ms
    eqs = """
    dv/dt = (ge*(Ee-v) + gi*(Ei-v) - (v-El))/taum : volt (unless refractory)
    dge/dt = -ge/taue : 1
    dgi/dt = -gi/taui : 1
    """
    # names: the ones a script gets in a fresh process (repeated calls here would count up
    # "neurongroup_1", ... and so change the generated code)
    P = b2.NeuronGroup(4000, eqs, threshold="v>Vt", reset="v = Vr", refractory=5 * ms, method="euler",
                       name="neurongroup")
    P.v = "(randn()*5 - 55)*mV"
    P.run_regularly("ge += w_kick*poisson(kick(t)*dt)", when="start", name="neurongroup_run_regularly")
    Ce = b2.Synapses(P, P, on_pre="ge += we", name="synapses")
    Ce.connect("i<3200", p=0.02)
    Ci = b2.Synapses(P, P, on_pre="gi += wi", name="synapses_1")
    Ci.connect("i>=3200", p=0.02)
    M = b2.SpikeMonitor(P, name="spikemonitor")
    V = b2.StateMonitor(P, "v", record=[0, 1600, 3200, 3600], dt=1 * ms, name="statemonitor")
    return b2.Network(P, Ce, Ci, M, V, P.contained_objects), M


def _ours(circuit, duration_ms: float, seed: int, **kw) -> dict[str, Any]:
    import json

    ds = simulate_spiking(circuit, duration_ms=duration_ms, seed=seed, decompose=kw.pop("decompose", False), **kw)
    st = json.loads(ds.attrs["spike_stats"])
    enc = ds.encoding
    sa = ds.attrs["device"] == "cpp_standalone"
    return {"n_spikes": int(ds.sizes["spike"]), "rate_E_hz_last_half": st["E"]["rate_hz"],
            # runtime: Network.run's wall time (code generation + simulation), as for the script;
            # standalone: the binary's run
            "run_s": float(enc["runtime_s"]) + (0.0 if sa else float(enc["compile_s"])),
            "sim_s": float(enc["runtime_s"]), "total_s": float(enc["total_s"]),
            "compile_s": float(enc["compile_s"]), "compiled": bool(enc["compiled"]), "device": ds.attrs["device"]}


def run(quick: bool = False) -> list[BenchResult]:
    """Measure (a)-(d) (module docstring) and return them with their goals."""
    duration = 200.0 if quick else 1000.0
    repeats = 1 if quick else 5
    spec = load_spec(COBA_MODEL)
    circuit = build_circuit(spec)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    _log(f"runtime mode: warm-up (compiles once), then {repeats} alternating repetitions of {duration:g} ms")
    handwritten_coba(duration, seed=0)
    _ours(circuit, duration, 0)
    hand, ours = [], []
    for k in range(repeats):
        hand.append(handwritten_coba(duration, seed=k + 1))
        ours.append(_ours(circuit, duration, k + 1))
    ratio_rt = min(o["run_s"] for o in ours) / min(h["run_s"] for h in hand)
    results = [BenchResult(
        "runtime_vs_handwritten", ratio_rt, "x", "<= 1.1", ratio_rt <= 1.1,
        {"ours_run_s": [o["run_s"] for o in ours], "handwritten_run_s": [h["run_s"] for h in hand],
         "ours_sim_s": [o["sim_s"] for o in ours], "handwritten_sim_s": [h["sim_s"] for h in hand],
         "ours_total_s": [o["total_s"] for o in ours], "handwritten_total_s": [h["total_s"] for h in hand],
         "ours": ours[-1], "handwritten": hand[-1], "duration_ms": duration, "load_average": load})]
    _log(f"runtime: ours/handwritten = {ratio_rt:.3f}")
    if quick:
        return results
    return results + _standalone(spec, circuit, duration)


def _standalone(spec: Any, circuit: Any, duration: float) -> list[BenchResult]:
    """(b)-(d): C++ standalone, ours vs the hand-written script, and our cached rerun."""
    results: list[BenchResult] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench_spiking_"))
    try:
        _log("standalone: hand-written script, first build")
        h_first = handwritten_coba(duration, seed=1, standalone_dir=str(tmp / "handwritten"))
        _log("standalone: hand-written script, changed weight (recompiles)")
        h_changed = handwritten_coba(duration, seed=1, we=0.63, standalone_dir=str(tmp / "handwritten"))
        _log("standalone: ours, first run (builds the structure)")
        o_first = _ours(circuit, duration, 1, standalone=True, cache_dir=tmp / "cache")
        cn = spec.connectivity
        other = build_circuit(spec.replace(**{f"connectivity.{k}": 1.05 * getattr(cn, k)
                                              for k in ("J_EE", "J_IE", "J_EI", "J_II")}))
        _log("standalone: ours, rerun with other weights and seed (cached)")
        o_rerun = _ours(other, duration, 2, standalone=True, cache_dir=tmp / "cache")
        o_bin, h_bin = [o_rerun["run_s"]], [h_changed["run_s"], h_first["run_s"]]
        for k in range(3):
            o_bin.append(_ours(circuit, duration, 3 + k, standalone=True, cache_dir=tmp / "cache")["run_s"])
            h_bin.append(handwritten_coba(duration, seed=1, we=0.63,
                                          standalone_dir=str(tmp / "handwritten"))["run_s"])
        ratio_sa = min(o_bin) / min(h_bin)
        ratio_cache = o_rerun["total_s"] / o_first["total_s"]
        ratio_hand = h_changed["total_s"] / h_first["total_s"]
        results += [
            BenchResult("standalone_vs_handwritten", ratio_sa, "x", "<= 1.1", ratio_sa <= 1.1,
                        {"ours_binary_s": o_bin, "handwritten_binary_s": h_bin, "ours": o_first,
                         "handwritten": h_first}),
            BenchResult("cached_standalone_rerun", ratio_cache, "x of first run", "<= 0.2", ratio_cache <= 0.2,
                        {"first_total_s": o_first["total_s"], "first_compile_s": o_first["compile_s"],
                         "rerun_total_s": o_rerun["total_s"], "rerun_compiled": o_rerun["compiled"]}),
            BenchResult("handwritten_changed_weight_rerun", ratio_hand, "x of first build", "information", None,
                        {"first_total_s": h_first["total_s"], "changed_total_s": h_changed["total_s"],
                         "changed_make_s": h_changed["make_s"]}),
        ]
        _log(f"standalone: ours/handwritten binary = {ratio_sa:.3f}; cached rerun / first = {ratio_cache:.3f}; "
             f"hand-written changed-weight rebuild / first = {ratio_hand:.3f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return results
