"""The one Siegert implementation (:mod:`cortex_resnet.model.siegert`) against SciPy's adaptive
quadrature, its closed-form derivative against autograd and differences, and its edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortex_resnet.model.siegert import (siegert, siegert_derivative, siegert_inverse, siegert_numpy,
                                         siegert_rate_hz)
from cortex_resnet.model.transfer import get_transfer

P = dict(tau_m_ms=20.0, t_ref_ms=2.0, theta_mV=20.0, v_reset_mV=10.0)
ARGS = (20.0, 2.0, 20.0, 10.0)


@pytest.mark.parametrize("sigma_mV", [0.05, 0.2, 0.5])
def test_low_noise_matches_adaptive_quadrature(sigma_mV):
    """Small sigma: the integrand runs from ~1/|x| to e^{x^2} over a span of 10/sigma, the case
    the split at 0 is for (one 96-point interval was 18 % off at sigma = 0.05 mV, mu = 18.75 mV).
    Measured <= 3.3e-12 relative against quad (epsrel 1e-12); tolerance 1e-10."""
    mu = np.linspace(0.0, 60.0, 121)
    ref = np.array([siegert_rate_hz(m, sigma_mV, **P) for m in mu])
    ok = ref > 1e-300
    got = siegert_numpy(mu, sigma_mV, *ARGS)
    np.testing.assert_allclose(got[ok], ref[ok], rtol=1e-10, atol=0)
    assert np.all(got[~ok] < 1e-290)


def test_far_below_reset_is_zero_not_nan():
    """Both limits far above 0 (mu 100 sigma below reset): the rate underflows to 0 Hz."""
    got = siegert_numpy(np.array([-500.0, -5000.0]), 5.0, *ARGS)
    assert np.all(got == 0.0)
    assert np.all(siegert_derivative(np.array([-500.0]), 5.0, *ARGS) == 0.0)


@pytest.mark.parametrize("mu_mV", [10.0, 20.0, 13.7, 26.0])
def test_autograd_equals_the_closed_form_derivative(mu_mV):
    """At mu = V_r and mu = theta a limit of the integral is exactly 0, where the split point
    sits: autograd must still give erfcx(-hi) dhi - erfcx(-lo) dlo. The closed form and autograd
    through the quadrature differ by the quadrature error, measured < 1e-11; tolerance 1e-9."""
    mu = torch.tensor([mu_mV], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(siegert(mu, 5.0, *ARGS).sum(), mu)
    assert float(g[0]) == pytest.approx(float(siegert_derivative(mu_mV, 5.0, *ARGS)), rel=1e-9)


@pytest.mark.parametrize("mu_mV", [0.0, 12.0, 19.0, 35.0])
def test_closed_form_derivative_matches_central_differences(mu_mV):
    """h = 1e-4 mV: truncation h^2 |nu'''| / 6 and rounding eps |nu| / h, both < 1e-8 relative
    here; tolerance 1e-7."""
    h = 1e-4
    fd = (siegert_numpy(mu_mV + h, 5.0, *ARGS) - siegert_numpy(mu_mV - h, 5.0, *ARGS)) / (2 * h)
    assert float(siegert_derivative(mu_mV, 5.0, *ARGS)) == pytest.approx(float(fd), rel=1e-7)


def test_inverse_is_vectorised_and_recovers_the_rate():
    rate = np.array([0.1, 3.0, 60.0, 400.0])
    mu = siegert_inverse(rate, 5.0, *ARGS)
    np.testing.assert_allclose(siegert_numpy(mu, 5.0, *ARGS), rate, rtol=1e-9)
    with pytest.raises(ValueError, match="rate < 1/t_ref"):
        siegert_inverse(500.0, 5.0, *ARGS)


def test_lif_transfer_is_the_shared_function():
    """The transfer function and the mean field compute the same numbers (one implementation)."""
    z = np.linspace(-10.0, 50.0, 31)
    lif = get_transfer("lif", sigma_mV=3.0, **P)
    np.testing.assert_array_equal(lif.numpy(z), siegert_numpy(z, 3.0, *ARGS))
    assert lif(torch.tensor(z, dtype=torch.float32)).dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_far_below_threshold_rate_zero_and_gradient_finite(dtype):
    # mu 216 mV below threshold (sigma 6 mV): erfcx(-x) overflows in the integrand; before the guard
    # the rate was 1000/inf = 0 but its gradient inf * 0 = NaN, which poisoned training (lif columns)
    mu = torch.tensor([-200.0, 0.0, 10.0], dtype=dtype, requires_grad=True)
    r = siegert(mu, 6.0, 10.0, 2.0, 16.4, 1.4)
    r.sum().backward()
    assert float(r[0]) == 0.0
    assert torch.isfinite(mu.grad).all() and float(mu.grad[0]) == 0.0
    assert float(mu.grad[2]) > float(mu.grad[1]) > 0.0  # the Siegert rate rises with mu
