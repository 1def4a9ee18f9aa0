"""Figures of the bridge and of training, from saved results.

* :func:`unroll_check_dataset` / :func:`plot_unroll_check` — the simulator's
  trajectory and the unrolled network's, overlaid, with their deviation per
  step on a log axis (float64 and float32).
* :func:`plot_training_curves` — loss and accuracy per epoch of one or more runs.
* :func:`plot_anytime_accuracy` — test accuracy of the readout at every time step
  (ms) for several runs (plain / residual / tied / untied).
* :func:`plot_compare` — the same trained weights scored as network, rate
  circuit and spiking circuit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import xarray as xr

from cortex_resnet.model.circuit import Circuit
from cortex_resnet.errors import SpecError
from cortex_resnet.plots.base import COLUMN_WIDTH_IN, PALETTE, POP_COLORS, _as_dataset, rate_label, save_figure, styled
from cortex_resnet.io.results import require_vars
from cortex_resnet.bridge import unroll
from cortex_resnet.bridge.check import simulator_trajectory
from cortex_resnet.training.report import read_metrics

__all__ = ["unroll_check_dataset", "plot_unroll_check", "plot_training_curves", "plot_anytime_accuracy",
           "plot_compare", "VARIANT_COLORS"]

VARIANT_COLORS = {"tied": PALETTE["blue"], "untied": PALETTE["green"], "plain": PALETTE["vermillion"],
                  "projection": PALETTE["purple"], "gated": PALETTE["orange"], "residual": PALETTE["sky"]}


def unroll_check_dataset(circuit: Circuit, steps: int, dt_ms: float, u: np.ndarray) -> xr.Dataset:
    """Simulator vs unrolled tied net in float64 and float32, as a Dataset to save and plot.

    Variables ``r_sim``, ``r_net`` (dtype, step, unit) for the first stimulus and
    ``abs_error`` (dtype, step) = max over units and stimuli.
    """
    sims, nets, errs = [], [], []
    for name, dt in (("float64", torch.float64), ("float32", torch.float32)):
        net = unroll(circuit, steps, dt_ms, dtype=dt)
        ut = torch.as_tensor(u, dtype=dt)
        with torch.no_grad():
            r_net = net(ut).cpu()
        r_sim = simulator_trajectory(circuit, ut, steps, dt_ms, "sustained", dt)
        sims.append(r_sim[:, 0].double().numpy())
        nets.append(r_net[:, 0].double().numpy())
        errs.append((r_net - r_sim).abs().flatten(1).max(dim=1).values.double().numpy())
    return xr.Dataset(
        {"r_sim": (("dtype", "step", "unit"), np.stack(sims)), "r_net": (("dtype", "step", "unit"), np.stack(nets)),
         "abs_error": (("dtype", "step"), np.stack(errs))},
        coords={"dtype": ["float64", "float32"], "step": np.arange(steps + 1),
                "time": ("step", dt_ms * np.arange(steps + 1), {"units": "ms"}),
                "population": ("unit", circuit.population.astype(str))},
        attrs={"circuit": circuit.spec.name, "dt_ms": dt_ms, "steps": steps, "rate_units": circuit.rate_units,
               "hz_per_unit": json.dumps(circuit.hz_per_unit)})


@styled
def plot_unroll_check(result: xr.Dataset | str | Path, path: str | Path) -> Path:
    """Overlay of simulator and unrolled net (population means) and the per-step deviation (log)."""
    ds = _as_dataset(result)
    require_vars(ds, ["r_sim", "r_net", "abs_error"], "the unroll check plot")
    fig, (ax_t, ax_e) = plt.subplots(1, 2, figsize=(2 * COLUMN_WIDTH_IN, 2.5))
    t = ds["time"].values
    d64 = ds.sel(dtype="float64")
    for pop in ("E", "I"):
        sel = ds["population"] == pop
        ax_t.plot(t, d64["r_sim"].where(sel).mean("unit"), color=POP_COLORS[pop], lw=2.5, alpha=0.45,
                  label=f"{pop}: simulator (Euler)")
        ax_t.plot(t, d64["r_net"].where(sel).mean("unit"), color=POP_COLORS[pop], ls="--", lw=1,
                  label=f"{pop}: unrolled residual net")
    ax_t.set_xlabel("time (ms) = step x dt")
    ax_t.set_ylabel(f"mean rate ({rate_label(ds)})")
    ax_t.set_title(f"{ds.attrs.get('circuit', '')}: {int(ds.attrs.get('steps', len(t) - 1))} blocks",
                   loc="left")
    ax_t.legend(fontsize=6)
    for name, color in (("float64", PALETTE["black"]), ("float32", PALETTE["orange"])):
        err = ds["abs_error"].sel(dtype=name).values
        ax_e.semilogy(t, np.maximum(err, 1e-20), color=color, marker=".", ms=3, label=name)
    ax_e.axhline(1e-10, color=PALETTE["black"], ls=":", lw=0.8, label="float64 tolerance 1e-10")
    ax_e.set_xlabel("time (ms)")
    ax_e.set_ylabel("max |r_net - r_sim|")
    ax_e.set_title("deviation per step (0 plotted as 1e-20)", loc="left")
    ax_e.legend(fontsize=6)
    fig.tight_layout()
    return save_figure(fig, path)


def _run_label(run: Path) -> tuple[str, dict]:
    rep_path = run / "report.json"
    if not rep_path.is_file():
        raise SpecError("run", str(run), "a finished training run folder (with report.json and metrics.csv)")
    rep = json.loads(rep_path.read_text())
    return f"{rep.get('variant') or rep.get('model')}", rep


def _metrics(run: Path) -> list[dict[str, float]]:
    if not (run / "metrics.csv").is_file():
        raise SpecError("run", str(run), "a training run folder with metrics.csv")
    return read_metrics(run / "metrics.csv")


@styled
def plot_training_curves(runs: Sequence[str | Path], path: str | Path) -> Path:
    """Train/test loss and test accuracy per epoch for each run folder."""
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(2 * COLUMN_WIDTH_IN, 2.4))
    for i, run in enumerate(map(Path, runs)):
        label, _ = _run_label(run)
        m = _metrics(run)
        ep = [r["epoch"] for r in m]
        c = VARIANT_COLORS.get(label, plt.cm.tab10(i))
        ax_l.plot(ep, [r["train_loss"] for r in m], color=c, label=f"{label} train")
        ax_l.plot(ep, [r["test_loss"] for r in m], color=c, ls="--", label=f"{label} test")
        ax_a.plot(ep, [100 * r["test_accuracy"] for r in m], color=c, marker="o", ms=2, label=label)
    ax_l.set_xlabel("epoch")
    ax_l.set_ylabel("cross-entropy loss")
    ax_l.legend(fontsize=6)
    ax_a.set_xlabel("epoch")
    ax_a.set_ylabel("test accuracy (%)")
    ax_a.legend(fontsize=6)
    fig.tight_layout()
    return save_figure(fig, path)


@styled
def plot_anytime_accuracy(runs: Sequence[str | Path], path: str | Path) -> Path:
    """Test accuracy of the readout at each time step (final epoch), per run."""
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 2.5))
    chance = None
    for i, run in enumerate(map(Path, runs)):
        label, rep = _run_label(run)
        acc = rep.get("accuracy_per_step")
        if not acc:
            raise SpecError("run", str(run), "a circuit run with per-step accuracies (accuracy_per_step)")
        dt = float(rep.get("dt_ms") or _dt_from_config(run))
        t = dt * np.arange(1, len(acc) + 1)
        ax.plot(t, 100 * np.asarray(acc), marker="o", ms=2.5, color=VARIANT_COLORS.get(label, plt.cm.tab10(i)),
                label=label)
        chance = rep.get("chance", chance)
    if chance:
        ax.axhline(100 * chance, color="0.6", ls=":", lw=0.8, label="chance")
    ax.set_xlabel("time of readout (ms)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("anytime readout from pyramidal cells", loc="left")
    ax.legend(fontsize=6)
    return save_figure(fig, path)


def _dt_from_config(run: Path) -> float:
    import tomllib

    cfg = run / "config.toml"
    if cfg.is_file():
        model = tomllib.loads(cfg.read_text()).get("model", {})
        if "dt_ms" in model:
            return float(model["dt_ms"])
    return 1.0


@styled
def plot_compare(result: str | Path | dict, path: str | Path) -> Path:
    """Accuracy per step of the same weights as network, rate circuit and spiking circuit."""
    data = result if isinstance(result, dict) else json.loads(Path(result).read_text())
    if "accuracy_per_step" not in data:
        raise SpecError("compare", str(result), "a compare.json written by `cortex-resnet compare`")
    fig, (ax_s, ax_b) = plt.subplots(1, 2, figsize=(2 * COLUMN_WIDTH_IN, 2.4),
                                     gridspec_kw={"width_ratios": [1.6, 1]})
    colors = {"network": PALETTE["black"], "rate": PALETTE["blue"], "spiking": PALETTE["vermillion"]}
    for k, acc in data["accuracy_per_step"].items():
        if acc:
            ax_s.plot(np.arange(1, len(acc) + 1), 100 * np.asarray(acc), marker="o", ms=2,
                      color=colors.get(k, "0.5"), ls="-" if k != "rate" else "--", label=k)
    ax_s.set_xlabel("step")
    ax_s.set_ylabel("test accuracy (%)")
    ax_s.legend(fontsize=6)
    names = ["network", "rate", "spiking"]
    vals = [data.get(f"{n}_accuracy") for n in names]
    ax_b.bar(names, [100 * (v or 0) for v in vals], color=[colors[n] for n in names])
    for i, v in enumerate(vals):
        ax_b.text(i, 100 * (v or 0) + 1, "n/a" if v is None else f"{100 * v:.1f}", ha="center", fontsize=6)
    ax_b.set_ylabel("final accuracy (%)")
    ax_b.set_ylim(0, 105)
    fig.tight_layout()
    return save_figure(fig, path)
