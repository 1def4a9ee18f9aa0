"""Mean field of LIF pools (:mod:`cortex_resnet.spiking.meanfield`) against SciPy quadrature and the rate model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.model.fixedpoint import steady_state
from cortex_resnet.spiking.meanfield import (RHO_SIEGMUND, PoolModel, siegert, siegert_derivative,
                                     siegert_inverse, solve)
from cortex_resnet.model.spec import load_spec
from cortex_resnet.spiking.build import build_plan
from cortex_resnet.model.transfer import get_transfer, siegert_rate_hz

MODELS = Path(__file__).resolve().parents[2] / "models"
POINTS = [(10.0, 5.0), (20.0, 5.0), (30.0, 2.0), (5.0, 1.0), (25.0, 0.5), (-10.0, 4.0), (18.0, 8.0)]


@pytest.mark.parametrize("mu, sigma", POINTS)
def test_siegert_matches_adaptive_quadrature(mu, sigma):
    expected = siegert_rate_hz(mu, sigma, 20.0, 2.0, 20.0, 10.0)
    assert siegert(mu, sigma, 20.0, 2.0, 20.0, 10.0) == pytest.approx(expected, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("rate", [0.5, 5.0, 40.0, 200.0])
def test_inverse_recovers_the_input(rate):
    mu = siegert_inverse(rate, 5.0, 20.0, 2.0, 20.0, 10.0)
    assert siegert(mu, 5.0, 20.0, 2.0, 20.0, 10.0) == pytest.approx(rate, rel=1e-9)


@pytest.mark.parametrize("mu", [5.0, 15.0, 25.0])
def test_derivative_matches_the_lif_transfer_autograd(mu):
    lif = get_transfer("lif", sigma_mV=5.0)
    expected = float(lif.derivative(torch.tensor([mu], dtype=torch.float64))[0])
    assert siegert_derivative(mu, 5.0, 20.0, 2.0, 20.0, 10.0) == pytest.approx(expected, rel=1e-5)


def _pools(n=2, **kw) -> PoolModel:
    z = np.zeros(n)
    base = dict(tau_m_ms=np.full(n, 20.0), t_ref_ms=np.full(n, 2.0), theta_mV=np.full(n, 20.0),
                v_reset_mV=np.full(n, 10.0), K=np.zeros((n, n)), w=np.zeros((n, n)),
                excitatory=np.array([True] + [False] * (n - 1)), kind="current", tau_e_ms=0.0,
                tau_i_ms=0.0, E_e_mV=z, E_i_mV=z, mu_dc_mV=z, nu_in_hz=z, w_in=z, sigma_white_mV=z)
    base.update(kw)
    return PoolModel(**base)


def test_poisson_input_moments_are_brunels():
    # C_ext = 1000 synapses of J = 0.1 mV at 20 Hz, tau = 20 ms: mu = J C nu tau = 40 mV,
    # sigma^2 = J^2 C nu tau = 4 mV^2 (Brunel 2000, eqs. 4-5)
    m = _pools(1, nu_in_hz=np.array([20000.0]), w_in=np.array([0.1]))
    mu, sigma, tau, shift = m.moments(np.zeros(1))
    assert mu[0] == pytest.approx(40.0) and sigma[0] == pytest.approx(2.0) and shift[0] == 0.0


def test_time_step_shifts_threshold_by_the_siegmund_overshoot():
    m = _pools(1, sigma_white_mV=np.array([5.0]), dt_ms=0.1)
    _, sigma, _, shift = m.moments(np.zeros(1))
    assert shift[0] == pytest.approx(RHO_SIEGMUND * 5.0 * np.sqrt(0.1 / 20.0))
    assert RHO_SIEGMUND == pytest.approx(0.5826, abs=1e-4)


def test_self_consistent_rates_are_a_fixed_point_of_the_transfer():
    # Brunel (2000) model A, g = 5, nu_ext = 2 nu_thr
    K = np.array([[1000.0, 250.0], [1000.0, 250.0]])
    w = np.array([[0.1, 0.5], [0.1, 0.5]])
    m = _pools(2, K=K, w=w, nu_in_hz=np.full(2, 20000.0), w_in=np.full(2, 0.1))
    res = solve(m)
    np.testing.assert_allclose(m.transfer(res.rates_hz), res.rates_hz, atol=1e-6)
    assert 30.0 < res.rates_hz[0] < 45.0  # AI-state rate of Brunel's Fig. 8C is tens of Hz


def test_rate_model_with_lif_phi_is_the_mean_field_of_its_spiking_network():
    """In continuous time and at the operating point, mu and sigma of the spiking realisation
    equal the rate model's: its steady state is the pools' self-consistent rate."""
    spec = load_spec(MODELS / "lif_ei.toml").replace(**{"spiking.dt_ms": 0.1})
    c = build_circuit(spec)
    plan = build_plan(c, "constant:amp=25.0", 100.0)
    model = plan.pool_model
    continuous = PoolModel(**{**model.__dict__, "dt_ms": 0.0})
    r_rate = steady_state(c, np.array([[25.0]])).numpy()[0]
    np.testing.assert_allclose(solve(continuous, r_rate).rates_hz, r_rate, rtol=1e-8)
    _, sigma, _, _ = continuous.moments(r_rate)
    np.testing.assert_allclose(sigma, 5.0, rtol=1e-8)  # background noise matched to sigma_mV
