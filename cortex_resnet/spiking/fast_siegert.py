"""The Siegert rate and the LIF stationary density for many pools at once, in closed form plus
one tabulated function of one variable (the batched initial state of a spiking run).

:func:`cortex_resnet.model.siegert.siegert` integrates ``erfcx(-x)`` by 2 x 128-point
Gauss-Legendre per pool: exact to ~1e-12, but ~7 us per pool. The initial state of a
batch of 256 stimuli needs the mean-field fixed point of 256 x (pools) inputs (tens of
relaxation steps each) and a density per pool. Here both use

    int_0^y erfcx(-x) dx = 2 e^{y^2} D(y) - H(y)   (y >= 0),     = -H(-y)   (y < 0)
    int_0^y e^{s^2} ds  = e^{y^2} D(y)              (D: Dawson's function, scipy.special.dawsn)
    int_0^y D(s) ds      = Q(y)

with ``H(y) = int_0^y erfcx(x) dx`` and ``Q`` tabulated once on ``[0, 40]`` (step 0.01,
cumulative 8-point Gauss-Legendre per cell: to rounding) and interpolated by cubic
Hermite with their exact derivatives ``erfcx`` and ``D`` (error ~1e-11); beyond 40 their
asymptotic series. Tested against the quadrature: :func:`siegert_fast` within 1e-9
relative of :func:`~cortex_resnet.model.siegert.siegert_numpy`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import dawsn, erfcx

__all__ = ["siegert_fast", "cdf_constants", "stationary_cdf", "stationary_density", "H_int", "Q_int"]

_STEP, _TOP = 0.01, 40.0
_HALF_PI = 0.5 * math.sqrt(math.pi)
_NODES = np.arange(0.0, _TOP + _STEP / 2, _STEP)


def _table(f) -> np.ndarray:
    """``int_0^{y_k} f`` at the nodes (8-point Gauss-Legendre per cell, cumulative)."""
    x, w = np.polynomial.legendre.leggauss(8)
    a = _NODES[:-1, None] + 0.5 * _STEP * (x[None, :] + 1.0)
    cells = 0.5 * _STEP * (f(a) * w).sum(1)
    return np.concatenate([[0.0], np.cumsum(cells)])


_H, _DH = _table(erfcx), erfcx(_NODES)
_Q, _DQ = _table(dawsn), dawsn(_NODES)


def _hermite(y: np.ndarray, val: np.ndarray, der: np.ndarray) -> np.ndarray:
    """Cubic Hermite interpolation of a tabulated function at ``0 <= y <= _TOP``."""
    k = np.minimum((y / _STEP).astype(np.int64), _NODES.size - 2)
    t = y / _STEP - k
    t2, t3 = t * t, t * t * t
    return ((2 * t3 - 3 * t2 + 1) * val[k] + (t3 - 2 * t2 + t) * _STEP * der[k]
            + (-2 * t3 + 3 * t2) * val[k + 1] + (t3 - t2) * _STEP * der[k + 1])


def H_int(y: np.ndarray) -> np.ndarray:
    """``int_0^y erfcx(x) dx`` for ``y >= 0`` (beyond the table: ``erfcx(x) ~ (1 - 1/(2x^2) + 3/(4x^4))/(sqrt(pi) x)``)."""
    y = np.asarray(y, np.float64)
    far = lambda z: (np.log(z) + 0.25 / z**2 - 3.0 / (16.0 * z**4)) / math.sqrt(math.pi)  # noqa: E731
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(y <= _TOP, _hermite(np.minimum(y, _TOP), _H, _DH), _H[-1] + far(np.maximum(y, _TOP)) - far(_TOP))


def Q_int(y: np.ndarray) -> np.ndarray:
    """``int_0^y D(s) ds`` (even in ``y``; beyond the table ``D(s) ~ 1/(2s) + 1/(4s^3) + 3/(8s^5)``)."""
    y = np.abs(np.asarray(y, np.float64))
    far = lambda z: 0.5 * np.log(z) - 0.125 / z**2 - 3.0 / (32.0 * z**4)  # noqa: E731
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(y <= _TOP, _hermite(np.minimum(y, _TOP), _Q, _DQ), _Q[-1] + far(np.maximum(y, _TOP)) - far(_TOP))


def _F(y: np.ndarray) -> np.ndarray:
    """``int_0^y erfcx(-x) dx`` (inf where ``e^{y^2}`` overflows: the rate is 0 there)."""
    with np.errstate(over="ignore", invalid="ignore"):
        pos = 2.0 * np.exp(np.maximum(y, 0.0) ** 2) * dawsn(np.maximum(y, 0.0)) - H_int(np.maximum(y, 0.0))
    return np.where(y >= 0, pos, -H_int(np.maximum(-y, 0.0)))


def siegert_fast(mu_mV, sigma_mV, tau_m_ms, t_ref_ms, theta_mV, v_reset_mV) -> np.ndarray:
    """Siegert rate (Hz), elementwise, arguments as :func:`~cortex_resnet.model.siegert.siegert`
    (module docstring: the same integral in closed form)."""
    lo = (np.asarray(v_reset_mV) - mu_mV) / sigma_mV
    hi = (np.asarray(theta_mV) - mu_mV) / sigma_mV
    with np.errstate(over="ignore", invalid="ignore"):
        integral = _F(hi) - _F(lo)
        period_ms = t_ref_ms + tau_m_ms * math.sqrt(math.pi) * integral
        return np.where(np.isfinite(period_ms), 1000.0 / period_ms, 0.0)


def _scaled_erfc(y: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``e^{-c} erfc(-y)`` without overflow: ``e^{-c - y^2} erfcx(|y|)``, or 2 e^{-c} minus it for ``y > 0``."""
    with np.errstate(over="ignore", under="ignore"):
        t = np.exp(-c - y * y) * erfcx(np.abs(y))
        return np.where(y < 0, t, 2.0 * np.exp(-c) - t)


def cdf_constants(y_th: np.ndarray, y_r: np.ndarray) -> dict[str, np.ndarray]:
    """The per-pool terms of :func:`stationary_cdf` (evaluate once, use for many ``y``)."""
    C = np.maximum(y_th, 0.0) ** 2
    k = {"y_r": y_r, "d_th": dawsn(y_th), "d_r": dawsn(y_r), "s_th": C - y_th**2, "s_r": C - y_r**2, "C": C}
    with np.errstate(over="ignore", under="ignore"):
        k["e_C"] = np.exp(-C)
    k["erfc_r"] = _scaled_erfc(y_r, k["s_th"])
    k["at_r"] = _HALF_PI * (k["d_th"] * k["erfc_r"] - k["d_r"] * _scaled_erfc(y_r, k["s_r"]))
    k["q_r"] = Q_int(y_r)
    return k


def stationary_cdf(y: np.ndarray, y_th: np.ndarray | None, y_r: np.ndarray | None,
                   consts: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Unnormalised cumulative stationary density ``int_{-inf}^y P`` of the LIF diffusion
    (:mod:`cortex_resnet.spiking.initial_state`): ``P(s) = e^{-s^2} (E(y_th) - E(max(s, y_r)))``,
    ``E(x) = e^{x^2} D(x)``, in closed form, scaled by ``e^{-C}``, ``C = max(y_th, 0)^2``
    (no overflow); ``y`` broadcasts against the per-pool ``y_th``, ``y_r`` (or their
    :func:`cdf_constants`); ``y <= y_th``.

    Below the reset ``P`` is a Gaussian: ``(sqrt(pi)/2) e^{-C} (E(y_th) - E(y_r)) erfc(-y)``; above,
    ``int e^{-s^2} E(y_th) ds`` is an error function and ``int e^{-s^2} E(s) ds = int D = Q``.
    """
    k = cdf_constants(y_th, y_r) if consts is None else consts
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        t_th = _scaled_erfc(y, k["s_th"])
        below = _HALF_PI * (k["d_th"] * t_th - k["d_r"] * _scaled_erfc(np.minimum(y, k["y_r"]), k["s_r"]))
        band = (k["at_r"] + _HALF_PI * k["d_th"] * (t_th - k["erfc_r"])
                - k["e_C"] * (Q_int(np.maximum(y, k["y_r"])) - k["q_r"]))
        return np.where(y <= k["y_r"], below, band)


def stationary_density(y: np.ndarray, y_th: np.ndarray | None, y_r: np.ndarray | None,
                       consts: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """``e^{-C} P(y)`` (the derivative of :func:`stationary_cdf`), the same scaling and arguments."""
    k = cdf_constants(y_th, y_r) if consts is None else consts
    m = np.maximum(y, k["y_r"])
    with np.errstate(over="ignore", under="ignore"):
        # exp(m^2 - y^2 - C) in one exponent: exp(m^2 - y^2) * e^{-C} is inf * 0 = nan far below threshold
        return np.maximum(k["d_th"] * np.exp(-k["s_th"] - y * y) - np.exp(m * m - y * y - k["C"]) * dawsn(m), 0.0)
