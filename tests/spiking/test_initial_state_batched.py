"""The batched initial state (:mod:`cortex_resnet.spiking.initial_state`) against independent
references: the Siegert quadrature, adaptive quadrature of the tabulated integrals and of the
stationary density, and the previous replica-by-replica implementation (kept here as the
reference: a per-replica relaxation with the quadrature Siegert rate, and a 4000-point grid
sampler per pool)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.special import dawsn, erfcx
from scipy.stats import ks_2samp

from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.model.siegert import siegert_numpy
from cortex_resnet.model.spec import parse_spec
from cortex_resnet.spiking.build import build_plan
from cortex_resnet.spiking.fast_siegert import H_int, Q_int, siegert_fast, stationary_cdf
from cortex_resnet.spiking.initial_state import fixed_points, replica_seed, sample_pools
from cortex_resnet.spiking.mapping import pool_model

TINY = {"name": "tiny", "populations": {
    "E": {"n": 8, "tau_ms": 4.0, "transfer": {"name": "relu"}},
    "I": {"n": 2, "tau_ms": 2.0, "transfer": {"name": "relu"}}},
    "connectivity": {"J_EE": 0.5, "J_EI": 1.0, "J_IE": 1.0, "J_II": 0.5, "weight_cv": 0.5},
    "input": {"n_inputs": 4, "projection": "random", "gain_I": 0.5},
    "spiking": {"pool_size": 5, "input": {"mode": "current"}}}


def _old_grid_sample(mu, sigma, theta, reset, n, rng):
    """The former per-pool sampler: log-space running integral on a 4000-point grid."""
    y_th, y_r = (theta - mu) / sigma, (reset - mu) / sigma
    y = np.linspace(min(y_r, 0.0) - 6.0, y_th, 4000)
    dy = y[1] - y[0]
    log_int = np.full(y.size, -np.inf)
    log_int[:-1] = np.logaddexp.accumulate((y[1:] ** 2 + np.log(dy))[::-1])[::-1]
    k_r = int(np.searchsorted(y, y_r))
    log_int[:k_r] = log_int[min(k_r, y.size - 1)]
    log_p = log_int - y**2
    p = np.exp(log_p - np.max(log_p))
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (p[1:] + p[:-1]))])
    return mu + sigma * np.interp(rng.random(n), cdf / cdf[-1], y)


def test_closed_form_siegert_matches_the_quadrature():
    """1e-9 relative over mu -20..80 mV, sigma 0.05..20 mV (the quadrature is exact to ~3e-12)."""
    rng = np.random.default_rng(0)
    mu, sigma = rng.uniform(-20, 80, 5000), rng.uniform(0.05, 20, 5000)
    fast, ref = siegert_fast(mu, sigma, 20.0, 2.0, 20.0, 10.0), siegert_numpy(mu, sigma, 20.0, 2.0, 20.0, 10.0)
    live = ref > 1e-200
    np.testing.assert_allclose(fast[live], ref[live], rtol=1e-9)
    assert np.all(fast[~live] < 1e-200)


@pytest.mark.parametrize("y", [0.01, 0.3, 2.0, 7.5, 39.99, 40.5, 120.0])
def test_tabulated_integrals_match_adaptive_quadrature(y):
    """Hermite tables (and their asymptotic tails beyond 40) within 1e-10 relative."""
    h = quad(erfcx, 0, y, epsabs=0, epsrel=1e-13, limit=500)[0]
    q = quad(dawsn, 0, y, epsabs=0, epsrel=1e-13, limit=500)[0]
    assert H_int(y) == pytest.approx(h, rel=1e-10) and Q_int(-y) == pytest.approx(q, rel=1e-10)


@pytest.mark.parametrize("y_th,y_r", [(1.5, -1.0), (4.0, 1.0), (-3.0, -13.0), (0.5, -0.5), (10.0, 3.0)])
def test_stationary_cdf_matches_quadrature_of_the_density(y_th, y_r):
    """Subthreshold, mean below the reset, strongly suprathreshold: 1e-9 relative."""
    C = max(y_th, 0.0) ** 2

    def dens(s):
        return np.exp(-s * s - C) * quad(lambda x: np.exp(x * x), max(s, y_r), y_th)[0]

    for y in (y_r - 1.0, y_r, 0.5 * (y_r + y_th), y_th):
        ref = quad(dens, -np.inf, min(y, y_r), limit=200)[0] + (quad(dens, y_r, y, limit=200)[0] if y > y_r else 0.0)
        assert float(stationary_cdf(np.array(y), np.array(y_th), np.array(y_r))) == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize("mu,sigma", [(21.0, 7.68), (5.0, 3.0), (15.0, 0.5), (50.0, 0.3), (-5.0, 4.0)])
def test_sampler_inverts_the_exact_cdf(mu, sigma):
    """Given uniforms u, every sample v has CDF(v) = u within 1e-8 (the exact inverse transform)."""
    u = np.linspace(0.0005, 0.9995, 999)
    v = sample_pools(np.array([mu]), np.array([sigma]), np.array([20.0]), np.array([10.0]),
                     np.zeros(u.size, np.int64), (u, u))
    y, y_th, y_r = (v - mu) / sigma, np.array((20.0 - mu) / sigma), np.array((10.0 - mu) / sigma)
    ends = stationary_cdf(np.array([min(-6.0, y_r - 0.5), min(y_th, max(y_r, 0.0) + 6.0)]), y_th, y_r)
    got = (stationary_cdf(y, y_th, y_r) - ends[0]) / (ends[1] - ends[0])
    np.testing.assert_allclose(got, u, atol=1e-8)
    assert v.max() < 20.0


def test_sampler_matches_the_former_grid_sampler_and_places_the_refractory_at_reset():
    """Two pools at once against the former sampler (two-sample KS, 20000 each; p > 1e-3: a
    false alarm 1 in 1000); the refractory fraction (0.3) of each pool sits exactly at its reset."""
    rng = np.random.default_rng(3)
    pool_of = np.repeat([0, 1], 20000)
    v = sample_pools(np.array([21.0, 12.0]), np.array([7.68, 2.0]), np.array([20.0, 20.0]), np.array([10.0, 11.0]),
                     pool_of, (rng.random(pool_of.size), rng.random(pool_of.size)), np.array([0.0, 0.3]))
    for p, (mu, sigma, reset) in enumerate([(21.0, 7.68, 10.0), (12.0, 2.0, 11.0)]):
        mine = v[pool_of == p]
        at_reset = mine == reset
        assert at_reset.sum() == (6000 if p else 0)
        old = _old_grid_sample(mu, sigma, 20.0, reset, 20000, np.random.default_rng(p))
        assert ks_2samp(mine[~at_reset], old).pvalue > 1e-3


def _per_replica_fixed_point(model, tol_hz=0.01, max_iter=2000, relax=0.2):
    """The former replica-by-replica relaxation with the quadrature Siegert rate."""
    nu = np.full(model.K.shape[0], 5.0)
    for _ in range(max_iter):
        step = model.transfer(nu) - nu
        if float(np.max(np.abs(step))) < tol_hz:
            return nu
        nu = np.maximum(nu + relax * step, 0.0)
    return None


def test_batched_fixed_points_equal_the_replica_by_replica_relaxation():
    """Six stimuli of a gain-mapped circuit: the same relaxation sequence per replica, so the
    rates agree to the Siegert difference (1e-9 relative) amplified by the iteration: 1e-6 Hz."""
    c = build_circuit(parse_spec(TINY))
    u = np.random.default_rng(0).uniform(0.0, 2.0, size=(6, 4))
    plan = build_plan(c, u, 20.0, seed=1)
    m = plan.mapping
    batched = pool_model(c, c.spec.spiking, m.k_unit, m.R_unit, m.dc_unit, plan.drive_mV[0],
                         m.sigma_white_unit, plan.dt_ms)
    nu, ok = fixed_points(batched)
    assert nu.shape == (6, c.n_units) and ok.all()
    for b in range(6):
        ref = _per_replica_fixed_point(plan.replica_pool_model(b, 0))
        np.testing.assert_allclose(nu[b], ref, atol=1e-6)
    assert np.ptp(nu, axis=0).max() > 0.1, "the stimuli must differ for the comparison to mean something"


def test_a_replicas_initial_potentials_do_not_depend_on_its_batch():
    """Stimulus 3 of six, alone with its replica seed: bit-identical potentials (row-by-row arithmetic)."""
    c = build_circuit(parse_spec(TINY))
    u = np.random.default_rng(0).uniform(0.0, 2.0, size=(6, 4))
    u_op = u.mean(0)
    batch = build_plan(c, u, 20.0, seed=1, u_operating=u_op)
    alone = build_plan(c, u[3:4], 20.0, seed=1, u_operating=u_op, replica_seeds=[replica_seed(1, 3)])
    assert batch.info["v_init"]["kind"] == "stationary"
    np.testing.assert_array_equal(alone.v0_mV[0], batch.v0_mV[3])
