"""Convolutional recurrence (rate/conv.py): a real circular convolution equals the dense ``W r``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortex_resnet.errors import SpecError
from cortex_resnet.rate.conv import ConvRecurrence, signed_offsets, window_index
from cortex_resnet.rate.simulator import simulate

from tests.bridge_cases import case_circuit, one_thread  # noqa: F401 (autouse)


def _dense(c, r):
    return r @ torch.as_tensor(c.W).T


# the dense product (the independent reference) and the convolution sum the same products in a
# different order: float64 agreement to a few ulps of the largest term (1e-13 is ~500 ulp of 1)
@pytest.mark.parametrize("case,changes", [
    ("spatial_relu", {}),
    ("spatial2d_relu", {"connectivity.weight_cv": 0.0}),
    # a map of 4 sites with wide kernels: the window covers the whole map (each offset counted once)
    ("spatial_relu", {"connectivity.map_shape": [4], "populations.E.n": 8, "populations.I.n": 4,
                      "connectivity.sigma_I": 5.0, "input.n_inputs": 4}),
    ("spatial2d_relu", {"connectivity.weight_cv": 0.0, "connectivity.map_shape": [2, 3], "populations.E.n": 12,
                        "populations.I.n": 6, "connectivity.sigma_I": 4.0, "input.n_inputs": 6}),
])
def test_conv_equals_dense_product(case, changes):
    c = case_circuit(case, **changes)
    op = ConvRecurrence(c)
    r = torch.as_tensor(np.random.default_rng(1).uniform(0, 1, (5, c.n_units)))
    np.testing.assert_allclose(op(r).numpy(), _dense(c, r).numpy(), rtol=0, atol=1e-13)
    assert op.weight.numel() < c.W.size or c.n_units < 20  # compact: not an N x N matrix


def test_window_is_the_kernel_support():
    c = case_circuit("spatial_relu")  # sigma_I 3 sites, truncated at 3 sigma: offsets up to 9 > 16 // 2
    op = ConvRecurrence(c)
    assert op.radius == (8,) and op.weight.shape == (3, 3, 17)  # 2 E + 1 I channels, 16 sites: all offsets
    narrow = ConvRecurrence(case_circuit("spatial_relu", **{"connectivity.sigma_I": 1.0,
                                                           "connectivity.sigma_E": 1.0}))
    assert narrow.radius == (3,) and narrow.weight.shape[-1] == 7


def test_signed_offsets_cover_each_offset_once():
    for L in (1, 2, 5, 8):
        s = signed_offsets(L)
        assert sorted(s % L) == list(range(L)) and s.min() >= -(L - 1) // 2 and s.max() <= L // 2
    idx, valid, radius = window_index(1, (4,), np.ones(4, dtype=bool))
    assert radius == (2,) and valid.sum() == 4  # offsets -1, 0, 1, 2 (not -2 again)


@pytest.mark.parametrize("case,field_hint", [("dense_relu", "spatial"), ("spatial2d_relu", "translation-invariant")])
def test_not_a_convolution_is_refused_naming_recurrence(case, field_hint):
    with pytest.raises(SpecError, match=field_hint) as err:
        ConvRecurrence(case_circuit(case))
    assert err.value.field == "recurrence"


def test_simulate_with_conv_recurrence_equals_dense():
    c = case_circuit("spatial_relu")
    kw = dict(stimulus="constant:amp=0.8", duration_ms=30.0, dt_ms=0.5, method="euler", decompose=False)
    dense, conv = simulate(c, **kw), simulate(c, recurrence="conv", **kw)
    assert float(abs(dense.r).max()) > 0.1
    np.testing.assert_allclose(conv.r.values, dense.r.values, rtol=0, atol=1e-12)
    with pytest.raises(SpecError) as err:
        simulate(c, recurrence="sparse", **kw)
    assert err.value.field == "recurrence"
