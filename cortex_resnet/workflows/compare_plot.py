"""The ``compare`` figure: accuracy against readout time of network, rate circuit and spiking
circuit (the anytime curves, n on every label) over ``x``, ``F(x)`` and ``r`` of a few examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from cortex_resnet.plots.base import COLUMN_WIDTH_IN, PALETTE, POP_COLORS, save_figure, style

__all__ = ["plot_compare"]


def plot_compare(summary: dict[str, Any], traj: dict[str, torch.Tensor], circuit, path: Path,
                 spiking: dict[str, Any] | None = None) -> Path:
    """Per-step accuracy (network, rate, spiking) and ``x`` vs ``F(x)`` of a few examples (E means)."""
    import matplotlib.pyplot as plt


    style()
    n_ex = traj["r"].shape[1] if traj else 0
    fig = plt.figure(figsize=(2 * COLUMN_WIDTH_IN, 4.2), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.1, 1])
    ax = top.subplots(1, 1)
    axes = [ax] + list(np.atleast_1d(bottom.subplots(1, max(n_ex, 1), sharey=True)))
    _plot_anytime(ax, summary, PALETTE)
    dt, is_e = summary["dt_ms"], circuit.is_E
    for j in range(n_ex):
        a = axes[1 + j]
        r, xr = traj["r"][:, j].numpy(), traj["x"][:, j].numpy()
        tt = dt * np.arange(r.shape[0])
        a.plot(tt, r[:, is_e].mean(1), color=POP_COLORS["E"], label="r = x + F(x)")
        a.plot(tt, xr[:, is_e].mean(1), color=POP_COLORS["E"], ls="--", label="x")
        a.plot(tt, (r - xr)[:, is_e].mean(1), color=PALETTE["black"], ls=":", label="F(x)")
        if spiking is not None and "rates_E_time" in spiking and j < spiking["rates_E_time"].shape[1]:
            st = spiking["time_ms"]
            a.plot(st, spiking["rates_E_time"][:, j], color=PALETTE["vermillion"], lw=0.8,
                   label="spiking r")
            a.plot(st, spiking["x_E_time"][:, j], color=PALETTE["vermillion"], lw=0.8, ls="--",
                   label="spiking x")
        a.set_title(f"test example {int(traj['index'][j])} (E mean)", loc="left")
        a.set_xlabel("time (ms)")
        a.axhline(0, color="0.85", lw=0.6, zorder=0)
    if n_ex:
        axes[1].legend(loc="best")
        axes[1].set_ylabel(f"rate ({circuit.rate_units}; spiking Hz / {next(iter(circuit.hz_per_unit.values())):g})")
    return save_figure(fig, path)


def _plot_anytime(ax, summary: dict[str, Any], PALETTE: dict[str, str]) -> None:
    """Top panel: accuracy vs readout time of network, rate circuit and spiking circuit, n on every label."""
    dt, K = summary["dt_ms"], summary["steps"]
    acc, any_ = summary["accuracy_per_step"], summary.get("anytime")
    if any_ is None:  # no spiking run: the per-step curves of the whole test set
        t = dt * np.arange(1, K + 1)
        ax.plot(t, 100 * np.asarray(acc["network"]), color=PALETTE["black"], label=f"network (n = {summary['n_test']})")
        ax.plot(t, 100 * np.asarray(acc["rate"]), "o", ms=3, mfc="none", color=PALETTE["blue"],
                label=f"rate circuit (n = {summary['n_test']})")
    else:  # the anytime curves of the examples run as spiking networks
        n = any_["n"]
        ax.plot(any_["network_time_ms"], 100 * np.asarray(any_["network"]), color=PALETTE["black"],
                label=f"network, step t = k dt (n = {n})")
        ax.plot(any_["readout_ms"], 100 * np.asarray(any_["rate_circuit"]), "o--", ms=3, mfc="none",
                color=PALETTE["blue"], label=f"rate circuit, mean rate in [t/2, t) (n = {n})")
        ax.plot(any_["readout_ms"], 100 * np.asarray(any_["spiking"]), "s-", ms=3, color=PALETTE["vermillion"],
                label=f"spiking, E-pool counts in [t/2, t) (n = {n})")
        if "naive" in summary:
            nv = summary["naive"]["anytime"]
            ax.plot(nv["readout_ms"], 100 * np.asarray(nv["spiking"]), "^:", ms=3, color=PALETTE["green"],
                    label=f"naive conversion (no gain scaling) (n = {nv['n']})")
    ax.axhline(100 * summary["chance"], color="0.7", lw=0.8, ls=":", label="chance")
    ax.set_xlabel("readout time t (ms)")
    ax.set_xscale("log" if any_ is not None else "linear")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("anytime readout: test accuracy of the trained E readout vs readout time", loc="left")
    ax.set_ylim(0, 100)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
