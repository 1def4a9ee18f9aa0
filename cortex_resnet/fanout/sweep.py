"""Parameter sweeps: a grid of spec fields (and stimulus fields) x seeds, fanned out on Dask.

``stimulus.KEY`` sweeps a field of the stimulus (e.g. ``stimulus.amp``: the amplitude of the
model's or ``--stimulus``'s stimulus). ``backend = "spiking"`` runs pools of LIF neurons
(:mod:`cortex_resnet.fanout.spiking_sweep`: ``rate_NAME`` in Hz, ``unstable``, ``status``; with the
torch engine the values of ``stimulus.amp`` run as one batch per network). The rest of this
docstring is the rate backend.

``sweep_model("models/isn.toml", {"connectivity.J_EE": [0.5, 1.5, 2.5]}, seeds=2)``
runs every grid point and seed as one independent task (:mod:`cortex_resnet.fanout.tasks`:
LocalCluster by default, ``scheduler=`` joins a running cluster, finished tasks
cached by a hash of their inputs so an interrupted sweep resumes) and gathers
the summaries into one :class:`xarray.Dataset` with a dimension per swept field
plus ``seed``:

* ``rate_E``, ``rate_I`` (``rate_NAME`` for each named population, e.g. ``rate_PV``): population
  mean rates over the last half of the run;
* ``max_eig_real`` (1/ms), ``inhibition_stabilized`` (0/1), ``ee_loop_gain`` at the final input;
  named circuits also ``isn_NAME`` (0/1) for each excitatory population (ISN per sub-network);
* ``unstable``: 1 where the run stopped with runaway/NaN (the rates are then NaN);
* ``status``: why a grid point's numbers are missing or special (CF flags, :data:`STATUS`):
  ``ok``; ``marginal`` (max Re(eig) = 0 to rounding: neither stable nor unstable);
  ``singular`` (``I - D W`` singular: no unique steady state, so ``max_eig_real``,
  ``ee_loop_gain`` and ``inhibition_stabilized`` are NaN); ``no_steady_state`` (the solver
  found none: the same three NaN); ``runaway`` (the run diverged: rates NaN); ``unstable_end``
  (the run ended in a linearly unstable state before diverging: its rates are no steady state).
"""

from __future__ import annotations

import itertools
import json
import math
import warnings
from pathlib import Path
from typing import Any, Sequence

import xarray as xr

from cortex_resnet.errors import ConvergenceError, SpecError, UnstableCircuitError
from cortex_resnet.io.results import library_versions, save_dataset, population_mean
from cortex_resnet.model.spec import StimulusSpec, load_spec, parse_spec, parse_stimulus
from cortex_resnet.fanout.spiking_sweep import check_batch, expand, spiking_tasks, stimulus_fields
from cortex_resnet.fanout.tasks import Task, run_tasks, to_dataset
from cortex_resnet.model.analysis import analyze
from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.rate.simulator import UnstableStateWarning, simulate

__all__ = ["sweep_model", "sweep_task", "STATUS"]

#: ``status`` codes of a grid point (module docstring)
STATUS = {"ok": 0, "marginal": 1, "singular": 2, "no_steady_state": 3, "runaway": 4, "unstable_end": 5}


def sweep_task(spec_json: str, changes: dict[str, Any], seed: int, stimulus: str | dict[str, Any], duration_ms: float,
               dt_ms: float) -> dict[str, Any]:
    """One grid point and seed: simulate (Euler, float64, CPU) and summarise (``stimulus``: its CLI form or
    a stimulus spec as a dict)."""
    spec = parse_spec(json.loads(spec_json)).replace(**changes, seed=seed)
    if isinstance(stimulus, dict):
        stimulus = StimulusSpec.model_validate(stimulus)
    circuit = build_circuit(spec)
    out: dict[str, Any] = {"unstable": 0.0, "status": STATUS["ok"]}
    try:
        with warnings.catch_warnings():  # recorded in ``status`` instead
            warnings.simplefilter("ignore", UnstableStateWarning)
            ds = simulate(circuit, stimulus, duration_ms=duration_ms, dt_ms=dt_ms, device="cpu",
                          record_stride=max(1, int(round(1.0 / dt_ms))), seed=seed)
    except UnstableCircuitError:
        return {**{f"rate_{k}": math.nan for k in circuit.population_names}, "unstable": 1.0,
                "status": STATUS["runaway"]}
    out.update({f"rate_{k}": v for k, v in population_mean(ds, "r").items()})
    ended_unstable = int(ds.attrs.get("unstable", 0)) == 1
    try:
        lin = analyze(circuit, ds["u"].isel(time=-1, batch=0).values)
    except ConvergenceError:
        out["status"] = STATUS["no_steady_state"]
        return out
    if lin.condition == "singular":  # no unique steady state: its spectrum is no result
        out["status"] = STATUS["singular"]
        return out
    out["status"] = STATUS["unstable_end" if ended_unstable else "marginal" if lin.condition == "marginal" else "ok"]
    out.update({"max_eig_real": lin.max_eig_real, "ee_loop_gain": lin.ee_loop_gain,
                "inhibition_stabilized": float(lin.inhibition_stabilized)})
    if not spec.populations.is_shorthand:
        out.update({f"isn_{k}": float(v) for k, v in lin.isn_by_population.items()})
    return out


def _mark_status(ds: xr.Dataset) -> xr.Dataset:
    """CF flag attributes on ``status`` and a one-line count of the grid points that are not ok."""
    if "status" not in ds:
        return ds
    ds["status"].attrs.update({"long_name": "grid point status", "flag_values": list(STATUS.values()),
                               "flag_meanings": " ".join(STATUS)})
    counts = {name: int((ds["status"] == code).sum()) for name, code in STATUS.items() if code}
    bad = {k: v for k, v in counts.items() if v}
    ds.attrs["status_summary"] = ("all grid points ok" if not bad else
                                  ", ".join(f"{v} {k}" for k, v in bad.items()) + " (see status.flag_meanings)")
    return ds


def sweep_model(model: str | Path, params: dict[str, Sequence[Any]], *, seeds: int = 1, seed: int = 0,
                stimulus: str | None = None, duration_ms: float | None = None, dt_ms: float | None = None,
                out: str | Path | None = None, workers: int = 2, scheduler: str | None = None,
                progress: bool = False, connect_timeout_s: float = 10.0, backend: str = "rate",
                engine: str | None = None, batch: str | None = None, dtype: str = "float64") -> xr.Dataset:
    """Run the grid ``params`` (field -> values) x ``seeds`` and gather the summaries (module docstring).

    ``stimulus.KEY`` fields sweep the stimulus (e.g. ``stimulus.amp``). ``backend = "spiking"``:
    :mod:`cortex_resnet.fanout.spiking_sweep` (``engine`` ``brian2`` (default) or ``torch``, ``batch``
    ``auto``/``all``/``none``, ``dtype`` of the torch engine; ``dt_ms`` the spiking step, default
    ``spiking.dt_ms``). Every grid point is validated before any task runs, so a bad value fails at
    once (``SpecError`` naming the field) and not on a worker; nothing is written then.
    """
    spec = load_spec(model)
    if backend not in ("rate", "spiking"):
        raise SpecError("--backend", backend, "rate or spiking")
    if backend == "rate" and (engine is not None or batch is not None):
        raise SpecError("--engine" if engine is not None else "--batch", engine or batch, "only with --backend spiking")
    if not params:
        raise SpecError("--param", "none", "at least one FIELD=v1,v2,... to sweep")
    if seeds < 1:
        raise SpecError("--seeds", seeds, "an integer >= 1")
    sim = spec.simulation
    stimulus = stimulus or sim.stimulus
    base = parse_stimulus(stimulus)
    duration_ms = sim.duration_ms if duration_ms is None else duration_ms
    names = list(params)
    stimulus_fields(base, params)
    params = {n: [float(v) for v in vals] if n == "stimulus.amp" else list(vals) for n, vals in params.items()}
    _check_spec_fields(spec, params)
    seed_list = list(range(seed, seed + seeds))
    if backend == "spiking":
        engine = engine or "brian2"
        batched = check_batch(names, engine, batch or "auto", dtype)
        tasks = spiking_tasks(spec, params, base, seed_list, duration_ms=duration_ms, dt_ms=dt_ms, engine=engine,
                              dtype=dtype, batched=batched, strict=batch == "all")
        attrs = {"backend": "spiking", "engine": engine, "batched_fields": json.dumps(batched), "rate_units": "Hz"}
        preload = ("cortex_resnet.spiking.simulator", "brian2")
    else:
        dt_ms = sim.dt_ms if dt_ms is None else dt_ms
        tasks, attrs, preload = _rate_tasks(spec, params, base, stimulus, seed_list, duration_ms, dt_ms), {}, ()
    cache = Path(out) / ".cache" if out is not None else None
    results = run_tasks(tasks, scheduler=scheduler, workers=workers, cache_dir=cache, progress=progress,
                        connect_timeout_s=connect_timeout_s, desc=f"sweep {spec.name}", preload=preload)
    if backend == "spiking":
        tasks, results = expand(tasks, results)
    ds = to_dataset(tasks, results, names + ["seed"], attrs={
        "model": str(model), "spec": spec.to_json(), "params": json.dumps(params), "stimulus": stimulus,
        "duration_ms": duration_ms, "dt_ms": "default" if dt_ms is None else dt_ms,
        "versions": json.dumps(library_versions()), **attrs})
    ds = _mark_status(ds)
    if out is not None:
        save_dataset(ds.rename({n: n.replace(".", "__") for n in names if n in ds.dims}), Path(out) / "sweep.nc")
    return ds


def _check_spec_fields(spec: Any, params: dict[str, list[Any]]) -> None:
    """Every grid point of the spec fields is a valid spec (SpecError naming the fields otherwise)."""
    fields = [n for n in params if not n.startswith("stimulus.")]
    for combo in itertools.product(*(params[n] for n in fields)):
        try:
            spec.replace(**dict(zip(fields, combo)))
        except (KeyError, TypeError):
            raise SpecError("--param", ", ".join(fields), "existing spec fields (e.g. connectivity.J_EE) or "
                            "stimulus.KEY (e.g. stimulus.amp)") from None


def _rate_tasks(spec: Any, params: dict[str, list[Any]], base: StimulusSpec, stimulus: str, seeds: list[int],
                duration_ms: float, dt_ms: float) -> list[Task]:
    """One rate task per grid point and seed (a swept ``stimulus.KEY`` replaces that stimulus field)."""
    names, spec_json, tasks = list(params), spec.to_json(), []
    for combo in itertools.product(*(params[n] for n in names)):
        point = dict(zip(names, combo))
        changes = {k: v for k, v in point.items() if not k.startswith("stimulus.")}
        stim_changes = {k[9:]: v for k, v in point.items() if k.startswith("stimulus.")}
        stim: str | dict[str, Any] = ({**base.model_dump(mode="json"), **stim_changes} if stim_changes
                                      else stimulus)
        for s in seeds:
            inputs = {"spec": spec_json, "changes": changes, "seed": s, "stimulus": stim,
                      "duration_ms": duration_ms, "dt_ms": dt_ms, "versions": library_versions()}
            coords = {**{n: json.dumps(v) if isinstance(v, str) else v for n, v in point.items()}, "seed": s}
            tasks.append(Task(sweep_task, (spec_json, changes, s, stim, duration_ms, dt_ms), inputs,
                              label=" ".join(f"{k}={v}" for k, v in coords.items()), coords=coords))
    return tasks
