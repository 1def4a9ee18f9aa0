"""The 8-population mean field against NNMT (the Neuronal Network Mean-field Toolbox, Layer et al.
2022, Front Neuroinform 16:835657): an independent implementation of the same theory
(Fourcaud & Brunel 2002 shifted Siegert rate for exponential synapses, self-consistent rates).

NNMT is a reference for `make validate` (the ``validate`` extra); skipped where it is missing.
Compared at full scale with the Poisson background (no DC current: NNMT's ``I_ext`` is one
number for all populations) and in continuous time (``dt_ms = 0``: NNMT has no time-step
correction). Measured 2026-11 (nnmt 1.3.0): largest relative difference 1.0e-13 (both evaluate
the Siegert integral to machine precision).
"""

from __future__ import annotations

import numpy as np
import pytest

from cortex_resnet.model import pd14 as P
from cortex_resnet.spiking.meanfield import solve
from cortex_resnet.spiking.pd14 import pool_model

nnmt_exp = pytest.importorskip("nnmt.lif.exp")


def nnmt_rates(scale: float = 1.0) -> np.ndarray:
    """NNMT's self-consistent rates (Hz) for the microcircuit, parameters in SI units."""
    net = P.pd14(scale, "poisson")
    assert np.all(net.dc_pA == 0)
    return np.asarray(nnmt_exp._firing_rates(
        J=net.jump_mV * 1e-3, K=net.K, V_0_rel=(P.V_RESET_MV - P.E_L_MV) * 1e-3,
        V_th_rel=(P.V_TH_MV - P.E_L_MV) * 1e-3, tau_m=P.TAU_M_MS * 1e-3, tau_r=P.T_REF_MS * 1e-3,
        tau_s=P.TAU_SYN_MS * 1e-3, J_ext=np.full(8, net.jump_ext_mV * 1e-3), K_ext=net.K_ext.astype(float),
        nu_ext=P.BG_RATE_HZ, method="shift"))


@pytest.mark.slow
def test_mean_field_matches_nnmt_at_full_scale():
    ours = solve(pool_model(P.pd14(1.0), dt_ms=0.0), P.NEST_FULL_SCALE_RATES_HZ).rates_hz
    ref = nnmt_rates(1.0)
    print(dict(zip(P.POPULATIONS, np.round(ours, 4))), dict(zip(P.POPULATIONS, np.round(ref, 4))))
    # the same integral, two codes and two fixed-point solvers: 1e-9 relative (measured 1e-13)
    np.testing.assert_allclose(ours, ref, rtol=1e-9)
