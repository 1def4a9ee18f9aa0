"""Parameter sweeps on the spiking backend: what changes the network's structure fans out, what changes
only the input or the coupling strengths runs as one torch batch.

``sweep_model(model, {"stimulus.amp": [0.5, 1, 2], "connectivity.J_EE": [0.5, 2]}, backend="spiking",
engine="torch")`` (:mod:`cortex_resnet.fanout.sweep`) comes here. A grid point is a network
realisation (spec fields, ``seed``) and a stimulus (``stimulus.KEY``: a field of the stimulus spec).

* **Batched** (``engine = "torch"``, ``batch`` ``auto`` or ``all``): the values of ``stimulus.amp`` and
  of the coupling and drive fields (:data:`SHAREABLE`: ``connectivity.J_*``, ``bias.*``, ``input.gain_*``:
  the same synapse graph, other weights, DC, noise and input) of one seed are the replicas of ONE batch:
  the amplitudes share a network (:mod:`cortex_resnet.fanout.batches`), the coupling conditions get
  per-replica weights (:mod:`cortex_resnet.spiking.replica_runs`). Every other swept field (the
  network's structure: sizes, ``p_connect``, delays, the spiking spec; other stimulus fields: another time
  course) makes separate Dask tasks. ``batch = "all"`` requires that every swept field is shareable and
  that the coupling values keep the synapse graph (a coupling of 0 removes a pathway) and refuses the
  sweep naming the first field that is not. Coupling conditions of a batch in which one runs away run one
  at a time (the same numbers; the runaway condition marked).
* **One at a time** (``batch = "none"`` or ``engine = "brian2"``): one task per grid point.

Both give the same numbers (torch engine, tested): replica ``j`` of the amplitude grid has the random
streams ``replica_seed(seed, j)`` in every coupling condition, and every run the gain mapping of its own
circuit at the same operating input (the stimulus at the end of the run averaged over the whole
amplitude grid). Results, per grid point and seed: ``rate_NAME`` (Hz; each named population, E/I for
the shorthand) over the last half of the run, ``unstable`` (1 where a membrane potential ran away) and
``status`` (``ok`` / ``runaway``).
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
from cortex_resnet.spiking.replica_runs import simulate_conditions
from cortex_resnet.spiking.torch_engine import ENGINES
from cortex_resnet.fanout.tasks import Task

__all__ = ["BATCH_MODES", "SHAREABLE", "check_batch", "shareable", "stimulus_fields", "spiking_tasks", "spiking_sweep_task", "expand"]

BATCH_MODES = ("auto", "all", "none")
#: swept fields the replicas of one torch batch can differ in: the stimulus amplitude (the network shared) and
#: the coupling strengths and drives (the synapse graph shared, per-replica weights); prefixes end with "."/"_"
SHAREABLE = ("stimulus.amp", "connectivity.J_", "bias.", "input.gain_")
_STATUS = {"ok": 0, "runaway": 4}  # the codes of fanout.sweep.STATUS


def shareable(name: str) -> bool:
    """Can the replicas of one torch batch differ in the swept field ``name``?"""
    return any(name == s or (s[-1] in "._" and name.startswith(s)) for s in SHAREABLE)


def check_batch(names: Sequence[str], engine: str, batch: str, dtype: str = "float64") -> list[str]:
    """The swept fields that run as one batch (:data:`SHAREABLE`); SpecError for an unknown engine, batch
    mode or dtype, and for ``batch = "all"`` with a field one batch cannot share (named)."""
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
            if not shareable(name):
                raise SpecError("--param", name, "a field one torch batch can share (stimulus.amp, connectivity.J_*, "
                                "bias.*, input.gain_*) with --batch all: this one changes the network's structure "
                                "or the stimulus' time course (--batch auto runs it as separate tasks)")
    if engine != "torch" or batch == "none":
        return []
    return [n for n in names if shareable(n)]


def spiking_sweep_task(spec_json: str, changes: dict[str, Any], seed: int, stimulus: dict[str, Any],
                       amps: list[float], replicas: list[int], all_amps: list[float], duration_ms: float,
                       dt_ms: float | None, engine: str, dtype: str,
                       couplings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One seed (``changes``, ``seed``) at the stimulus amplitudes ``amps`` (their indices ``replicas`` in
    the whole amplitude grid ``all_amps``) and the coupling conditions ``couplings`` (spec changes; None:
    one), one batch; per population a list (coupling-major, then amplitude) of its rate (Hz) over the last
    half of the run."""
    conds = couplings or [{}]
    circuits = [build_circuit(parse_spec(json.loads(spec_json)).replace(**changes, **cc, seed=seed)) for cc in conds]
    base = StimulusSpec.model_validate(stimulus)
    stim, keys = amp_batch(base, amps), [replica_seed(seed, j) for j in replicas]
    u_ops = [operating_input(c, amp_batch(base, all_amps), duration_ms) for c in circuits]
    opts = {"duration_ms": duration_ms, "seed": seed, "decompose": False, "dtype": dtype, "mean_field": False,
            "dt_ms": dt_ms}
    if len(circuits) > 1:
        try:
            dss = simulate_conditions(circuits, [stim] * len(circuits), u_operating=u_ops,
                                      replica_seeds=[keys] * len(circuits), **opts)
            return _rates([population_mean(ds.isel(batch=[b]), "r") for ds in dss for b in range(len(amps))],
                          circuits[0].population_names)
        except (UnstableCircuitError, SpecError):  # a runaway (or, batch auto, another graph): one at a time
            pass
    rows = []
    for c, u_op in zip(circuits, u_ops):
        try:
            ds = run_amp_batch(c, base, amps, keys, u_operating=u_op, engine=engine, **opts)
            rows += [population_mean(ds.isel(batch=[b]), "r") for b in range(len(amps))]
        except UnstableCircuitError:
            rows += [None] * len(amps)
    return _rates(rows, circuits[0].population_names)


def _rates(rows: list[dict | None], names: list[str]) -> dict[str, Any]:
    """The task's result lists from one population-mean dict per grid point (None: it ran away)."""
    return {**{f"rate_{k}": [math.nan if r is None else r[k] for r in rows] for k in names},
            "unstable": [float(r is None) for r in rows],
            "status": [_STATUS["runaway" if r is None else "ok"] for r in rows]}


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
                  batched: Sequence[str], strict: bool = False) -> list[Task]:
    """The tasks of a spiking sweep (module docstring): one per realisation and unbatched stimulus; each
    runs the amplitudes of ``stimulus.amp`` and the coupling values of the batched fields as one batch.
    ``strict`` (``batch = "all"``): SpecError naming a coupling value that changes the synapse graph."""
    if len(base.amps) != 1:
        raise SpecError("--stimulus", f"amp={base.amp}", "one stimulus (a single amp) for a spiking sweep: "
                        "sweep stimulus.amp=v1,v2,... for several")
    all_amps = [float(a) for a in params.get("stimulus.amp", base.amps)]
    inner = [n for n in batched if n != "stimulus.amp"]
    couplings = [dict(zip(inner, combo)) for combo in itertools.product(*(params[n] for n in inner))]
    if strict and inner:
        _check_graph(spec, params, inner, seeds[0])
    outer = [n for n in params if n not in batched]
    spec_json, versions = spec.to_json(), library_versions()
    tasks = []
    for combo in itertools.product(*(params[n] for n in outer)):
        fixed = dict(zip(outer, combo))
        changes = {k: v for k, v in fixed.items() if not k.startswith("stimulus.")}
        stim = {**base.model_dump(mode="json"), **{k[9:]: v for k, v in fixed.items() if k.startswith("stimulus.")}}
        replicas = list(range(len(all_amps))) if "stimulus.amp" in batched else [all_amps.index(float(
            stim["amp"][0] if isinstance(stim["amp"], list) else stim["amp"]))]
        amps = [all_amps[j] for j in replicas]
        points = [{**cc, **({"stimulus.amp": a} if "stimulus.amp" in batched else {})} for cc in couplings for a in amps]
        for s in seeds:
            args = (spec_json, changes, s, stim, amps, replicas, all_amps, duration_ms, dt_ms, engine, dtype,
                    couplings if inner else None)
            inputs = {"task": "spiking_sweep", "spec": spec_json, "changes": changes, "seed": s, "stimulus": stim,
                      "amps": amps, "replicas": replicas, "all_amps": all_amps, "duration_ms": duration_ms,
                      "dt_ms": dt_ms, "engine": engine, "dtype": dtype, "versions": versions, "batched": bool(batched),
                      **({"couplings": couplings} if inner else {}), "points": points}
            coords = {**{n: json.dumps(v) if isinstance(v, str) else v for n, v in fixed.items()}, "seed": s}
            label = " ".join(f"{k}={v}" for k, v in coords.items()) + (f" ({len(points)} conditions)" if batched else "")
            tasks.append(Task(spiking_sweep_task, args, inputs, label=label, coords=coords))
    return tasks


def _check_graph(spec: CircuitSpec, params: dict[str, Sequence[Any]], names: list[str], seed: int) -> None:
    """SpecError naming the first coupling value whose circuit has another synapse graph (connected pool
    pairs) than the field's first value: it cannot share a batch (``batch = "all"``)."""
    def present(changes: dict[str, Any]) -> Any:
        c = build_circuit(spec.replace(**changes, seed=seed))
        return c.mask & (c.W != 0)

    first = {n: params[n][0] for n in names}
    ref = present(first)
    for n in names:
        for v in params[n][1:]:
            if not (present({**first, n: v}) == ref).all():
                raise SpecError("--param", f"{n}={v}", "a value that keeps the synapse graph with --batch all (a "
                                "coupling of 0 removes a pathway: another structure; --batch auto runs it apart)")


def expand(tasks: Sequence[Task], results: Sequence[dict[str, Any]]) -> tuple[list[Task], list[dict[str, Any]]]:
    """One (placeholder task, result) per grid point from the batched tasks' lists, for
    :func:`~cortex_resnet.fanout.tasks.to_dataset` (the batched fields' values -- amplitude, couplings --
    become the coordinates of a batched task's points)."""
    points, values = [], []
    for task, res in zip(tasks, results):
        for j, extra in enumerate(task.inputs["points"]):
            coords = {**extra, **task.coords} if task.inputs["batched"] else task.coords
            points.append(Task(task.fn, (), {}, label=task.label, coords=coords))
            values.append({k: v[j] for k, v in res.items()})
    return points, values
