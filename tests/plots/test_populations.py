"""Per-population rates and the layered raster figure (plots/populations.py)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from cortex_resnet.plots.populations import _layer_order, plot_population_rates, population_rates_hz


def _spiking_result(rates_hz: dict[str, float], units: int = 2, pool: int = 5, duration_ms: float = 1000.0,
                    seed: int = 0) -> xr.Dataset:
    """A spiking result with Poisson spikes at known rates per population (units x pool neurons each)."""
    rng = np.random.default_rng(seed)
    pops = np.repeat(list(rates_hz), units)
    t, neuron = [], []
    for u, p in enumerate(pops):
        for j in range(pool):
            k = rng.poisson(rates_hz[p] * duration_ms * 1e-3)
            t.append(np.sort(rng.uniform(0, duration_ms, k)))
            neuron.append(np.full(k, u * pool + j))
    t, neuron = np.concatenate(t), np.concatenate(neuron)
    return xr.Dataset(
        {"spike_time_ms": ("spike", t), "spike_neuron": ("spike", neuron), "spike_unit": ("spike", neuron // pool),
         "spike_batch": ("spike", np.zeros(t.size, int)), "r": (("time", "batch", "unit"), np.zeros((2, 1, pops.size)))},
        coords={"time": [0.0, duration_ms], "population": ("unit", pops)},
        attrs={"pool_size": pool, "duration_ms": duration_ms, "circuit": "test"})


def test_rates_are_spike_counts_over_neurons_and_window():
    ds = _spiking_result({"L23E": 2.0, "L23I": 10.0, "L4E": 0.0})
    got = population_rates_hz(ds, 200.0)
    t, u = ds["spike_time_ms"].values, ds["spike_unit"].values
    for k, p in enumerate(("L23E", "L23I", "L4E")):  # by hand: 2 units x 5 neurons, 0.8 s
        n = int(((t >= 200) & (u // 2 == k)).sum())
        assert got[p] == pytest.approx(n / (10 * 0.8), rel=1e-12)
    assert got["L4E"] == 0.0
    with pytest.raises(ValueError, match="window"):
        population_rates_hz(ds, 1000.0)


def test_layers_from_the_top_with_E_before_I():
    assert _layer_order(["L23E", "L4E", "L5E", "L23I", "L4I", "L5I"]) == ["L23E", "L23I", "L4E", "L4I", "L5E", "L5I"]
    assert _layer_order(["E", "PV", "SOM"]) == ["E", "PV", "SOM"]


def test_figure_with_references(tmp_path):
    ds = _spiking_result({"L23E": 2.0, "L23I": 10.0, "L4E": 4.0, "L4I": 8.0})
    out = plot_population_rates(ds, tmp_path / "pd14.png", references={"mean field": {"L23E": 2.1, "L4I": 7.5}},
                                n_per_population=4)
    assert out.exists() and out.stat().st_size > 10_000
