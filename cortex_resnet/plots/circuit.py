"""Figures of a circuit's structure and its linear regime.

* :func:`plot_weights_spectrum` — the weight matrix with E/I blocks (Dale's law
  visible as blue E columns and red I columns) and the Jacobian's eigenvalues
  with the stability line ``Re = 0``.
* :func:`plot_isn_paradox` — the rate response of E and I to extra drive onto I
  (the inhibition-stabilised network's paradoxical I decrease).
* :func:`plot_amplification` — the response ``r`` against the feedforward part
  ``x`` per population: how much recurrence amplifies.

Each takes a saved result (Dataset or netCDF path); the circuit is rebuilt
from the spec and seed stored in the result, so nothing is rerun.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.colors import TwoSlopeNorm

from cortex_resnet.model.analysis import analyze
from cortex_resnet.model.circuit import Circuit, build_circuit
from cortex_resnet.plots.base import (COLUMN_WIDTH_IN, PALETTE, POP_COLORS, _as_dataset, decomposition_panel, rate_label, save_figure,
                    styled)
from cortex_resnet.io.results import population_names, require_vars
from cortex_resnet.model.spec import parse_spec
from cortex_resnet.errors import SpecError

__all__ = ["circuit_from_result", "plot_weights_spectrum", "plot_isn_paradox", "plot_amplification"]


def circuit_from_result(result: xr.Dataset | str | Path) -> Circuit:
    """Rebuild the circuit of a result from its stored spec and seed."""
    ds = _as_dataset(result)
    if "spec" not in ds.attrs:
        raise SpecError("result", "no 'spec' attribute", "a cortex_resnet result file")
    return build_circuit(parse_spec(json.loads(ds.attrs["spec"])))


@styled
def plot_weights_spectrum(result: xr.Dataset | str | Path | Circuit, path: str | Path,
                          *, u: float | None = None) -> Path:
    """Weight matrix (post x pre, E/I blocks) and the Jacobian spectrum at the operating point.

    ``u``: the constant input of the operating point (default: the result's last input).
    """
    if isinstance(result, Circuit):
        circuit, u0 = result, 0.0
    else:
        ds = _as_dataset(result)
        circuit = circuit_from_result(ds)
        u0 = ds["u"].isel(time=-1, batch=0).values if "u" in ds else 0.0
    u_op = u0 if u is None else u
    lin = analyze(circuit, u_op)
    fig, (ax_w, ax_e) = plt.subplots(1, 2, figsize=(2 * COLUMN_WIDTH_IN, 2.9),
                                     gridspec_kw={"width_ratios": [1.1, 1]})
    W = circuit.W
    lim = float(np.max(np.abs(W))) or 1.0
    im = ax_w.imshow(W, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -lim, lim), interpolation="nearest")
    nE = circuit.n_E
    for sl in list(circuit.layout.values())[:-1]:  # a line after every population (E/I: one line)
        ax_w.axhline(sl.stop - 0.5, color="k", lw=0.6 if sl.stop == nE else 0.3)
        ax_w.axvline(sl.stop - 0.5, color="k", lw=0.6 if sl.stop == nE else 0.3)
    ax_w.set_xlabel("presynaptic unit (" + ", ".join(f"{k}: {sl.start}-{sl.stop - 1}"
                                                    for k, sl in circuit.layout.items()) + ")")
    ax_w.set_ylabel("postsynaptic unit")
    ax_w.set_title("W: E columns >= 0, I columns <= 0 (Dale)", loc="left")
    fig.colorbar(im, ax=ax_w, fraction=0.046, pad=0.04, label="weight")
    ev = lin.eigenvalues
    ax_e.axvline(0, color=PALETTE["black"], lw=0.8, ls="--", label="stability line Re = 0")
    ax_e.scatter(ev.real, ev.imag, s=8, color=PALETTE["purple"], alpha=0.8, label="eig(Jacobian)")
    ax_e.set_xlabel("Re(eigenvalue) (1/ms)")
    ax_e.set_ylabel("Im(eigenvalue) (1/ms)")
    ax_e.set_title(f"max Re = {lin.max_eig_real:+.3g} /ms; "
                   f"{'ISN' if lin.inhibition_stabilized else 'non-ISN'} (E-E gain {lin.ee_loop_gain:.2f})",
                   loc="left")
    ax_e.legend(loc="best")
    fig.tight_layout()
    return save_figure(fig, path)


def _pop_mean(ds: xr.Dataset, var: str, pop: str) -> np.ndarray:
    """(time, batch) mean over population ``pop``'s units; ``"E"``/``"I"`` where no population has that
    name: every excitatory/inhibitory unit (the ``cell_type`` coordinate)."""
    names = np.asarray(ds["population"].values).astype(str)
    coord = "population" if pop in names or "cell_type" not in ds.coords else "cell_type"
    return ds[var].where(ds[coord] == pop, drop=True).mean("unit").values


def _pop_colors(ds: xr.Dataset) -> dict[str, str]:
    """One colour per population (E blue, I vermillion; named populations from the palette, in unit order)."""
    names = population_names(ds)
    if set(names) <= set(POP_COLORS):
        return {k: POP_COLORS[k] for k in names}
    cycle = [v for k, v in PALETTE.items() if k not in ("black", "grey", "gray")]
    return {k: cycle[i % len(cycle)] for i, k in enumerate(names)}


@styled
def plot_isn_paradox(result: xr.Dataset | str | Path, path: str | Path, *, batch: int = 0) -> Path:
    """E and I population rates around a step of extra drive onto I (ISN paradox)."""
    ds = _as_dataset(result)
    require_vars(ds, ["r", "u"], "the ISN paradox plot")
    fig, (ax_u, ax_r) = plt.subplots(2, 1, figsize=(COLUMN_WIDTH_IN, 3.2), sharex=True,
                                     gridspec_kw={"height_ratios": [1, 2.5]})
    t = ds["time"].values
    u = ds["u"].isel(batch=batch).values
    for ch in range(u.shape[1]):
        ax_u.plot(t, u[:, ch], color="0.3", lw=1)
    ax_u.set_ylabel("extra drive")
    for pop, color in _pop_colors(ds).items():  # one trace per population, by its name
        ax_r.plot(t, _pop_mean(ds, "r", pop)[:, batch], color=color, label=pop)
    ax_r.set_xlabel("time (ms)")
    ax_r.set_ylabel(f"rate ({rate_label(ds)})")
    rI = _pop_mean(ds, "r", "I")[:, batch]
    onset = int(np.argmax(np.abs(np.diff(u.sum(axis=1)))) )
    before, after = rI[max(onset - 1, 0)], rI[-1]
    ax_r.set_title(f"I rate {before:.3g} -> {after:.3g} after extra drive to I "
                   f"({'paradoxical' if after < before else 'not paradoxical'})", loc="left")
    ax_r.legend(loc="best")
    fig.align_ylabels((ax_u, ax_r))
    return save_figure(fig, path)


@styled
def plot_amplification(result: xr.Dataset | str | Path, path: str | Path) -> Path:
    """Steady response ``r`` vs feedforward part ``x`` per population and stimulus amplitude."""
    ds = _as_dataset(result)
    require_vars(ds, ["r", "x"], "the amplification plot")
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 2.6))
    amp = ds["u"].isel(time=-1).max("input").values
    for pop, color in _pop_colors(ds).items():
        r = _pop_mean(ds, "r", pop)[-1]
        x = _pop_mean(ds, "x", pop)[-1]
        ax.plot(amp, r, "o-", color=color, label=f"{pop}: r (with recurrence)")
        ax.plot(amp, x, "s--", color=color, alpha=0.6, label=f"{pop}: x (recurrence removed)")
    e_ratio = _pop_mean(ds, "x", "E")[-1] / np.where(_pop_mean(ds, "r", "E")[-1] == 0, np.nan, _pop_mean(ds, "r", "E")[-1])
    ax.set_xlabel("stimulus amplitude u")
    ax.set_ylabel(f"steady rate ({rate_label(ds)})")
    ax.set_title(f"x/r for E = {np.nanmean(e_ratio):.2f} (cat V1: 0.46; mouse L4: ~1/3)", loc="left")
    ax.legend(loc="best", fontsize=6)
    return save_figure(fig, path)


@styled
def plot_rate_vs_spiking(rate: xr.Dataset | str | Path, spiking: xr.Dataset | str | Path, path: str | Path,
                         *, batch: int = 0) -> Path:
    """The decomposition ``r = x + F(x)`` of the same circuit, rate model (left) and spiking (right).

    Rows: E and I population means; solid ``r``, dashed ``x``, dotted ``F(x)``.
    """
    panels = [("rate model", _as_dataset(rate)), ("spiking network (LIF pools)", _as_dataset(spiking))]
    for _, ds in panels:
        require_vars(ds, ["r", "x", "Fx"], "the rate vs spiking decomposition plot")
    fig, axes = plt.subplots(2, 2, figsize=(2 * COLUMN_WIDTH_IN, 3.6), sharex="col")
    hz = json.loads(panels[1][1].attrs.get("hz_per_unit", "null")) or {}
    for col, (title, ds) in enumerate(panels):
        for row, pop in enumerate(("E", "I")):
            ax = axes[row, col]
            # both columns in Hz: the rate model's units times the Hz per unit the spiking run used
            to_hz = col == 0 and ds.attrs.get("rate_units") != "Hz" and pop in hz
            decomposition_panel(ax, ds, pop, batch=batch, scale=hz[pop] if to_hz else 1.0,
                                units=f"Hz; rate model x {hz[pop]:g} Hz per unit" if to_hz else None)
            if row == 0:
                ax.set_title(title, loc="left")
            if row == 1:
                ax.set_xlabel("time (ms)")
    axes[0, 0].legend(loc="best", fontsize=6)
    fig.tight_layout()
    return save_figure(fig, path)
