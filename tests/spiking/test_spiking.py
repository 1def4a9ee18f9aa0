"""Spiking backend (Brian2) against analytic rates, the Siegert mean field and the rate model.

Tolerances are stated where they are used, with their reasons; rates are
estimated from many neurons so that sampling errors are a few per cent.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.model.fixedpoint import steady_state
from cortex_resnet.model.spec import load_spec, parse_spec
from cortex_resnet.spiking import brian as spiking_brian
from cortex_resnet.spiking.analysis import cv_isi
from cortex_resnet.spiking.build import build_plan
from cortex_resnet.spiking.simulator import simulate_spiking

pytestmark = pytest.mark.brian2
MODELS = Path(__file__).resolve().parents[2] / "models"
LIF = {"name": "lif", "sigma_mV": 5.0}  # theta 20 mV, V_r 10 mV above rest, tau 20 ms, t_ref 2 ms


def _unconnected(pool_size: int, mode: str, noise: str, dt_ms: float = 0.1):
    """E and I pools without synapses: every neuron sees only the input."""
    return build_circuit(parse_spec({
        "name": "unconnected",
        "populations": {"E": {"n": 1, "tau_ms": 20.0, "transfer": LIF}, "I": {"n": 1, "tau_ms": 20.0, "transfer": LIF}},
        "input": {"n_inputs": 1, "gain_E": 1.0, "gain_I": 1.0},
        "spiking": {"pool_size": pool_size, "background_noise": noise, "dt_ms": dt_ms,
                    "input": {"mode": mode, "weight_mV": 0.1}, "monitor": {"n_traces": 0, "rate_bin_ms": 10.0}}}))


# ------------------------------------------------------------------ single neuron, constant current

CURRENTS = [25.0, 30.0, 40.0]  # I R in mV above rest (suprathreshold: theta = 20 mV)


@pytest.fixture(scope="module")
def constant_current_run():
    c = _unconnected(2, "current", "none", dt_ms=0.01)
    amps = ",".join(str(a) for a in CURRENTS)
    # Brian2's numpy target: 12 neurons need no compiled code (saves a compilation on a cold cache)
    return simulate_spiking(c, f"constant:amp=[{amps}]", duration_ms=200.0, decompose=False, target="numpy")


@pytest.mark.parametrize("k", range(len(CURRENTS)))
def test_single_lif_with_constant_current_fires_at_the_analytic_rate(constant_current_run, k):
    """1 / (t_ref + tau ln((I R - V_r) / (I R - theta))).

    Tolerance 0.5 %: with dt = 0.01 ms, Euler's per-step decay changes the crossing
    time by dt / (2 tau) = 0.025 %, and spike and end of refractoriness fall on the
    step grid (at most 2 dt = 0.02 ms of a >= 10 ms period: 0.2 %).
    """
    ds = constant_current_run
    mu = CURRENTS[k]
    expected = 1000.0 / (2.0 + 20.0 * math.log((mu - 10.0) / (mu - 20.0)))
    sel = ds["spike_batch"].values == k
    t, n = ds["spike_time_ms"].values[sel], ds["spike_neuron"].values[sel]
    for neuron in np.unique(n):
        isi = np.diff(np.sort(t[n == neuron]))[1:]  # skip the first interval (random start)
        assert isi.size >= 5
        assert 1000.0 / isi.mean() == pytest.approx(expected, rel=5e-3)


# ------------------------------------------------------------------ Poisson-driven population

LEVELS = [12.0, 15.0, 18.0, 21.0, 24.0]  # mean depolarisation by the Poisson input (mV)
T_POISSON = 1200.0


@pytest.fixture(scope="module")
def poisson_run():
    c = _unconnected(200, "poisson", "match")
    stim = "constant:amp=[" + ",".join(str(v) for v in LEVELS) + "]"
    return c, build_plan(c, stim, T_POISSON), simulate_spiking(c, stim, duration_ms=T_POISSON, decompose=False)


@pytest.mark.parametrize("k", range(len(LEVELS)))
def test_poisson_driven_population_matches_the_siegert_rate(poisson_run, k):
    """400 unconnected LIF neurons with Poisson input (0.1 mV jumps) plus white noise
    (sigma 5 mV in total) against the Siegert rate for their mu and sigma.

    Tolerance: 5 % + 3 standard errors of the spike count. The 5 % covers what the
    diffusion approximation leaves out: discrete 0.1 mV jumps (relative size
    J / sigma = 2 %) and the time grid beyond the first-order (Siegmund) threshold
    correction that the mean field includes.
    """
    c, plan, ds = poisson_run
    expected = plan.replica_pool_model(k).transfer(np.zeros(c.n_units))
    sel = (ds["spike_batch"].values == k) & (ds["spike_time_ms"].values >= 200.0)
    count = int(sel.sum())
    rate = count / plan.n / ((T_POISSON - 200.0) * 1e-3)
    assert rate == pytest.approx(expected.mean(), rel=0.05 + 3 / math.sqrt(count))


# ------------------------------------------------------------------ E-I circuit vs rate model

@pytest.fixture(scope="module")
def ei_run():
    c = build_circuit(load_spec(MODELS / "lif_ei.toml"))
    return c, simulate_spiking(c, duration_ms=1000.0, decompose=False)


@pytest.mark.parametrize("pop", ["E", "I"])
def test_ei_circuit_agrees_with_the_rate_model_using_the_lif_transfer(ei_run, pop):
    """Spiking population rates vs the rate model's steady state (phi = Siegert LIF).

    Tolerance 12 %, from: the time grid of the spiking simulation (the mean field
    with the Siegmund correction lies 1-3 % below the continuous rate model); the
    diffusion approximation of 0.06-0.5 mV jumps (unconnected neurons in the test above
    already fire 2-5 % below their Siegert rate); finite size and shared inputs
    (K = 400 + 100 inputs per neuron, 40 % of each pool: correlated fluctuations the
    mean field ignores, a few %); sampling error of the rates over 500 ms (1-2 %).
    Measured: 5-7 % below.
    """
    c, ds = ei_run
    r_rate = steady_state(c, np.array([[25.0]])).numpy()[0]
    stats = json.loads(ds.attrs["spike_stats"])
    mask = c.is_E if pop == "E" else ~c.is_E
    assert stats[pop]["rate_hz"] == pytest.approx(r_rate[mask].mean(), rel=0.12)
    # and the result's pool rates r are in Hz, the rate model's units
    assert ds.attrs["rate_units"] == "Hz"


# ------------------------------------------------------------------ decomposition

@pytest.fixture(scope="module")
def small_ei():
    spec = load_spec(MODELS / "lif_ei.toml").replace(**{"spiking.pool_size": 25, "spiking.synapse.p_connect": 1.0})
    return build_circuit(spec)


def test_without_recurrence_the_recurrent_part_is_exactly_zero(small_ei):
    """x and r come from two runs; the input spike trains and noise are frozen by the seed."""
    ds = simulate_spiking(small_ei.without_recurrence(), duration_ms=200.0, seed=3)
    assert float(np.abs(ds["r"]).sum()) > 0
    np.testing.assert_array_equal(ds["Fx"].values, 0.0)


def test_x_is_identical_between_runs_with_the_same_seed_and_differs_with_another(small_ei):
    a = simulate_spiking(small_ei, duration_ms=100.0, seed=5)
    b = simulate_spiking(small_ei, duration_ms=100.0, seed=5)
    c = simulate_spiking(small_ei, duration_ms=100.0, seed=6)
    np.testing.assert_array_equal(a["x"].values, b["x"].values)
    np.testing.assert_array_equal(a["r"].values, b["r"].values)
    assert not np.array_equal(a["x"].values, c["x"].values)
    np.testing.assert_allclose(a["r"].values, (a["x"] + a["Fx"]).values, atol=1e-12)
    assert float(np.abs(a["Fx"]).mean()) > 0  # recurrence does something here


# ------------------------------------------------------------------ Brunel (2000) model A regimes

def _brunel(g: float, full: bool):
    changes = {"connectivity.J_EI": 0.5 * g, "connectivity.J_II": 0.5 * g}
    if not full:
        # 2.5x fewer neurons at the same sparseness 0.1: C_E = 400, C_I = 100, and J = 0.25 mV
        # (external synapses too) so that J C_E tau -- the file's couplings -- and nu_ext/nu_thr stay
        changes.update({"spiking.pool_size": 1000, "spiking.input.weight_mV": 0.25})
    return build_circuit(load_spec(MODELS / "brunel_2000.toml").replace(**changes))


def _regime_stats(full: bool, duration: float) -> dict:
    """Spike statistics over the last half of the run; SR (g = 3) locks within tens of ms, so
    half the duration suffices there."""
    return {g: json.loads(simulate_spiking(_brunel(g, full), duration_ms=duration * (1.0 if g == 5.0 else 0.5),
                                           decompose=False).attrs["spike_stats"]) for g in (5.0, 3.0)}


def _check_brunel(stats: dict) -> None:
    ai, sr = stats[5.0]["E"], stats[3.0]["E"]
    # AI (g = 5, nu_ext = 2 nu_thr): tens of Hz, near the mean field's 37.9 Hz; SR (g = 3):
    # excitation dominates and neurons fire regularly near saturation (1 / t_ref = 500 Hz)
    assert 25.0 < ai["rate_hz"] < 50.0 and sr["rate_hz"] > 200.0
    assert sr["cv_isi"] < 0.1 < ai["cv_isi"]
    # population-rate oscillation power separates the regimes: the spectral peak (relative to
    # the floor of independent neurons) and the band power relative to the mean rate squared
    assert sr["spectral_peak"] > 10.0 * ai["spectral_peak"]
    assert sr["oscillation_power"] > 2.0 * ai["oscillation_power"]
    assert ai["synchrony"] < 0.2 < sr["synchrony"]


def test_brunel_ai_and_synchronous_regimes_are_separated_reduced():
    _check_brunel(_regime_stats(full=False, duration=300.0))


@pytest.mark.slow
def test_brunel_ai_and_synchronous_regimes_are_separated_full_size():
    _check_brunel(_regime_stats(full=True, duration=1000.0))


# ------------------------------------------------------------------ no compiler

def test_without_a_compiler_the_numpy_target_is_used_with_a_warning(monkeypatch, small_ei):
    from brian2.codegen.runtime.cython_rt import CythonCodeObject

    monkeypatch.setattr(spiking_brian, "_TARGET_CACHE", {})
    monkeypatch.setattr(CythonCodeObject, "is_available", classmethod(lambda cls: False))
    with pytest.warns(RuntimeWarning, match="falls back to Brian2's numpy target"):
        ds = simulate_spiking(small_ei, duration_ms=20.0, decompose=False)
    assert ds.attrs["device"] == "runtime-numpy"
    assert cv_isi(np.zeros(0, int), np.zeros(0)) != cv_isi(np.zeros(0, int), np.zeros(0))  # NaN when empty
