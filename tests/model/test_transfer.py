"""Transfer functions (:mod:`cortex_resnet.model.transfer`) against independent references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cortex_resnet.errors import SpecError, UnknownNameError
from cortex_resnet.model.transfer import get_transfer, known_transfers, siegert_rate_hz

LIF_DEFAULTS = dict(tau_m_ms=20.0, t_ref_ms=2.0, theta_mV=20.0, v_reset_mV=10.0)
MU_MV = np.linspace(-10.0, 50.0, 61)  # 30 mV below threshold to 30 mV above (1e-16 .. 200 Hz)


@pytest.mark.parametrize("sigma_mV", [2.0, 5.0, 10.0])
def test_lif_siegert_float64_matches_scipy_quad(sigma_mV):
    """96-point Gauss-Legendre in torch vs scipy's adaptive quad (epsrel 1e-12) of the same
    integral: measured <= 3e-13 relative; tolerance 1e-10 (rates span 1e-16 .. 200 Hz)."""
    lif = get_transfer("lif", sigma_mV=sigma_mV, **LIF_DEFAULTS)
    got = lif.numpy(MU_MV)
    ref = np.array([siegert_rate_hz(m, sigma_mV, **LIF_DEFAULTS) for m in MU_MV])
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=0)


def test_lif_siegert_float32():
    """float32: the sum of 96 positive terms, each a few eps off, and the argument rounding
    (theta - mu)/sigma amplified by d log I / dx <= ~10: <= ~3e-5 relative; measured 3.3e-6.
    Only where the rate is representable (> 1e-30 Hz)."""
    lif = get_transfer("lif", sigma_mV=5.0, **LIF_DEFAULTS)
    got = lif(torch.tensor(MU_MV, dtype=torch.float32))
    assert got.dtype == torch.float32
    ref = np.array([siegert_rate_hz(m, 5.0, **LIF_DEFAULTS) for m in MU_MV])
    ok = ref > 1e-30
    np.testing.assert_allclose(got.double().numpy()[ok], ref[ok], rtol=3e-5)


@pytest.mark.parametrize("mu_mV", [25.0, 30.0, 40.0])
def test_lif_low_noise_limit_is_the_deterministic_lif_rate(mu_mV):
    """sigma -> 0 above threshold: 1/nu = t_ref + tau ln((mu - V_r)/(mu - theta)), an independent
    closed form. The correction is O(sigma^2): deviations at sigma = 0.1 and 0.05 mV differ by a
    factor 4 (+-0.3 for the O(sigma^4) term) and are below 1e-4 at 0.05 mV."""
    p = LIF_DEFAULTS
    det = 1000.0 / (p["t_ref_ms"] + p["tau_m_ms"] * math.log((mu_mV - p["v_reset_mV"]) / (mu_mV - p["theta_mV"])))
    dev = {s: float(get_transfer("lif", sigma_mV=s, **p).numpy(np.array([mu_mV]))[0]) / det - 1
           for s in (0.1, 0.05)}
    assert abs(dev[0.05]) < 1e-4
    assert dev[0.1] / dev[0.05] == pytest.approx(4.0, abs=0.3)


def test_lif_rate_is_bounded_by_refractoriness():
    lif = get_transfer("lif", sigma_mV=5.0, **LIF_DEFAULTS)
    r = lif.numpy(np.array([1e3, 1e5]))
    assert np.all(r < 1000.0 / LIF_DEFAULTS["t_ref_ms"])
    assert r[1] == pytest.approx(500.0, rel=1e-3)


# points away from the kinks of relu / powerlaw (at 0 and the threshold)
Z = np.array([-2.3, -0.7, 0.4, 1.1, 2.9])


@pytest.mark.parametrize("name,params,z", [
    ("linear", {"gain": 1.7}, Z),
    ("relu", {"gain": 2.0, "threshold": 0.2}, Z),
    ("powerlaw", {"k": 0.04, "n": 2.0}, Z),
    ("powerlaw", {"k": 0.3, "n": 3.0}, Z),
    ("sigmoid", {"r_max": 5.0, "gain": 1.5, "threshold": 0.5}, Z),
    ("tanh", {"r_max": 2.0, "gain": 0.8}, Z),
    ("lif", {"sigma_mV": 4.0}, np.array([0.0, 10.0, 18.0, 25.0, 40.0])),
])
def test_derivative_matches_central_differences(name, params, z):
    """float64 central differences, h = 1e-5 (times the input scale): truncation h^2 |f'''|/6 plus
    rounding eps |f|/h, both <= 1e-9 relative to max |f'| here; tolerance 1e-7 relative."""
    f = get_transfer(name, **params)
    h = 1e-5 * max(1.0, float(np.max(np.abs(z))))
    fd = (f.numpy(z + h) - f.numpy(z - h)) / (2 * h)
    d = f.derivative(torch.as_tensor(z, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(d, fd, rtol=1e-7, atol=1e-7 * np.max(np.abs(fd)))


@pytest.mark.parametrize("name,params,expected", [
    ("linear", {"gain": 2.0}, lambda z: 2.0 * z),
    ("relu", {"gain": 2.0, "threshold": 0.2}, lambda z: 2.0 * np.maximum(z - 0.2, 0)),
    ("powerlaw", {"k": 0.04, "n": 2.0}, lambda z: 0.04 * np.maximum(z, 0) ** 2),
    ("sigmoid", {"r_max": 5.0, "gain": 1.5, "threshold": 0.5}, lambda z: 5.0 / (1 + np.exp(-1.5 * (z - 0.5)))),
    ("tanh", {"r_max": 2.0, "gain": 0.8}, lambda z: 2.0 * np.tanh(0.8 * z)),
])
def test_values_match_numpy_formulas(name, params, expected):
    """The documented formula evaluated in NumPy float64: 1e-14 relative (one or two roundings)."""
    np.testing.assert_allclose(get_transfer(name, **params).numpy(Z), expected(Z), rtol=1e-14, atol=1e-15)


def test_registry_knows_the_issue_functions():
    assert {"linear", "relu", "powerlaw", "sigmoid", "tanh", "lif"} <= set(known_transfers())


def test_unknown_transfer_lists_known_names():
    with pytest.raises(UnknownNameError) as info:
        get_transfer("softplus")
    assert info.value.known == known_transfers()
    assert "relu" in str(info.value)


@pytest.mark.parametrize("name,params,field", [
    ("relu", {"slope": 1.0}, "transfer.slope"),
    ("relu", {"gain": 0.0}, "transfer.gain"),
    ("powerlaw", {"n": -1.0}, "transfer.n"),
    ("lif", {"v_reset_mV": 25.0}, "transfer.v_reset_mV"),
    ("lif", {"t_ref_ms": -1.0}, "transfer.t_ref_ms"),
    ("sigmoid", {"r_max": float("inf")}, "transfer.r_max"),
])
def test_bad_parameters_name_the_field(name, params, field):
    with pytest.raises(SpecError) as info:
        get_transfer(name, **params)
    assert info.value.field == field


@pytest.mark.parametrize("name", ["relu", "powerlaw", "sigmoid", "tanh", "lif"])
def test_transfer_keeps_dtype_and_is_differentiable(name):
    f = get_transfer(name)
    z = torch.linspace(-1.0, 30.0, 7, dtype=torch.float32, requires_grad=True)
    y = f(z)
    assert y.dtype == torch.float32
    (g,) = torch.autograd.grad(y.sum(), z)
    assert torch.all(torch.isfinite(g))
