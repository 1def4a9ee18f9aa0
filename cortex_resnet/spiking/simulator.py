"""Spiking backend (Brian2): run a circuit as pools of LIF neurons and decompose ``r = x + F(x)``.

    from cortex_resnet import load_model
    from cortex_resnet.spiking.simulator import simulate_spiking
    ds = simulate_spiking(load_model("models/vogels_abbott_coba.toml"), duration_ms=1000)
    ds["r"], ds["x"], ds["Fx"]           # binned pool rates, as the rate backend's
    ds["spike_time_ms"], ds["spike_neuron"]

How a circuit becomes a network: :mod:`cortex_resnet.model.spiking_spec` (the
``[spiking]`` table), :mod:`cortex_resnet.spiking.mapping` (gain scaling),
:mod:`cortex_resnet.spiking.build` (neurons, synapses, input),
:mod:`cortex_resnet.spiking.brian` (Brian2, runtime mode),
:mod:`cortex_resnet.spiking.cache` (C++ standalone, cached per structure).

**Decomposition.** ``x`` is a second run of the same network with the
recurrent synapses switched off and the *same* input spike trains and noise
(the same seed, and both runs draw the random numbers in the same order);
``Fx = r - x`` on the binned pool rates. With recurrence off in both runs
``Fx`` is exactly zero.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from importlib import import_module
from typing import Any

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from cortex_resnet.errors import ConvergenceError, UnstableCircuitError
from cortex_resnet.io.results import trajectory_dataset
from cortex_resnet.model.analysis import analyze
from cortex_resnet.model.circuit import Circuit
from cortex_resnet.model.spec import StimulusSpec
from cortex_resnet.model.stimulus import StimulusWarning, stimulus_warnings
from cortex_resnet.spiking.analysis import mean_rate_hz, population_state
from cortex_resnet.spiking.brian import RawRun, RuntimeEngine, brian2_global_state, runtime_target
from cortex_resnet.spiking.build import SpikingPlan, build_plan
from cortex_resnet.spiking.cache import StandaloneEngine
from cortex_resnet.spiking.meanfield import solve
from cortex_resnet.spiking.torch_engine import TorchEngine, check_engine

__all__ = ["simulate_spiking", "make_engine", "spiking_dataset", "spike_statistics", "spiking_summary",
           "cli_run", "run_attrs", "warn_stimulus"]


def check_finite(raw: RawRun, circuit: Circuit, what: str) -> None:
    """Stop with an explanation when a membrane potential became NaN/inf (numerical blow-up)."""
    v = raw.trace_v_mV
    if v.size and not np.all(np.isfinite(v)):
        t_bad, col = np.argwhere(~np.isfinite(v))[0]
        t_ms = float(raw.trace_t_ms[t_bad]) if raw.trace_t_ms.size > t_bad else float("nan")
        raise UnstableCircuitError(
            f"spiking {what}: a membrane potential became NaN/inf at t = {t_ms:.2f} ms (trace {int(col)}): "
            "the integration blew up. Lower the synaptic weights or the input, or reduce spiking.dt_ms; "
            f"the rate model of {circuit.spec.name!r} (cortex-resnet simulate --backend rate) reports max Re(eig).",
            time_ms=t_ms)


def make_engine(plan: SpikingPlan, *, standalone: bool = False, cache_dir: Any = None,
                target: str = "cython"):
    """Runtime engine (Cython/NumPy) or a cached C++ standalone build for ``plan``."""
    if standalone:
        if runtime_target(target) == "numpy":  # no compiler: warned; the numpy runtime instead
            return RuntimeEngine(plan, "numpy")
        return StandaloneEngine(plan, cache_dir)
    return RuntimeEngine(plan, target)


def _device_name(engine: Any) -> str:
    if hasattr(engine, "device_name"):  # the torch engine (spiking_torch)
        return engine.device_name
    return "cpp_standalone" if not isinstance(engine, RuntimeEngine) else f"runtime-{engine.target}"


def spike_statistics(plan: SpikingPlan, raw: RawRun, *, window: tuple[float, float] | None = None) -> dict:
    """Rates (Hz), CV of ISIs, synchrony and oscillation power per population, first stimulus of the
    batch, and the state (:func:`~cortex_resnet.spiking.analysis.classify_regime`).

    ``window``: ``(t0, t1)`` ms; default the last half of the run (the first half, with the
    start-up transient, is left out of every summary).
    """
    t0, t1 = window if window is not None else (0.5 * plan.duration_ms, plan.duration_ms)
    first = raw.spike_i < plan.n
    i, t = raw.spike_i[first], raw.spike_t_ms[first]
    out: dict[str, Any] = {"window_ms": [t0, t1]}
    t_ref = plan.neuron["t_ref_ms"]
    for pop, mask in (("E", plan.is_E), ("I", ~plan.is_E)):
        sel = mask[i]
        out[pop] = population_state(i[sel], t[sel], np.where(mask)[0], t0, t1,
                                    float(t_ref[mask].max()) if mask.any() else 0.0)
    if _named(plan.circuit):  # each named population on its own as well
        name_of = plan.circuit.unit_population[plan.unit_of]
        out["by_population"] = {}
        for pop in plan.circuit.population_names:
            mask = name_of == pop
            sel = mask[i]
            out["by_population"][pop] = population_state(i[sel], t[sel], np.where(mask)[0], t0, t1,
                                                         float(t_ref[mask][0]))
    rates_all = [mean_rate_hz(raw.spike_t_ms[(raw.spike_i // plan.n == b) & plan.is_E[raw.spike_i % plan.n]],
                              int(plan.is_E.sum()), t0, t1) for b in range(plan.batch)]
    out["E"]["rate_hz_batch"] = rates_all
    out["regime"] = out["E"]["state"]
    return out


def _binned_rates(plan: SpikingPlan, raw: RawRun, n_bins: int, bin_ms: float) -> np.ndarray:
    """Pool rates (n_bins, batch, n_units) in Hz."""
    U, B = plan.circuit.n_units, plan.batch
    k = np.floor(raw.spike_t_ms / bin_ms).astype(np.int64)
    ok = (k >= 0) & (k < n_bins)
    g = raw.spike_i[ok]
    flat = (k[ok] * B + g // plan.n) * U + plan.unit_of[g % plan.n]
    counts = np.bincount(flat, minlength=n_bins * B * U).reshape(n_bins, B, U)
    return counts / (plan.sspec.pool_size * bin_ms * 1e-3)


def spiking_dataset(plan: SpikingPlan, raw: RawRun, raw_x: RawRun | None, *, attrs: dict) -> xr.Dataset:
    """The standard result Dataset (``r``, ``x``, ``Fx``, ``u``) plus spikes and membrane traces."""
    bin_ms = plan.sspec.monitor.rate_bin_ms
    n_bins = max(1, int(np.floor(plan.duration_ms / bin_ms + 1e-9)))
    times = (np.arange(n_bins) + 0.5) * bin_ms
    r = _binned_rates(plan, raw, n_bins, bin_ms)
    x = None if raw_x is None else _binned_rates(plan, raw_x, n_bins, bin_ms)
    k = np.minimum((times / plan.stim_dt_ms).astype(np.int64), plan.u.shape[0] - 1)
    u = plan.u[k]
    ds = trajectory_dataset(plan.circuit, times, r, x, u, backend="spiking", attrs=attrs)
    if plan.sspec.monitor.spikes:
        g = raw.spike_i
        ds["spike_time_ms"] = ("spike", raw.spike_t_ms, {"units": "ms"})
        ds["spike_neuron"] = ("spike", (g % plan.n).astype(np.int32), {"long_name": "neuron within its replica"})
        ds["spike_unit"] = ("spike", plan.unit_of[g % plan.n].astype(np.int32),
                            {"long_name": "rate unit (pool) of the neuron"})
        ds["spike_batch"] = ("spike", (g // plan.n).astype(np.int32), {"long_name": "stimulus (replica)"})
    if raw.trace_v_mV.size:
        tr = plan.trace_neurons
        ds = ds.assign_coords(trace_time=("trace_time", raw.trace_t_ms, {"units": "ms"}),
                              trace_neuron=("trace", tr.astype(np.int32)),
                              trace_population=("trace", np.where(plan.is_E[tr], "E", "I")))
        ds["v_trace"] = (("trace_time", "trace"), raw.trace_v_mV,
                         {"units": "mV", "long_name": "membrane potential (first stimulus)"})
    for var in ("r", "x", "Fx"):
        if var in ds:
            ds[var].attrs["units"] = "Hz"
    # spiking results are in Hz; r / hz_per_unit[population] is in the rate model's units
    ds.attrs.update(rate_units="Hz", model_rate_units=plan.circuit.rate_units,
                    hz_per_unit=json.dumps(hz_per_unit(plan)))
    return ds


def hz_per_unit(plan: SpikingPlan) -> dict[str, float]:
    """Hz per unit of the rate model, per population, as the mapping realised it."""
    R, lay = plan.mapping.R_unit, plan.circuit.layout
    return {p: float(R[sl][0]) if sl.stop > sl.start else plan.circuit.hz_per_unit[p] for p, sl in lay.items()}


def _named(circuit: Circuit) -> bool:
    """Populations other than the E/I pair of the two-population shorthand."""
    return circuit.population_names != ["E", "I"]


def _ticker(bar: Any):
    """A ``progress(fraction)`` callback advancing a tqdm bar by percent (None without a bar)."""
    if bar is None:
        return None
    state = {"done": 0}

    def tick(fraction: float) -> None:
        pct = int(round(100 * min(max(fraction, 0.0), 1.0)))
        if pct > state["done"]:
            bar.update(pct - state["done"])
            state["done"] = pct
    return tick


def warn_stimulus(stim: Any, u: np.ndarray, duration_ms: float, model_default: Any) -> list[str]:
    """Warn (StimulusWarning, two frames above this call: the caller of ``simulate_spiking`` or of the
    batched replica runs) about a stimulus that may not do what was meant; returns the messages, which
    go into the result's attributes too."""
    notes = stimulus_warnings(stim if not isinstance(stim, np.ndarray) else None, u, duration_ms,
                              model_default=model_default)
    for msg in notes:
        warnings.warn(msg, StimulusWarning, stacklevel=3)
    return notes


def simulate_spiking(circuit: Circuit, stimulus: StimulusSpec | str | np.ndarray | None = None, *,
                     duration_ms: float | None = None, dt_ms: float | None = None, seed: int | None = None,
                     decompose: bool = True, standalone: bool = False, cache_dir: Any = None,
                     target: str = "cython", u_operating: np.ndarray | None = None,
                     progress: bool = False, engine: str = "brian2", dtype: str = "float64",
                     device: str = "cpu", replica_seeds: list[int] | None = None, mean_field: bool = True) -> xr.Dataset:
    """Simulate the circuit as a spiking network and decompose its pool rates into ``x`` and ``F(x)``.

    Parameters
    ----------
    circuit : the circuit; ``circuit.spec.spiking`` says how it becomes a spiking network
    stimulus : a :class:`StimulusSpec`, its CLI string, an array (batch, n_inputs) of constant
        inputs, or None for the model file's default
    duration_ms : run length (ms, default the model file's)
    dt_ms : integration step (ms, default ``spiking.dt_ms``)
    seed : seed of the run (initial potentials, input spikes, noise); default the spec's. The synapse
        graph belongs to the circuit: drawn from ``circuit.spec.seed``
    decompose : also run with recurrent synapses off (same input spikes) for ``x`` and ``Fx``
    standalone : Brian2 C++ standalone, cached per structure (:mod:`cortex_resnet.spiking.cache`)
    cache_dir : standalone cache folder (default ``$CORTEX_RESNET_CACHE_DIR`` or ``~/.cache/cortex_resnet``)
    target : runtime code target, ``cython`` (falls back to ``numpy`` without a compiler) or ``numpy``
    u_operating : (n_inputs,) operating input of the gain scaling (default: the final stimulus)
    engine : ``brian2`` or ``torch`` (:mod:`cortex_resnet.spiking.torch_engine`: batched, the same plan and scheme)
    dtype, device : torch engine only: ``float64``/``float32``; ``cpu``, ``cuda`` or ``auto``
    replica_seeds : one seed per stimulus (initial potentials, torch: input spikes and noise), the same run
        in any batch (default: from ``seed``, stimulus index); mean_field=False: no mean-field rates (attrs)

    Returns
    -------
    xarray.Dataset
        ``r``, ``x``, ``Fx`` (time, batch, unit; bin centres, rate-model units), ``u``; spikes
        (``spike_time_ms``, ``spike_neuron``, ``spike_unit``, ``spike_batch`` on dim ``spike``);
        membrane traces ``v_trace``; attributes with timings, sizes, the mapping and spike statistics.
    """
    check_engine(engine, standalone)
    start = time.perf_counter()
    sim = circuit.spec.simulation
    duration_ms = sim.duration_ms if duration_ms is None else float(duration_ms)
    seed = circuit.spec.seed if seed is None else int(seed)
    stim = sim.stimulus if stimulus is None else stimulus
    plan = build_plan(circuit, stim, duration_ms, dt_ms=dt_ms, u_operating=u_operating, seed=seed, engine=engine,
                      replica_seeds=replica_seeds)
    notes = warn_stimulus(stim, plan.u, duration_ms, sim.stimulus)
    bar = _progress_bar(progress, standalone, decompose)
    try:
        with brian2_global_state():  # Brian2's excepthook and warning capture end with the run
            runner = (TorchEngine(plan, device=device, dtype=dtype, seeds=replica_seeds) if engine == "torch" else
                      make_engine(plan, standalone=standalone, cache_dir=cache_dir, target=target))
            raw, raw_x, runtime = _run_both(runner, circuit, seed, decompose, bar)
    finally:
        if bar is not None:
            bar.close()
    ds = spiking_dataset(plan, raw, raw_x, attrs=run_attrs(plan, raw, _device_name(runner), seed, notes, mean_field))
    # wall times are not stored in the file (same seed -> same file); callers read them here
    ds.encoding.update(compile_s=float(runner.compile_s), runtime_s=runtime,
                       compiled=bool(getattr(runner, "compiled", False)),
                       total_s=time.perf_counter() - start)
    return ds


def run_attrs(plan: SpikingPlan, raw: RawRun, device: str, seed: int, notes: list[str],
               mean_field: bool = True) -> dict[str, Any]:
    """The dataset attributes of a run: sizes, seeds, the mapping, spike statistics, mean field."""
    return {
        "device": device, "seed": seed, "graph_seed": int(plan.circuit.spec.seed),
        "dt_ms": plan.dt_ms, "duration_ms": plan.duration_ms,
        "pool_size": plan.sspec.pool_size, "n_neurons": plan.n_total, "n_synapses": plan.n_synapses,
        "rate_bin_ms": plan.sspec.monitor.rate_bin_ms, "stimulus": plan.info["stimulus"],
        "structure_hash": plan.structure_hash(), "mapping": plan.mapping.info,
        "spike_stats": spike_statistics(plan, raw), "mean_field_rate_hz": _mean_field_rates(plan) if mean_field else None,
        **({"mean_field_rate_hz_by_replica": [_mean_field_rates(plan, b) for b in range(plan.batch)]}
           if mean_field and 1 < plan.batch <= MAX_MEAN_FIELD_REPLICAS else {}),
        "v_init": plan.info["v_init"], "warnings": notes,
    }


def _progress_bar(progress: bool, standalone: bool, decompose: bool) -> Any:
    """A tqdm bar in percent of the run(s), or None without ``progress``."""
    if not progress:
        return None
    if standalone:
        print("spiking: C++ standalone (the first run of a structure compiles it, about a minute)",
              file=sys.stderr)
    return tqdm(total=(2 if decompose else 1) * 100, desc="spiking", unit="%", leave=False)


def _run_both(runner: Any, circuit: Circuit, seed: int, decompose: bool,
              bar: Any) -> tuple[RawRun, RawRun | None, float]:
    """The recurrent run and (``decompose``) the one without recurrence, each checked for NaN/inf;
    the simulation time (s) of both."""
    tick = _ticker(bar)
    if hasattr(runner, "run_pair") and decompose:  # one pass, the same random numbers for both runs
        raw, raw_x = runner.run_pair(seed, progress=tick)
        decompose = False
        if bar is not None:
            bar.update(100)
    else:
        raw, raw_x = runner.run(True, seed, progress=tick), None
    check_finite(raw, circuit, "recurrent run")
    runtime = runner.last_run_s
    if raw_x is not None:
        check_finite(raw_x, circuit, "run without recurrence")
    if decompose:
        raw_x = runner.run(False, seed, progress=_ticker(bar))
        check_finite(raw_x, circuit, "run without recurrence")
        runtime += runner.last_run_s
    return raw, raw_x, runtime


MAX_MEAN_FIELD_REPLICAS = 32  # a batch up to this size also gets every replica's own mean field


def _mean_field_rates(plan: SpikingPlan, replica: int | None = None) -> dict[str, float] | None:
    """The pools' mean-field rates (Hz) averaged per population, at the operating drive (or
    ``replica``'s own final drive); None without a fixed point."""
    circuit = plan.circuit
    try:
        mf = solve(plan.pool_model if replica is None else plan.replica_pool_model(replica)).rates_hz
    except ConvergenceError:  # a mean field without a fixed point (oscillating, runaway): report none
        return None
    out: dict[str, Any] = {p: float(mf[m].mean()) for p, m in (("E", circuit.is_E), ("I", ~circuit.is_E)) if m.any()}
    if _named(circuit):
        out["by_population"] = {p: float(mf[sl].mean()) for p, sl in circuit.layout.items() if sl.stop > sl.start}
    return out


def spiking_summary(circuit: Circuit, ds: xr.Dataset, out: Any) -> dict[str, Any]:
    """The ``--json`` summary of a spiking run (contract: out, backend, mean_rate {E, I} in
    ``rate_units`` = Hz, cv_isi, max_eig_real, inhibition_stabilized, runtime_s, hz_per_unit,
    warnings; plus compile_s, regime and more). ``mean_rate_hz`` is a deprecated alias of ``mean_rate``."""
    stats = json.loads(ds.attrs["spike_stats"])
    max_re = isn = ee = None
    if circuit.n_units <= 4000:
        try:
            lin = analyze(circuit, ds["u"].isel(time=-1, batch=0).values)
            max_re, isn, ee = lin.max_eig_real, lin.inhibition_stabilized, lin.ee_loop_gain
        except (ConvergenceError, np.linalg.LinAlgError):  # no steady state of the rate model
            pass
    mf = ds.attrs.get("mean_field_rate_hz")
    rates = {p: stats[p]["rate_hz"] for p in ("E", "I")}
    if "by_population" in stats:  # named populations: their rates (the E/I aggregates stay in "cell_type")
        rates = {p: v["rate_hz"] for p, v in stats["by_population"].items()}
    return {
        "out": str(out) if out else None,
        "backend": "spiking",
        "mean_rate": rates,  # in rate_units (Hz), over analysis_window_ms
        "mean_rate_hz": rates,  # deprecated alias of mean_rate (always Hz); removed in the next release
        "cv_isi": stats["E"]["cv_isi"],
        "cv_isi_by_population": {p: stats[p]["cv_isi"] for p in ("E", "I")},
        "oscillation_power": {p: stats[p]["oscillation_power"] for p in ("E", "I")},
        "synchrony": {p: stats[p]["synchrony"] for p in ("E", "I")},
        "regime": stats["regime"],
        **({"cv_isi_by_named_population": {p: v["cv_isi"] for p, v in stats["by_population"].items()},
            "mean_rate_by_cell_type": {p: stats[p]["rate_hz"] for p in ("E", "I")}}
           if "by_population" in stats else {}),
        "analysis_window_ms": stats["window_ms"],
        "mean_field_rate_hz": json.loads(mf) if isinstance(mf, str) else mf,
        "max_eig_real": max_re,
        "ee_loop_gain": ee,
        "inhibition_stabilized": isn,
        "runtime_s": ds.encoding.get("runtime_s"),
        "compile_s": ds.encoding.get("compile_s"),
        "compiled": ds.encoding.get("compiled"),
        "total_s": ds.encoding.get("total_s"),
        "device": ds.attrs["device"],
        "n_neurons": int(ds.attrs["n_neurons"]),
        "n_synapses": int(ds.attrs["n_synapses"]),
        "rate_units": "Hz",
        "hz_per_unit": json.loads(ds.attrs["hz_per_unit"]),
        "model_rate_units": ds.attrs.get("model_rate_units"),
        "warnings": list(json.loads(ds.attrs.get("warnings", "[]"))),
        "seed": int(ds.attrs["seed"]),
    }


def cli_run(circuit: Circuit, opts: dict[str, Any]):
    """Runner for ``cortex-resnet simulate --backend spiking`` (see ``cli/simulate.py``)."""
    with warnings.catch_warnings():  # the CLI prints the summary's "warnings" on stderr itself
        warnings.simplefilter("ignore", StimulusWarning)
        ds = simulate_spiking(circuit, opts.get("stimulus"), duration_ms=opts.get("duration"),
                              dt_ms=opts.get("dt"), seed=opts.get("seed"),
                              standalone=bool(opts.get("standalone", False)),
                              progress=bool(opts.get("progress", False)), engine=opts.get("engine", "brian2"),
                              **({"dtype": opts.get("dtype", "float64"), "device": opts.get("device", "cpu")}
                                 if opts.get("engine") == "torch" else {}))
    return ds, lambda out: spiking_summary(circuit, ds, out)



_MOVED_TO_MODEL = ("to_spiking", "SpikingModel", "SpikeCounts")


def __getattr__(name: str) -> Any:
    """``to_spiking``, ``SpikingModel`` and ``SpikeCounts`` live in :mod:`cortex_resnet.spiking.model`
    (which imports this module); the old location still resolves them, on first access."""
    if name in _MOVED_TO_MODEL:
        return getattr(import_module("cortex_resnet.spiking.model"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
