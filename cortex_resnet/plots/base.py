"""Figures from saved results (xarray Datasets / netCDF files).

One style project-wide: labelled axes with units, the colour-blind-safe
Okabe-Ito palette, E and I colours fixed (E = blue, I = vermillion), sized for
a journal column. Every function takes a result (or its path) and an output
path; PNG plus SVG/PDF by the suffix given.

Importing this module changes no global matplotlib state: the style applies
inside each plotting function (``matplotlib.rc_context``), and the backend is
the user's (the command line chooses Agg for itself). Rate axes carry the
result's units: Hz for spiking results, the model's units otherwise, with the
Hz-per-unit factor where the units are not Hz.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Callable

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from cortex_resnet.io.results import atomic_path, load_dataset, population_names, require_vars

from cortex_resnet.io.outdir import SIGNATURE

__all__ = ["POP_COLORS", "PALETTE", "STYLE", "style", "styled", "rate_label", "save_figure", "decomposition_panel",
           "plot_decomposition", "plot_raster"]

# Okabe & Ito (2008) colour-blind-safe palette
PALETTE = {"blue": "#0072B2", "vermillion": "#D55E00", "green": "#009E73", "orange": "#E69F00",
           "sky": "#56B4E9", "purple": "#CC79A7", "yellow": "#F0E442", "black": "#000000"}
POP_COLORS = {"E": PALETTE["blue"], "I": PALETTE["vermillion"]}
COLUMN_WIDTH_IN = 3.5


STYLE: dict[str, Any] = {
    "figure.dpi": 150, "savefig.dpi": 200, "font.size": 8, "axes.titlesize": 8,
    "axes.labelsize": 8, "legend.fontsize": 7, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "axes.spines.top": False, "axes.spines.right": False, "lines.linewidth": 1.2,
    "legend.frameon": False, "svg.fonttype": "none",
}


def style() -> None:
    """Apply the project's style to the global rcParams (for a script composing its own figures;
    the functions of this package use :func:`styled` and leave the global state alone)."""
    matplotlib.rcParams.update(STYLE)


def styled(func: Callable) -> Callable:
    """Run a plotting function inside ``matplotlib.rc_context(STYLE)``."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with matplotlib.rc_context(STYLE):
            return func(*args, **kwargs)
    return wrapper


def rate_label(ds: xr.Dataset) -> str:
    """Units of a result's rates for an axis label: ``Hz``, or e.g. ``a.u.; 1 a.u. = 10 Hz``."""
    units = ds.attrs.get("rate_units", "a.u.")
    if units == "Hz":
        return "Hz"
    hz = json.loads(ds.attrs["hz_per_unit"]) if isinstance(ds.attrs.get("hz_per_unit"), str) else None
    if not hz:
        return units
    if len(set(hz.values())) == 1:
        return f"{units}; 1 {units} = {next(iter(hz.values())):g} Hz"
    return f"{units}; 1 {units} = " + ", ".join(f"{v:g} Hz ({k})" for k, v in hz.items())


def pop_color(pop: str, index: int = 0) -> str:
    """E/I colours for the two-population circuit; a palette colour per other named population."""
    if pop in POP_COLORS:
        return POP_COLORS[pop]
    others = [c for k, c in PALETTE.items() if c not in POP_COLORS.values() and k != "black"]
    return others[index % len(others)]


def _as_dataset(result: xr.Dataset | str | Path) -> xr.Dataset:
    return result if isinstance(result, xr.Dataset) else load_dataset(result)


def save_figure(fig: plt.Figure, path: str | Path) -> Path:
    """Save atomically in the format given by the suffix (.png, .svg, .pdf)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", bbox_inches="tight",
                    metadata={"Creator": f"{SIGNATURE} (matplotlib)"})  # recognised as ours
    plt.close(fig)
    return path


def decomposition_panel(ax: plt.Axes, ds: xr.Dataset, pop: str, *, batch: int = 0, scale: float = 1.0,
                        units: str | None = None) -> None:
    """One population's mean ``r`` (solid), ``x`` (dashed) and ``F(x)`` (dotted) on ``ax``,
    multiplied by ``scale`` and labelled in ``units`` (default: the result's, :func:`rate_label`)."""
    sel = ds.isel(batch=batch).where(ds["population"] == pop, drop=True)
    t = ds["time"].values
    c = pop_color(pop, population_names(ds).index(pop) if pop in population_names(ds) else 0)
    ax.plot(t, scale * sel["r"].mean("unit"), color=c, label="r = x + F(x)")
    ax.plot(t, scale * sel["x"].mean("unit"), color=c, ls="--", alpha=0.8, label="x (feedforward)")
    ax.plot(t, scale * sel["Fx"].mean("unit"), color=PALETTE["black"], ls=":", label="F(x) (recurrent)")
    ax.axhline(0, color="0.8", lw=0.6, zorder=0)
    ax.set_ylabel(f"{pop} rate ({units or rate_label(ds)})")


@styled
def plot_decomposition(result: xr.Dataset | str | Path, path: str | Path, *, batch: int = 0) -> Path:
    """``r(t)``, ``x(t)`` and ``F(x)(t)``, population means for E and I, one stimulus.

    Solid: ``r``; dashed: ``x`` (recurrence removed); dotted: ``F(x) = r - x``.
    """
    ds = _as_dataset(result)
    require_vars(ds, ["r", "x", "Fx"], "the decomposition plot")
    pops = population_names(ds)  # one panel per population (E and I for a two-population circuit)
    fig, axes = plt.subplots(len(pops), 1, figsize=(COLUMN_WIDTH_IN, 2.0 * len(pops)), sharex=True, squeeze=False)
    axes = axes[:, 0]
    for ax, pop in zip(axes, pops):
        decomposition_panel(ax, ds, pop, batch=batch)
        name = {"E": "pyramidal (E)", "I": "inhibitory (I)"}.get(pop, pop)
        ax.set_title(f"{name} — {ds.attrs.get('backend', '')} {ds.attrs.get('circuit', '')}", loc="left")
    axes[0].legend(loc="best")
    axes[-1].set_xlabel("time (ms)")
    fig.align_ylabels(axes)
    return save_figure(fig, path)


def _raster(ax: Any, ds: xr.Dataset, batch: int, n_per_population: int, seed: int,
            pops: list[str] | None = None, color_of: Callable[[str], str] | None = None) -> dict[str, float]:
    """Spikes of ``n_per_population`` neurons drawn (``seed``) from each population, one row each
    (populations from the bottom row up in the order ``pops``; default: the result's order).
    Returns the centre row of each population."""
    sel = ds["spike_batch"].values == batch
    t = ds["spike_time_ms"].values[sel]
    neuron = ds["spike_neuron"].values[sel]
    unit = ds["spike_unit"].values[sel]
    pop_of_unit = ds["population"].values
    rng = np.random.default_rng(seed)
    pool = int(ds.attrs.get("pool_size", 1))
    row0 = 0
    names = population_names(ds)
    centres = {}
    for p in pops or names:
        units = np.where(pop_of_unit == p)[0]
        neurons = (units[:, None] * pool + np.arange(pool)[None]).ravel()
        if neurons.size == 0:
            continue
        pick = np.sort(rng.choice(neurons, size=min(n_per_population, neurons.size), replace=False))
        rows = np.full(int(neurons.max()) + 1, -1)
        rows[pick] = row0 + np.arange(pick.size)
        keep = (pop_of_unit[unit] == p) & (rows[np.minimum(neuron, rows.size - 1)] >= 0) & (neuron < rows.size)
        ax.scatter(t[keep], rows[neuron[keep]], s=0.6, marker="|", color=(color_of or (lambda q: pop_color(q, names.index(q))))(p), linewidths=0.5,
                   label=f"{p} ({pick.size} of {neurons.size})", rasterized=True)
        centres[p] = row0 + (pick.size - 1) / 2
        row0 += pick.size
    ax.set_ylabel("neuron (sample)")
    ax.set_ylim(-1, max(row0, 1))
    ax.set_title(f"spiking {ds.attrs.get('circuit', '')} — raster", loc="left")
    ax.legend(loc="upper right", markerscale=8)
    return centres


@styled
def plot_raster(result: xr.Dataset | str | Path, path: str | Path, *, batch: int = 0,
                n_per_population: int = 100, seed: int = 0) -> Path:
    """Spiking result: raster of a sample of neurons, population rates beneath, and the
    ``x`` / ``F(x)`` split when the run was decomposed.

    Parameters
    ----------
    result : a spiking-backend Dataset (or its netCDF path) with ``spike_time_ms``, ``spike_neuron``
    path : output file (.png/.svg/.pdf)
    batch : which stimulus of the batch
    n_per_population : neurons drawn (at random, ``seed``) from each of E and I for the raster
    """
    ds = _as_dataset(result)
    require_vars(ds, ["spike_time_ms", "spike_neuron", "spike_unit", "spike_batch", "r"], "the raster plot")
    split = "x" in ds and "Fx" in ds
    fig, axes = plt.subplots(3 if split else 2, 1, figsize=(COLUMN_WIDTH_IN * 1.6, 5.2 if split else 3.8),
                             sharex=True, gridspec_kw={"height_ratios": [2.2, 1, 1] if split else [2.2, 1]})
    _raster(axes[0], ds, batch, n_per_population, seed)
    pops = population_names(ds)
    units_label = rate_label(ds)
    tt = ds["time"].values
    for p in pops:
        sub = ds.isel(batch=batch).where(ds["population"] == p, drop=True)
        if sub.sizes.get("unit", 0):
            axes[1].plot(tt, sub["r"].mean("unit"), color=pop_color(p, pops.index(p)), lw=0.8, label=f"r {p}")
    axes[1].set_ylabel(f"rate ({units_label})")
    axes[1].legend(loc="upper right")
    if split:
        for p in pops:
            sub = ds.isel(batch=batch).where(ds["population"] == p, drop=True)
            if sub.sizes.get("unit", 0):
                c = pop_color(p, pops.index(p))
                axes[2].plot(tt, sub["x"].mean("unit"), color=c, ls="--", lw=0.8, label=f"x {p}")
                axes[2].plot(tt, sub["Fx"].mean("unit"), color=c, ls=":", lw=0.8, label=f"F(x) {p}")
        axes[2].axhline(0, color="0.8", lw=0.6, zorder=0)
        axes[2].set_ylabel(f"x, F(x) ({units_label})")
        axes[2].legend(loc="upper right", ncol=2)
    axes[-1].set_xlabel("time (ms)")
    fig.align_ylabels(axes)
    return save_figure(fig, path)
