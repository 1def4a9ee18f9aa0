"""Parameter sweeps on the spiking backend: what changes the network fans out, what changes only the
input runs as one torch batch.

``sweep_model(model, {"stimulus.amp": [0.5, 1, 2], "connectivity.J_EE": [0.5, 2]}, backend="spiking",
engine="torch")`` (:mod:`cortex_resnet.fanout.sweep`) comes here. A grid point is a network
realisation (spec fields, ``seed``) and a stimulus (``stimulus.KEY``: a field of the stimulus spec).

* **Batched** (``engine = "torch"``, ``batch`` ``auto`` or ``all``): the values of ``stimulus.amp`` of
  one realisation are the replicas of one batch (:mod:`cortex_resnet.fanout.batches`): the network is
  built and mapped once. Every other swept field (spec fields: another network; other stimulus
  fields: another time course) makes separate Dask tasks. ``batch = "all"`` requires that every swept
  field is shareable (``stimulus.amp``) and refuses the sweep naming the first that is not.
* **One at a time** (``batch = "none"`` or ``engine = "brian2"``): one task per grid point.

Both give the same numbers (torch engine, tested): replica ``j`` of the amplitude grid has the random
streams ``replica_seed(seed, j)`` and every run the gain mapping at the same operating input (the
stimulus at the end of the run averaged over the whole amplitude grid). Results, per grid point and
seed: ``rate_NAME`` (Hz; each named population, E/I for the shorthand) over the last half of the run,
``unstable`` (1 where a membrane potential ran away) and ``status`` (``ok`` / ``runaway``).
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any, Sequence

from cortex_resnet.errors import SpecError, UnstableCircuitError
from cortex_resnet.fanout.batches import amp_batch, operating_input, run_amp_batch
from cortex_resnet.io.results import library_versions, population_mean
from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.model.spec import CircuitSpec, parse_spec
from cortex_resnet.model.stimulus_spec import StimulusSpec
from cortex_resnet.spiking.initial_state import replica_seed
from cortex_resnet.spiking.torch_engine import ENGINES
from cortex_resnet.fanout.tasks import Task

__all__ = ["BATCH_MODES", "SHAREABLE", "check_batch", "stimulus_fields", "spiking_tasks", "spiking_sweep_task", "expand"]

BATCH_MODES = ("auto", "all", "none")
#: swept fields the replicas of one torch batch can differ in (the network and time course shared)
SHAREABLE = ("stimulus.amp",)
_STATUS = {"ok": 0, "runaway": 4}  # the codes of fanout.sweep.STATUS


def check_batch(names: Sequence[str], engine: str, batch: str, dtype: str = "float64") -> list[str]:
    """The swept fields that run as one batch (``[]`` or ``["stimulus.amp"]``); SpecError for an unknown
    engine, batch mode or dtype, and for ``batch = "all"`` with a field one batch cannot share (named)."""
    if engine not in ENGINES:
        raise SpecError("--engine", engine, f"one of {', '.join(ENGINES)}")
    if dtype not in ("float64", "float32") or (dtype != "float64" and engine != "torch"):
        raise SpecError("--dtype", dtype, "float64, or float32 with --engine torch")
    if batch not in BATCH_MODES:
        raise SpecError("--batch", batch, f"one of {', '.join(BATCH_MODES)}")
    if batch == "all":
        if engine != "torch":
            raise SpecError("--engine", engine, "torch for --batch all (the Brian2 engine runs one grid point a time)")
        for name in names:
            if name not in SHAREABLE:
                raise SpecError("--param", name, f"a field one torch batch can share ({', '.join(SHAREABLE)}) with "
                                "--batch all: this one changes the network or the stimulus' time course "
                                "(--batch auto runs it as separate tasks)")
    if engine != "torch" or batch == "none":
        return []
    return [n for n in names if n in SHAREABLE]


def spiking_sweep_task(spec_json: str, changes: dict[str, Any], seed: int, stimulus: dict[str, Any],
                       amps: list[float], replicas: list[int], all_amps: list[float], duration_ms: float,
                       dt_ms: float | None, engine: str, dtype: str) -> dict[str, Any]:
    """One network realisation (``changes``, ``seed``) at the stimulus amplitudes ``amps`` (their
    indices ``replicas`` in the whole amplitude grid ``all_amps``), one batch; per population a list
    (one value per amplitude) of its rate (Hz) over the last half of the run."""
    circuit = build_circuit(parse_spec(json.loads(spec_json)).replace(**changes, seed=seed))
    base = StimulusSpec.model_validate(stimulus)
    names = circuit.population_names
    try:
        ds = run_amp_batch(circuit, base, amps, [replica_seed(seed, j) for j in replicas], duration_ms=duration_ms,
                           seed=seed, u_operating=operating_input(circuit, amp_batch(base, all_amps), duration_ms),
                           decompose=False, engine=engine, dtype=dtype, mean_field=False, dt_ms=dt_ms)
    except UnstableCircuitError:
        return {**{f"rate_{k}": [math.nan] * len(amps) for k in names}, "unstable": [1.0] * len(amps),
                "status": [_STATUS["runaway"]] * len(amps)}
    rates = [population_mean(ds.isel(batch=[b]), "r") for b in range(len(amps))]
    return {**{f"rate_{k}": [r[k] for r in rates] for k in names}, "unstable": [0.0] * len(amps),
            "status": [_STATUS["ok"]] * len(amps)}


def stimulus_fields(base: StimulusSpec, params: dict[str, Sequence[Any]]) -> None:
    """Check the swept ``stimulus.KEY`` fields: a field of the stimulus spec, every value valid
    (SpecError naming the field otherwise)."""
    for name, values in params.items():
        if not name.startswith("stimulus."):
            continue
        key = name.split(".", 1)[1]
        if key not in StimulusSpec.model_fields:
            raise SpecError("--param", name, "a stimulus field: " + ", ".join(f"stimulus.{k}" for k in
                                                                               StimulusSpec.model_fields))
        for v in values:
            if key == "amp" and not isinstance(v, (int, float)):
                raise SpecError("--param", f"{name}={v!r}", "numbers (one amplitude per grid point)")
            try:
                StimulusSpec.model_validate({**base.model_dump(), key: v})
            except (ValueError, SpecError) as err:
                raise SpecError("--param", f"{name}={v!r}", f"a valid stimulus value ({err})") from None


def spiking_tasks(spec: CircuitSpec, params: dict[str, Sequence[Any]], base: StimulusSpec, seeds: Sequence[int], *,
                  duration_ms: float, dt_ms: float | None, engine: str, dtype: str,
                  batched: Sequence[str]) -> list[Task]:
    """The tasks of a spiking sweep (module docstring): one per realisation and unbatched stimulus;
    each runs the amplitudes of ``stimulus.amp`` as one batch when ``batched`` holds it."""
    if len(base.amps) != 1:
        raise SpecError("--stimulus", f"amp={base.amp}", "one stimulus (a single amp) for a spiking sweep: "
                        "sweep stimulus.amp=v1,v2,... for several")
    all_amps = [float(a) for a in params.get("stimulus.amp", base.amps)]
    outer = [n for n in params if n not in batched]
    spec_json, versions = spec.to_json(), library_versions()
    tasks = []
    for combo in itertools.product(*(params[n] for n in outer)):
        fixed = dict(zip(outer, combo))
        changes = {k: v for k, v in fixed.items() if not k.startswith("stimulus.")}
        stim = {**base.model_dump(mode="json"), **{k[9:]: v for k, v in fixed.items() if k.startswith("stimulus.")}}
        replicas = list(range(len(all_amps))) if batched else [all_amps.index(float(stim["amp"][0] if isinstance(
            stim["amp"], list) else stim["amp"]))]
        amps = [all_amps[j] for j in replicas]
        for s in seeds:
            args = (spec_json, changes, s, stim, amps, replicas, all_amps, duration_ms, dt_ms, engine, dtype)
            inputs = {"task": "spiking_sweep", "spec": spec_json, "changes": changes, "seed": s, "stimulus": stim,
                      "amps": amps, "replicas": replicas, "all_amps": all_amps, "duration_ms": duration_ms,
                      "dt_ms": dt_ms, "engine": engine, "dtype": dtype, "versions": versions, "batched": bool(batched)}
            coords = {**{n: json.dumps(v) if isinstance(v, str) else v for n, v in fixed.items()}, "seed": s}
            label = " ".join(f"{k}={v}" for k, v in coords.items()) + (f" ({len(amps)} amplitudes)" if batched else "")
            tasks.append(Task(spiking_sweep_task, args, inputs, label=label, coords=coords))
    return tasks


def expand(tasks: Sequence[Task], results: Sequence[dict[str, Any]]) -> tuple[list[Task], list[dict[str, Any]]]:
    """One (placeholder task, result) per grid point from the batched tasks' lists, for
    :func:`~cortex_resnet.fanout.tasks.to_dataset` (the amplitude becomes the ``stimulus.amp`` coordinate
    of a batched task's points)."""
    points, values = [], []
    for task, res in zip(tasks, results):
        for j, a in enumerate(task.inputs["amps"]):
            coords = {"stimulus.amp": a, **task.coords} if task.inputs["batched"] else task.coords
            points.append(Task(task.fn, (), {}, label=task.label, coords=coords))
            values.append({k: v[j] for k, v in res.items()})
    return points, values
