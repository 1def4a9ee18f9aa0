"""The end-to-end demo (``cortex-resnet demo``, what ``make demo`` runs).

1. simulate the canonical microcircuit with the rate model and 2. as a spiking
network (Brian2), each decomposed into ``r = x + F(x)``;
3. unroll it into residual blocks and check the unrolled net against the
simulator in float64 and float32;
4. train a small tied (recurrent circuit) and untied (ResNet) net;
5. compare the trained tied net as network, rate circuit and spiking circuit (the whole test
   set through the torch spiking engine; ``quick``: 4 examples);
6. run two quick hypotheses (ISN paradox, cortical amplification).

Everything lands in ``OUT/`` (default ``demo_out/``): result files, figures and
``summary.md`` / ``summary.json``. ``quick=True`` shrinks every step (the test
suite runs it); the full demo takes a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cortex_resnet.catalog import experiments_dir, models_dir
from cortex_resnet.io.outdir import OutputFolder, claim_folder
from cortex_resnet.io.results import atomic_write_text, save_dataset
from cortex_resnet import load_model
from cortex_resnet.bridge.check import check_unroll
from cortex_resnet.model.circuit import Circuit
from cortex_resnet.workflows.compare import compare_run
from cortex_resnet.training.experiment import load_experiment
from cortex_resnet.hypotheses.runner import run_hypothesis
from cortex_resnet.plots.base import plot_decomposition, plot_raster
from cortex_resnet.rate.simulator import simulate
from cortex_resnet.spiking.simulator import simulate_spiking
from cortex_resnet.training.loop import train

__all__ = ["run_demo", "DEMO_FILES"]

# what the demo writes at the top of OUT/ (checked against foreign files before any work)
DEMO_FILES = ("rate.nc", "decomposition_rate.png", "spiking.nc", "decomposition_spiking.png",
              "raster_spiking.png", "train_tied", "train_untied", "compare.png", "hypotheses",
              "summary.json", "summary.md")



def _fmt(x: Any, nd: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{nd}g}"
    return str(x)


class _Steps:
    """Times each step and reports it on one line (the demo's progress display)."""

    def __init__(self, total: int, echo: Callable[[str], None]):
        self.total, self.i, self.echo = total, 0, echo
        self.timings: dict[str, float] = {}

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        self.i += 1
        self.echo(f"[{self.i}/{self.total}] {name} ...")
        t0 = time.perf_counter()
        out = fn()
        self.timings[name] = time.perf_counter() - t0
        self.echo(f"[{self.i}/{self.total}] {name}: done in {self.timings[name]:.1f} s")
        return out


def run_demo(out: str | Path = "demo_out", *, quick: bool = False, seed: int = 0,
             echo: Callable[[str], None] = print, progress: bool = True,
             force: bool = False) -> dict[str, Any]:
    """Run the whole demo; return the summary (also written to ``OUT/summary.json``).

    Parameters
    ----------
    out : output folder: new, empty, or one an earlier demo wrote (only the files it
        wrote are replaced); a folder holding other files is refused
    quick : tiny settings (seconds instead of minutes)
    seed : seed of every random step
    echo : where progress lines go
    force : write into a folder beside files the demo did not write (never touching them)

    Raises
    ------
    SpecError
        ``out`` holds files the demo did not write (without ``force``), or one where the
        demo writes.
    """
    with claim_folder(out, "demo", force=force, expected=DEMO_FILES) as folder:
        return _run_demo(folder, quick=quick, seed=seed, echo=echo, progress=progress)


@dataclass(frozen=True)
class _Demo:
    """What every step of the demo reads: the folder, the circuit, the stimulus and the settings."""

    out: Path
    circuit: Circuit
    quick: bool
    seed: int
    progress: bool
    stimulus: str = "step:amp=1.0,onset_ms=50"


def _run_demo(folder: OutputFolder, *, quick: bool, seed: int, echo: Callable[[str], None],
              progress: bool) -> dict[str, Any]:
    out = folder.path
    for sub in ("train_tied", "train_untied", "hypotheses"):
        folder.remove_own(sub)  # an earlier demo's runs (train refuses a folder holding a run)
    out.mkdir(parents=True, exist_ok=True)
    steps = _Steps(7, echo)
    summary: dict[str, Any] = {"out": str(out), "quick": quick, "seed": seed}
    d = _Demo(out, load_model(models_dir() / "canonical_microcircuit.toml", seed=seed), quick, seed, progress)
    summary["rate"] = steps.run("simulate the canonical microcircuit (rate model)", lambda: _rate_step(d))
    summary["spiking"] = steps.run("simulate it as a spiking network (Brian2)", lambda: _spiking_step(d))
    summary["unroll"] = steps.run("unroll it into residual blocks and check against the simulator",
                                  lambda: _unroll_step(d))
    trained = steps.run("train a tied (recurrent) and an untied (ResNet) net",
                        lambda: {v: _train_one(d, v) for v in ("tied", "untied")})
    summary["train"] = {v: {k: trained[v].get(k) for k in ("test_accuracy", "params", "epochs", "dataset",
                                                           "examples_per_s")} for v in trained}
    summary["compare"] = steps.run("run the trained tied net as network, rate and spiking circuit",
                                   lambda: compare_run(out / "train_tied", spiking_examples=4 if quick else None,
                                                       seed=seed, figure=out / "compare.png"))
    hyps = steps.run("test two hypotheses (quick)", lambda: _hypotheses_step(d))
    summary["hypotheses"] = {n: {k: h.get(k) for k in ("verdict", "test", "p_value", "effect_size", "seeds")}
                             for n, h in hyps.items()}
    summary["timings_s"] = steps.timings
    steps.run("write the summary", lambda: _write_summary(out, summary))
    return summary


def _rate_step(d: _Demo) -> dict[str, Any]:
    ds = simulate(d.circuit, d.stimulus, duration_ms=200 if d.quick else 400, dt_ms=0.1, record_stride=10,
                  device="cpu")
    save_dataset(ds, d.out / "rate.nc")
    plot_decomposition(ds, d.out / "decomposition_rate.png")
    e = ds["population"] == "E"
    r_e, x_e = float(ds["r"].isel(time=-1).where(e).mean()), float(ds["x"].isel(time=-1).where(e).mean())
    return {"r_E": r_e, "x_E": x_e, "x_over_r_E": x_e / r_e, "units": d.circuit.rate_units,
            "hz_per_unit_E": float(d.circuit.hz_per_unit["E"])}


def _spiking_step(d: _Demo) -> dict[str, Any]:
    ds = simulate_spiking(d.circuit, d.stimulus, duration_ms=200 if d.quick else 400, seed=d.seed)
    save_dataset(ds, d.out / "spiking.nc")
    plot_decomposition(ds, d.out / "decomposition_spiking.png")
    try:
        plot_raster(ds, d.out / "raster_spiking.png")
    except ImportError:
        pass
    half = ds["time"] > float(ds["time"].values[-1]) / 2
    rates = {p: float(ds["r"].where(half & (ds["population"] == p)).mean()) for p in ("E", "I")}
    return {"mean_rate": rates, "units": ds.attrs.get("rate_units", "")}


def _unroll_step(d: _Demo) -> dict[str, Any]:
    res = check_unroll(d.circuit, 20 if d.quick else 50, 0.5, np.array([[1.0]]))
    return {k: res[k] for k in ("max_abs_error", "max_rel_error", "within_tolerance", "params")}


def _train_one(d: _Demo, variant: str) -> dict[str, Any]:
    name = "digits_tied" if d.quick else "mnist1d_tied"
    spec = load_experiment(experiments_dir() / f"{name}.toml")
    spec = spec.replace(**{"model.variant": variant, "seed": d.seed, "device": "cpu",
                           "train.epochs": 2 if d.quick else 12})
    return train(spec, d.out / f"train_{variant}", progress=d.progress)


def _hypotheses_step(d: _Demo) -> dict[str, Any]:
    return {name: run_hypothesis(name, quick=True, workers=0, out=d.out / "hypotheses" / name, seed=d.seed)
            for name in ("isn-paradox", "amplification")}


def _write_summary(out: Path, s: dict[str, Any]) -> None:
    atomic_write_text(out / "summary.json", json.dumps(s, indent=2, default=str))
    u = s["unroll"]
    c = s["compare"]
    lines = [
        "# cortex_resnet demo", "",
        f"Settings: {'quick' if s['quick'] else 'full'}, seed {s['seed']}. Total time "
        f"{sum(s['timings_s'].values()):.0f} s.", "",
        "## 1-2. The canonical microcircuit, rate and spiking", "",
        f"* Rate model: steady E rate {_fmt(s['rate']['r_E'])} {s['rate']['units']} (1 {s['rate']['units']} = "
        f"{s['rate']['hz_per_unit_E']:g} Hz), feedforward part x_E {_fmt(s['rate']['x_E'])}: "
        f"removing recurrence leaves {100 * s['rate']['x_over_r_E']:.0f} % of the response "
        "(cat V1: 46 %, mouse L4: ~33 %).",
        f"* Spiking network: mean pool rates E {_fmt(s['spiking']['mean_rate']['E'])}, "
        f"I {_fmt(s['spiking']['mean_rate']['I'])} ({s['spiking']['units']}).",
        "", "![rate](decomposition_rate.png) ![spiking](decomposition_spiking.png)", "",
        "## 3. The unrolled residual network equals the simulator", "",
        f"* max abs error float64 {_fmt(u['max_abs_error'].get('float64'))}, "
        f"max rel error float32 {_fmt(u['max_rel_error'].get('float32'))} "
        f"({'within' if u['within_tolerance'] else 'OUTSIDE'} the tolerances 1e-10 / 1e-5).", "",
        "## 4. Training", "",
        "| variant | test accuracy | parameters | epochs |", "|---|---|---|---|",
    ]
    for v, t in s["train"].items():
        lines.append(f"| {v} | {_fmt(t['test_accuracy'])} | {t['params']} | {t['epochs']} |")
    lines += ["", "## 5. Network vs rate circuit vs spiking circuit", "",
              f"* network {_fmt(c.get('network_accuracy'))} and rate circuit {_fmt(c.get('rate_accuracy'))} "
              f"(n = {c.get('n_test')} test examples); spiking circuit {_fmt(c.get('spiking_accuracy'))} "
              f"(n = {c.get('n_spiking')}{', the whole test set' if c.get('n_spiking') == c.get('n_test') else ''}; "
              f"the network on the same examples {_fmt(c.get('network_accuracy_on_spiking_subset'))}); "
              f"agreement {json.dumps(c.get('agreement'))}",
              "", "![compare](compare.png)", "", "## 6. Hypotheses (quick)", "",
              "| hypothesis | verdict | test | p | effect size |", "|---|---|---|---|---|"]
    for n, h in s["hypotheses"].items():
        lines.append(f"| {n} | {h['verdict']} | {h['test']} | {_fmt(h['p_value'])} | {_fmt(h['effect_size'])} |")
    lines += ["", "## Timings (s)", ""] + [f"* {k}: {v:.1f}" for k, v in s["timings_s"].items()]
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
