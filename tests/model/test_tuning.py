"""Tuned (feature-specific) circuits against independent references.

* A dense tuned circuit with equal E and I sizes has circulant blocks; their eigenvalues (the
  DFT of a row) are the von Mises Fourier coefficients ``I_m(kappa) / I_0(kappa)``
  (``kappa = 1 / s^2``; Bessel functions from scipy) with their aliases ``I_|m + p n|``.
* With a linear transfer every Fourier mode ``m`` of the input is multiplied by the 2x2
  population gain ``[(1 + J_II c_II) h_E - J_EI c_EI h_I] / D(m)``: the Newton steady state and
  the integrated dynamics must equal that mode-by-mode solution.
* Untuned (all-to-all) recurrence only sees mode 0: ``r_E - x_E`` is one constant (an offset).
* Tuned probabilities: connection frequencies follow ``p k(d)`` (binomial tolerance).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import ive

from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.model.fixedpoint import steady_state
from cortex_resnet.model.spec import parse_spec
from cortex_resnet.model.tuning import log_kernel, preferences, unit_preferences, von_mises, wrap_deg
from cortex_resnet.model.tuning_curves import aligned_profile, fit_von_mises, fwhm
from cortex_resnet.rate.simulator import simulate

J = {"J_EE": 2.0, "J_EI": 2.0, "J_IE": 1.2, "J_II": 1.0}
SIG = {("E", "E"): 10.0, ("E", "I"): 14.0, ("I", "E"): 8.0, ("I", "I"): 12.0}


def tuned_spec(n_e: int = 36, n_i: int = 36, sig: dict | None = None, transfer: str = "linear",
               sigma_in: float = 20.0, kind: str = "dense", modulate: str = "strength", p: float = 1.0,
               period: float = 180.0, cv: float = 0.0, seed: int = 0) -> dict:
    table: dict = {}
    for (post, pre), s in (SIG if sig is None else sig).items():
        table.setdefault(post, {})[pre] = s
    return {"name": "t", "seed": seed,
            "populations": {"E": {"n": n_e, "tau_ms": 20.0, "transfer": {"name": transfer, "gain": 1.0}},
                            "I": {"n": n_i, "tau_ms": 10.0, "transfer": {"name": transfer, "gain": 1.0}}},
            "connectivity": {"kind": kind, "p": p, "weight_cv": cv, **J},
            "input": {"n_inputs": n_e, "gain_E": 1.0, "gain_I": 0.5, "projection": "tuned", "sigma_deg": sigma_in},
            "tuning": {"period_deg": period, "modulate": modulate, "sigma_deg": table}}


def _coefficients(n: int, sigma: float, period: float = 180.0) -> np.ndarray:
    """Fourier coefficients of the von Mises sampled at n points: sum_p I_|m+pn|(kappa) / sum_p I_|pn|(kappa)
    (the continuum I_m/I_0 plus its aliases), m = 0..n-1."""
    kappa = (period / (2 * math.pi * sigma)) ** 2
    m = np.arange(n)[:, None] + n * np.arange(-4, 5)[None, :]
    return ive(np.abs(m), kappa).sum(axis=1) / ive(np.abs(n * np.arange(-4, 5)), kappa).sum()


def test_tuned_blocks_are_circulant_with_von_mises_eigenvalues():
    c = build_circuit(parse_spec(tuned_spec()))
    for (post, pre), s in SIG.items():
        blk = np.abs(c.block(post, pre)) / J[f"J_{post}{pre}"]
        n = blk.shape[0]
        for i in range(n):
            np.testing.assert_allclose(blk[i], np.roll(blk[0], i), rtol=0, atol=1e-15)
        np.testing.assert_allclose(blk.sum(axis=1), 1.0, rtol=1e-13)
        eig = np.fft.fft(blk[0]).real  # symmetric kernel: real eigenvalues
        np.testing.assert_allclose(eig, _coefficients(n, s), rtol=0, atol=1e-12)


def _mode_solution(c, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The linear steady state mode by mode: 2x2 solve per Fourier mode of the circulant blocks."""
    e, i = c.is_E, ~c.is_E
    h = c.B @ u
    hE, hI = np.fft.fft(h[e]), np.fft.fft(h[i])
    cf = {k: np.fft.fft(np.abs(c.block(*k))[0]) for k in SIG}
    rE, rI = np.zeros_like(hE), np.zeros_like(hI)
    for m in range(hE.size):
        M = np.array([[1 - cf["E", "E"][m], cf["E", "I"][m]], [-cf["I", "E"][m], 1 + cf["I", "I"][m]]])
        rE[m], rI[m] = np.linalg.solve(M, [hE[m], hI[m]])
    return np.fft.ifft(rE).real, np.fft.ifft(rI).real


def test_linear_tuned_steady_state_equals_the_fourier_mode_solution():
    c = build_circuit(parse_spec(tuned_spec()))
    u = np.zeros(c.n_inputs)
    u[5] = 1.0
    rE, rI = _mode_solution(c, u)
    r = steady_state(c, u).numpy()[0]
    np.testing.assert_allclose(r[c.is_E], rE, rtol=0, atol=1e-10)
    np.testing.assert_allclose(r[~c.is_E], rI, rtol=0, atol=1e-10)
    # the dynamics settle there too (slowest eigenvalue ~ -0.015/ms: 2 s leave < 1e-8 of the transient)
    ds = simulate(c, f"constant:amp=1.0,channels=[5]", duration_ms=2500.0, dt_ms=0.5, method="expeuler",
                  record_stride=5000)
    np.testing.assert_allclose(ds["r"].isel(time=-1, batch=0).values[c.is_E], rE, rtol=0, atol=1e-6)


def test_uniform_mode_gain_of_a_tuned_circuit_is_the_two_population_gain():
    """Tuning only redistributes each row's J: mode 0 sees D = (1 - J_EE)(1 + J_II) + J_EI J_IE = 0.4."""
    c = build_circuit(parse_spec(tuned_spec()))
    r = steady_state(c, np.ones(c.n_inputs)).numpy()[0]
    h = c.B @ np.ones(c.n_inputs)
    np.testing.assert_allclose(r[c.is_E], (2 * h[c.is_E] - 2 * h[~c.is_E]) / 0.4, rtol=1e-10)


def test_all_to_all_recurrence_adds_an_untuned_offset():
    """No recurrent tuning: only mode 0 is changed, so r_E - x_E is the same for every E unit."""
    spec = parse_spec(tuned_spec(sig={}))
    c = build_circuit(spec)
    u = np.zeros(c.n_inputs)
    u[0] = 1.0
    r, x = steady_state(c, u).numpy()[0], steady_state(c.without_recurrence(), u).numpy()[0]
    off = r[c.is_E] - x[c.is_E]
    np.testing.assert_allclose(off, off.mean(), rtol=0, atol=1e-12)
    hE, hI = x[c.is_E].mean(), x[~c.is_E].mean()
    assert off.mean() == pytest.approx((2 * hE - 2 * hI) / 0.4 - hE, rel=1e-10)


def test_narrow_kernels_multiply_every_mode_by_the_same_gain():
    """sigma_rec -> 0: every c_XY(m) -> 1, so each mode gets the population gain 2.5: r = 2.5 x (width kept)."""
    c = build_circuit(parse_spec(tuned_spec(sig={k: 0.5 for k in SIG})))
    u = np.zeros(c.n_inputs)
    u[3] = 1.0
    r, x = steady_state(c, u).numpy()[0], steady_state(c.without_recurrence(), u).numpy()[0]
    e = c.is_E
    np.testing.assert_allclose(r[e], (2 * x[e] - 2 * x[~c.is_E]) / 0.4, rtol=1e-9, atol=1e-12)


def test_tuned_projection_is_a_von_mises_of_the_preference_difference():
    spec = parse_spec(tuned_spec(n_e=24, n_i=8, sigma_in=15.0))
    c = build_circuit(spec)
    theta = unit_preferences(spec)
    assert theta[:24] == pytest.approx(np.arange(24) * 7.5) and theta[24:] == pytest.approx(np.arange(8) * 22.5)
    phi = preferences(24, 180.0)
    gain = np.where(c.is_E, 1.0, 0.5)
    np.testing.assert_allclose(c.B, gain[:, None] * von_mises(theta[:, None] - phi[None], 15.0, 180.0), rtol=1e-14)
    assert c.B[:24].max(axis=0) == pytest.approx(np.ones(24))


def test_tuned_probability_follows_the_kernel():
    """modulate = probability: P(connection | d) = p k(d); 400 x 400 pairs per block (binomial 5 sd)."""
    n, p, s = 400, 0.6, 20.0
    c = build_circuit(parse_spec(tuned_spec(n_e=n, n_i=n // 4, kind="sparse", modulate="probability", p=p,
                                            sig={("E", "E"): s})))
    e = c.is_E
    present = c.mask[np.ix_(e, e)]
    d = wrap_deg(preferences(n, 180.0)[:, None] - preferences(n, 180.0)[None], 180.0)
    k = von_mises(d, s, 180.0)
    for lo, hi in ((0, 5), (10, 20), (30, 45), (60, 90.1)):
        sel = (np.abs(d) >= lo) & (np.abs(d) < hi)
        expected = p * k[sel].mean()
        sd = math.sqrt(np.sum(p * k[sel] * (1 - p * k[sel]))) / sel.sum()
        assert abs(present[sel].mean() - expected) < 5 * sd + 1e-12
    rows = np.abs(c.block("E", "E")).sum(axis=1)
    assert rows.mean() == pytest.approx(J["J_EE"], rel=0.02)  # each row's total J in expectation


def test_tuned_strength_on_a_sparse_circuit_keeps_row_totals_in_expectation():
    c = build_circuit(parse_spec(tuned_spec(n_e=400, n_i=100, kind="sparse", p=0.3)))
    rows = np.abs(c.block("E", "E")).sum(axis=1)
    assert rows.mean() == pytest.approx(J["J_EE"], rel=0.02)


def test_a_width_far_below_the_unit_spacing_keeps_the_nearest_preference():
    c = build_circuit(parse_spec(tuned_spec(n_e=12, n_i=5, sig={("E", "I"): 1e-3})))
    blk = np.abs(c.block("E", "I"))
    assert np.all(np.isfinite(blk)) and np.allclose(blk.sum(axis=1), J["J_EI"])


# ---------------------------------------------------------------- tuning curves

@pytest.mark.parametrize("sigma,base", [(17.0, 0.0), (10.0, 0.3), (40.0, 0.1)])
def test_fwhm_and_fit_of_a_von_mises_with_baseline(sigma, base):
    """FWHM of a + k(d): k(d_half) = 1/2 - a/2 -> cos(2 pi d / P) = 1 + s^2 ln((1 - a)/2) (closed form)."""
    period = 180.0
    d = preferences(720, period) - period / 2
    y = base + von_mises(d, sigma, period)
    s = 2 * math.pi * sigma / period
    half = math.acos(1 + s**2 * math.log((1 - base) / 2)) * period / (2 * math.pi)
    # linear interpolation on a 0.25-deg grid: crossing error ~ h^2 |y''| / (8 |y'|) < 2.5e-3 deg per side here
    assert fwhm(d, y, period) == pytest.approx(2 * half, abs=5e-3)
    fit = fit_von_mises(d, y, period)
    assert (fit.baseline, fit.amplitude, fit.sigma_deg) == pytest.approx((base, 1.0, sigma), rel=1e-6, abs=1e-8)
    assert fit.r2 == pytest.approx(1.0)


def test_fwhm_of_a_curve_that_never_halves_is_the_period():
    d = preferences(36, 180.0) - 90.0
    assert fwhm(d, 1.0 + 0.2 * von_mises(d, 20.0, 180.0), 180.0) == 180.0
    assert math.isnan(fwhm(d, np.zeros(36), 180.0))


def test_aligned_profile_averages_rotated_copies():
    theta = preferences(12, 180.0)
    stim = np.array([0.0, 45.0])
    y = np.stack([von_mises(theta - s, 20.0, 180.0) for s in stim])
    d, prof = aligned_profile(theta, y, stim, 180.0)
    np.testing.assert_allclose(prof, von_mises(d, 20.0, 180.0), rtol=1e-12)
    assert d.min() == -90.0 and d.max() == 75.0
    assert np.all(np.diff(log_kernel(np.abs(d), 20.0, 180.0)[d >= 0]) <= 0)
