"""Figures of circuits with many named populations: a layered raster beside per-population rates.

The Potjans-Diesmann (2014) microcircuit's standard figure: spikes of a sample of
every population (layers top to bottom, E above I) and the time-averaged rate of
every population (Hz) beside the references the result is checked against (the
Siegert mean field of the same network, published rates). Rates in Hz, times in ms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from cortex_resnet.io.results import population_names, require_vars
from cortex_resnet.plots.base import COLUMN_WIDTH_IN, POP_COLORS, _as_dataset, _raster, pop_color, save_figure, styled

__all__ = ["population_rates_hz", "plot_population_rates"]

REFERENCE_MARKERS = ("D", "o", "s", "^")


def population_rates_hz(ds: xr.Dataset, t0_ms: float, t1_ms: float | None = None, batch: int = 0) -> dict[str, float]:
    """Mean rate (Hz) of every population of a spiking result: spikes in ``[t0_ms, t1_ms)``
    divided by the population's neurons and the window (s); ``t1_ms`` defaults to the run's end."""
    require_vars(ds, ["spike_time_ms", "spike_unit", "spike_batch"], "per-population rates")
    t1 = float(ds.attrs.get("duration_ms", ds["time"].values[-1])) if t1_ms is None else float(t1_ms)
    if not 0 <= t0_ms < t1:
        raise ValueError(f"rate window [{t0_ms}, {t1}) ms is empty or negative")
    t = ds["spike_time_ms"].values
    sel = (ds["spike_batch"].values == batch) & (t >= t0_ms) & (t < t1)
    pop_of_unit = ds["population"].values
    pool = int(ds.attrs.get("pool_size", 1))
    counts = np.bincount(ds["spike_unit"].values[sel], minlength=pop_of_unit.size)
    out = {}
    for p in population_names(ds):
        units = pop_of_unit == p
        out[p] = float(counts[units].sum() / (units.sum() * pool * (t1 - t0_ms) * 1e-3))
    return out


def _layer_order(pops: list[str]) -> list[str]:
    """Layers from the top (L2/3) down, E before I within a layer, when the names say so; else as given."""
    def key(p: str) -> tuple:
        digits = "".join(ch for ch in p if ch.isdigit())
        return (int(digits[0]) if digits else 99, p[-1] != "E", pops.index(p))
    return sorted(pops, key=key)


@styled
def plot_population_rates(result: xr.Dataset | str | Path, path: str | Path, *,
                          references: dict[str, dict[str, float]] | None = None, t0_ms: float = 200.0,
                          n_per_population: int = 100, seed: int = 0) -> Path:
    """Raster of a sample of every population (top layer first) and the population rates (Hz).

    Parameters
    ----------
    result : a spiking-backend Dataset (or its netCDF path)
    path : output file (.png/.svg/.pdf)
    references : ``{label: {population: rate_hz}}`` drawn as markers beside the measured bars
        (e.g. the mean field of the same network, published rates)
    t0_ms : start of the rate window (ms); the transient before it is left out
    n_per_population : neurons drawn (``seed``) from each population for the raster
    """
    ds = _as_dataset(result)
    pops = _layer_order(population_names(ds))
    rates = population_rates_hz(ds, t0_ms)
    fig, (ax_r, ax_b) = plt.subplots(1, 2, figsize=(COLUMN_WIDTH_IN * 2, 3.6),
                                     gridspec_kw={"width_ratios": [2.2, 1]})
    centres = _raster(ax_r, ds, 0, n_per_population, seed, pops=pops[::-1], color_of=lambda p: _color(ds, p))
    ax_r.get_legend().remove()  # the rows are labelled instead
    ax_r.set_yticks(list(centres.values()), [f"{p}" for p in centres])
    ax_r.set_ylabel(f"{n_per_population} neurons per population")
    ax_r.set_xlabel("time (ms)")
    ax_r.axvline(t0_ms, color="0.6", lw=0.6, ls="--")
    y = np.arange(len(pops))[::-1]
    ax_b.barh(y, [rates[p] for p in pops], color=[_color(ds, p) for p in pops], height=0.6,
              label=f"spiking ({t0_ms:g} ms to end)")
    for (label, ref), marker in zip((references or {}).items(), REFERENCE_MARKERS):
        have = [i for i, p in enumerate(pops) if p in ref and np.isfinite(ref[p])]
        ax_b.scatter([ref[pops[i]] for i in have], y[have], marker=marker, s=14, facecolors="none",
                     edgecolors="k", linewidths=0.8, zorder=3, label=label)
    ax_b.set_yticks(y, pops)
    ax_b.set_xlabel("rate (Hz)")
    ax_b.legend(loc="upper right", fontsize=6)
    ax_b.set_title("population rates", loc="left")
    fig.tight_layout()
    return save_figure(fig, path)


def _color(ds: xr.Dataset, pop: str) -> Any:
    """Excitatory populations in the E colour, inhibitory in the I colour (names ending in E / I);
    other names a palette colour each."""
    if len(pop) > 1 and pop[-1] in POP_COLORS:
        return POP_COLORS[pop[-1]]
    return pop_color(pop, population_names(ds).index(pop))
