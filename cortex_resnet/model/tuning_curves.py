"""Tuning curves on a ring: peak, full width at half maximum, and a von Mises fit with a baseline.

A tuning curve here is a response ``y`` sampled at feature offsets ``d`` (deg) from the
stimulus, on a ring of period ``P`` (deg). Both width measures are needed to tell a gain
from an offset: an untuned offset ``a`` leaves the fitted ``sigma`` as it is but widens
the FWHM (half of a raised maximum is reached further out).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

from cortex_resnet.model.tuning import log_kernel, wrap_deg

__all__ = ["fwhm", "VonMisesFit", "fit_von_mises", "aligned_profile"]


def aligned_profile(theta_deg: np.ndarray, y: np.ndarray, stim_deg: np.ndarray,
                    period_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Average responses to several stimuli at their offset from the stimulus.

    Parameters
    ----------
    theta_deg : (n,) preferred features of the units (deg)
    y : (batch, n) responses, one row per stimulus
    stim_deg : (batch,) each stimulus's feature (deg)

    Returns
    -------
    (offsets, mean response): offsets sorted in ``[-P/2, P/2)`` (deg), rounded to 1e-6 deg.
    """
    d = np.round(wrap_deg(theta_deg[None, :] - np.asarray(stim_deg)[:, None], period_deg), 6)
    offsets, inv = np.unique(d.ravel(), return_inverse=True)
    sums = np.bincount(inv, weights=np.asarray(y, dtype=float).ravel(), minlength=offsets.size)
    return offsets, sums / np.bincount(inv, minlength=offsets.size)


def fwhm(d_deg: np.ndarray, y: np.ndarray, period_deg: float) -> float:
    """Full width (deg) at half the maximum of a ring tuning curve, linearly interpolated.

    Walks from the peak to each side until the curve drops below half its maximum; a curve
    that never does (an offset above half the peak) has width ``period_deg``. NaN for a
    curve without a positive peak.
    """
    order = np.argsort(d_deg)
    d, v = np.asarray(d_deg, float)[order], np.asarray(y, float)[order]
    n = v.size
    if n < 3 or not np.isfinite(v).all() or v.max() <= 0:
        return math.nan
    peak, half = int(np.argmax(v)), v.max() / 2
    sides = []
    for step in (1, -1):
        for k in range(1, n):
            j = (peak + step * k) % n
            if v[j] < half:
                prev = (j - step) % n
                frac = (v[prev] - half) / (v[prev] - v[j])
                sides.append((k - 1 + frac) * abs(wrap_deg(d[j] - d[prev], period_deg)))
                break
        else:
            return float(period_deg)
    return float(min(sum(sides), period_deg))


@dataclass(frozen=True)
class VonMisesFit:
    """``y = baseline + amplitude * k(d; sigma)`` (:func:`cortex_resnet.model.tuning.von_mises`)."""

    baseline: float
    amplitude: float
    sigma_deg: float
    r2: float

    @property
    def offset_fraction(self) -> float:
        """Baseline as a fraction of the peak ``baseline + amplitude``."""
        peak = self.baseline + self.amplitude
        return self.baseline / peak if peak else math.nan


def fit_von_mises(d_deg: np.ndarray, y: np.ndarray, period_deg: float) -> VonMisesFit:
    """Least-squares von Mises with a baseline, centred at the stimulus (``d = 0``).

    NaN fields when the fit fails (no finite optimum).
    """
    d, v = np.asarray(d_deg, float), np.asarray(y, float)
    nan = VonMisesFit(math.nan, math.nan, math.nan, math.nan)
    if v.size < 4 or not np.isfinite(v).all() or np.ptp(v) <= 0:
        return nan

    def model(x: np.ndarray, a: float, b: float, s: float) -> np.ndarray:
        return a + b * np.exp(log_kernel(x, s, period_deg))

    w0 = fwhm(d, v - v.min(), period_deg)
    p0 = (float(v.min()), float(np.ptp(v)), max(w0 / 2.355 if np.isfinite(w0) else period_deg / 8, 0.5))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            p, _ = curve_fit(model, d, v, p0=p0, bounds=([-np.inf, 0.0, 1e-3], [np.inf, np.inf, 10 * period_deg]),
                             maxfev=5000)
    except (RuntimeError, ValueError):
        return nan
    resid = v - model(d, *p)
    r2 = 1.0 - float(np.sum(resid**2) / np.sum((v - v.mean())**2))
    return VonMisesFit(float(p[0]), float(p[1]), float(p[2]), r2)
