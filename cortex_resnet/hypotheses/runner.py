"""Run a hypothesis: spec -> tasks (conditions x seeds) -> Dask fan-out -> Dataset -> verdict -> report.

Output folder (``--out``; default ``runs/hypotheses/NAME[-quick]``)::

    results.nc        every (condition, seed) result, dims (condition, seed, ...)
    figures/NAME.png  the hypothesis's figure
    report.md         claim, design, table, tests, verdict, figure
    report.json       the summary (contract keys first) plus comparisons, table, params
    .cache/           one JSON per finished task, named by the hash of its inputs

Each file is written atomically; ``report.json`` last, so its presence means
the run finished. Rerunning with the same ``--out`` reuses finished tasks.
"""

from __future__ import annotations

import importlib
import json
import time
import tomllib
from pathlib import Path
from typing import Any

from cortex_resnet.errors import SpecError
from cortex_resnet.fanout.tasks import DEFAULT_CONNECT_TIMEOUT_S, Task, run_tasks, to_dataset
from cortex_resnet.io.results import library_versions, load_dataset
from cortex_resnet.hypotheses.base import Analysis, AnalysisOptions, Hypothesis, HypothesisSpec, Params
from cortex_resnet.hypotheses.config import RunConfig, default_out, find_spec_file, load_run_config
from cortex_resnet.hypotheses.registry import get_hypothesis
from cortex_resnet.hypotheses.report import write_report

__all__ = ["with_condition_coords", "RunConfig", "load_run_config", "find_spec_file", "execute_task", "build_tasks",
           "run_hypothesis", "rebuild_report", "default_out"]

def execute_task(name: str, prepared: dict[str, Any], condition: dict[str, Any], seed: int) -> dict[str, Any]:
    """One (condition, seed) cell; module-level so Dask workers import it by reference."""
    return get_hypothesis(name).task(prepared, condition, seed)


def build_tasks(cfg: RunConfig) -> list[Task]:
    """The independent tasks of a run, each keyed by the hash of its inputs."""
    hyp = cfg.hypothesis
    base_dir = cfg.spec_path.parent if cfg.spec_path else None
    prepared = hyp.prepared(cfg.params, base_dir)
    conditions = hyp.design(cfg.params)
    labels = [c["condition"] for c in conditions]
    if len(set(labels)) != len(labels):
        raise SpecError("params", labels, "distinct condition labels")
    tasks = []
    for cond in conditions:
        for s in cfg.seeds:
            inputs = {"hypothesis": hyp.name, "version": hyp.version, "prepared": prepared,
                      "condition": cond, "seed": s}
            tasks.append(Task(fn=execute_task, args=(hyp.name, prepared, cond, s), inputs=inputs,
                              label=f"{hyp.name}[{cond['condition']}, seed {s}]",
                              coords={"condition": cond["condition"], "seed": s}))
    return tasks


def _preload(cfg: RunConfig) -> tuple[str, ...]:
    """Modules Dask workers import in their main thread first (Brian2 sets a signal handler)."""
    mods = list(cfg.hypothesis.requires)
    if "spiking" in getattr(cfg.params, "backends", ()):
        mods += ["cortex_resnet.spiking.simulator", "brian2"]
    return tuple(dict.fromkeys(mods))


def _check_requires(hyp: Hypothesis) -> None:
    for mod in hyp.requires:
        try:
            importlib.import_module(mod)
        except ImportError as err:
            raise SpecError("hypothesis", hyp.name,
                            f"a hypothesis whose code is installed: it needs {mod} ({err})") from None


def _prepare_out(out: str | Path | None, name: str, quick: bool) -> Path:
    out_dir = Path(out) if out is not None else default_out(name, quick)
    if out_dir.exists() and not out_dir.is_dir():
        raise SpecError("--out", str(out_dir), "a directory (it is an existing file)")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "figures").mkdir(exist_ok=True)
    return out_dir


def with_condition_coords(ds: Any, conditions: list[dict[str, Any]]) -> Any:
    """Scalar condition parameters (e.g. ``J_EE``) as coordinates along ``condition``."""
    keys = [k for k in conditions[0] if k != "condition"]
    coords = {}
    for k in keys:
        vals = [c.get(k) for c in conditions]
        if k not in ds.variables and all(isinstance(v, (int, float, str, bool)) for v in vals):
            coords[k] = ("condition", vals)
    return ds.assign_coords(coords)


def analyze_dataset(hyp: Hypothesis, ds: Any, params: Params, options: AnalysisOptions) -> Analysis:
    return hyp.analyze(ds, params, options).finalize(options.alpha)


def run_hypothesis(name: str, *, quick: bool = False, seeds: int | None = None, seed: int | None = None,
                   scheduler: str | None = None, workers: int = 2, out: str | Path | None = None,
                   spec: str | Path | None = None, progress: bool = False,
                   connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S, cache: bool = True,
                   figure: bool = True) -> dict[str, Any]:
    """Run one hypothesis end to end and write its report.

    Parameters
    ----------
    name : registered hypothesis name (:func:`~cortex_resnet.hypotheses.known_hypotheses`)
    quick : tiny sizes and few seeds (the spec's ``[quick]`` table)
    seeds : number of seeds (>= 2), overriding the spec
    seed : first seed (task seeds are ``seed .. seed + seeds - 1``)
    scheduler : address of a running Dask scheduler; None starts a LocalCluster
    workers : LocalCluster worker processes; 0 runs the tasks serially in this process
    out : output folder (created); rerunning into it resumes from the task cache
    spec : an experiment spec file instead of ``experiments/hypotheses/NAME.toml``
    connect_timeout_s : how long to wait for ``scheduler`` (s)
    cache : reuse and store finished tasks under ``out/.cache``

    Returns
    -------
    dict
        The summary: ``name, verdict, test, statistic, p_value, effect_size, ci, seeds, out``
        (the CLI's ``--json`` contract) and more.
    """
    cfg = load_run_config(name, spec_path=spec, quick=quick, seeds=seeds, seed=seed)
    hyp = cfg.hypothesis
    _check_requires(hyp)
    tasks = build_tasks(cfg)  # validates params (files read, specs parsed) before any output
    out_dir = _prepare_out(out, name, quick)
    start = time.perf_counter()
    results = run_tasks(tasks, scheduler=scheduler, workers=workers,
                        cache_dir=(out_dir / ".cache") if cache else None, progress=progress,
                        connect_timeout_s=connect_timeout_s, desc=name, preload=_preload(cfg))
    compute_s = time.perf_counter() - start
    attrs = {"hypothesis": name, "quick": int(quick), "params": json.dumps(cfg.params.model_dump(mode="json")),
             "spec": json.dumps(cfg.spec.model_dump(mode="json")), "seeds": json.dumps(list(cfg.seeds)),
             "spec_path": str(cfg.spec_path or ""), "versions": json.dumps(library_versions())}
    ds = with_condition_coords(to_dataset(tasks, results, ("condition", "seed"), hyp.var_dims, attrs),
                               hyp.design(cfg.params))
    analysis = analyze_dataset(hyp, ds, cfg.params, cfg.options)
    runtime_s = time.perf_counter() - start
    return write_report(out_dir, cfg, ds, analysis, runtime_s=runtime_s, compute_s=compute_s,
                        figure=figure, save_results=True)


def rebuild_report(directory: str | Path) -> dict[str, Any]:
    """Re-analyse ``DIR/results.nc`` with the spec stored in it; rewrite report and figure."""
    d = Path(directory)
    if not (d / "results.nc").is_file():
        raise SpecError("DIR", str(d), "a hypothesis run folder containing results.nc (from `hypothesis run`)")
    ds = load_dataset(d / "results.nc")
    try:
        name = str(ds.attrs["hypothesis"])
        stored = json.loads(ds.attrs["spec"])
        stored.pop("n_boot", None)  # runs from before the exact intervals stored a bootstrap size
        spec = HypothesisSpec.model_validate(stored)
        raw_params = json.loads(ds.attrs["params"])
        seeds = tuple(json.loads(ds.attrs["seeds"]))
        quick = bool(int(ds.attrs.get("quick", 0)))
    except (KeyError, ValueError, tomllib.TOMLDecodeError) as err:
        raise SpecError("results.nc", str(d / "results.nc"),
                        f"a results file written by `hypothesis run` (missing/invalid attribute: {err})") from None
    hyp = get_hypothesis(name)
    params = hyp.parse_params(raw_params)
    path = Path(ds.attrs["spec_path"]) if ds.attrs.get("spec_path") else None
    cfg = RunConfig(hyp, spec, params, seeds, quick, path)
    analysis = analyze_dataset(hyp, ds, params, cfg.options)
    old = {}
    if (d / "report.json").is_file():
        try:
            old = json.loads((d / "report.json").read_text())
        except ValueError:
            old = {}
    return write_report(d, cfg, ds, analysis, runtime_s=float(old.get("runtime_s") or 0.0),
                        compute_s=float(old.get("compute_s") or 0.0), figure=True, save_results=False)

