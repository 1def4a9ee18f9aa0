"""Circuits, stimuli and tuning-curve measures of the ``tuned-amplification`` hypothesis.

Three circuits see the same kind of tuned input (a von Mises bump on a ring of features):

* ``tuned``: the feature-specific model file (``models/tuned_amplifier.toml``);
* ``all-to-all``: the same file with its recurrent tuning removed (dense, untuned
  recurrence: the canonical microcircuit with a tuned input);
* ``ring``: the spatial ring (``models/spatial_ring.toml``: local excitation, broader
  inhibition), its topographic input shaped as a bump over the map's sites (position on
  a ring of 360 deg).

A seed is an independent random circuit (``weight_cv`` heterogeneity); each seed sees
``n_orientations`` stimuli evenly spaced on the ring, whose E-population responses are
aligned at the stimulus and averaged, then folded (``+d`` and ``-d`` averaged: the circuits
are mirror-symmetric).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from cortex_resnet.errors import ConvergenceError
from cortex_resnet.model.circuit import Circuit, build_circuit
from cortex_resnet.model.fixedpoint import steady_state
from cortex_resnet.model.spec import parse_spec
from cortex_resnet.model.tuning import preferences, unit_preferences, von_mises, wrap_deg
from cortex_resnet.model.tuning_curves import aligned_profile, fit_von_mises, fwhm
from cortex_resnet.spiking.simulator import simulate_spiking

__all__ = ["CIRCUITS", "circuit_for", "stimuli", "rate_responses", "spiking_responses", "profile_measures",
           "MEASURES", "nan_measures"]

CIRCUITS = ("tuned", "all-to-all", "ring")
MEASURES = ("remaining", "gain", "r_peak", "x_peak", "fwhm_r", "fwhm_x", "width_ratio", "sigma_r", "sigma_x",
            "sigma_ratio", "offset_r", "offset_x", "fit_r2_r", "fit_r2_x")


def circuit_for(prepared: dict[str, Any], circuit: str, seed: int, sigma_rec: float | None = None,
                pool_size: int | None = None) -> Circuit:
    """The seed's circuit; ``sigma_rec`` (deg) sets every tuned pathway's width (the sweep)."""
    spec = parse_spec(prepared["ring_spec" if circuit == "ring" else "tuned_spec"])
    changes: dict[str, Any] = {"seed": int(seed)}
    if circuit == "all-to-all":
        changes["tuning.sigma_deg"] = {}
    elif circuit == "tuned" and sigma_rec is not None:
        pops = spec.populations.names
        changes["tuning.sigma_deg"] = {post: {pre: float(sigma_rec) for pre in pops} for post in pops}
    if pool_size is not None:
        changes["spiking.pool_size"] = int(pool_size)
    spec = spec.replace(**changes)
    return build_circuit(spec, np.random.default_rng(int(seed)))


def _ring_sites(c: Circuit) -> int:
    return math.prod(c.spec.connectivity.map_shape)


def feature_axis(c: Circuit) -> tuple[np.ndarray, float]:
    """(N,) preferred feature of every unit (deg) and the ring's period (deg)."""
    if c.spec.connectivity.kind == "spatial":
        sites = _ring_sites(c)
        return (np.arange(c.n_units) % sites) * (360.0 / sites), 360.0
    return unit_preferences(c.spec), c.spec.tuning.period_deg


def stimuli(prepared: dict[str, Any], c: Circuit, n_orientations: int) -> tuple[np.ndarray, np.ndarray]:
    """(batch, n_inputs) constant inputs and (batch,) their features (deg).

    Tuned circuits: one input channel per stimulus (the channel's tuned projection is the
    bump); the ring: a von Mises bump of ``ring_input_sigma_deg`` over the map's sites.
    """
    amp = prepared["input_amp"]
    if c.spec.connectivity.kind == "spatial":
        sites = _ring_sites(c)
        stim = preferences(n_orientations, 360.0)
        site_deg = np.arange(sites) * (360.0 / sites)
        u = amp * von_mises(site_deg[None, :] - stim[:, None], prepared["ring_input_sigma_deg"], 360.0)
        return u, stim
    n_in, period = c.n_inputs, c.spec.tuning.period_deg
    channels = (np.arange(n_orientations) * n_in) // n_orientations
    u = np.zeros((n_orientations, n_in))
    u[np.arange(n_orientations), channels] = amp
    return u, channels * (period / n_in)


def rate_responses(c: Circuit, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Steady states (batch, N) with and without recurrence (Newton); ConvergenceError propagates."""
    r = steady_state(c, u).numpy()
    x = steady_state(c.without_recurrence(), u).numpy()
    return r, x


def spiking_responses(c: Circuit, u: np.ndarray, seed: int, duration_ms: float, engine: str,
                      dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """Evoked pool rates (1, N) in rate-model units over the second half of a spiking run of ``u[0]``,
    with recurrent synapses (``r``) and without them (``x``, same input spikes).

    Evoked = the response to ``u[0]`` minus the spontaneous one (a second replica with ``u = 0``,
    the same network), as tuning curves are measured: a LIF pool fires at the matched background
    noise where the threshold-linear rate model is silent. The gain mapping is taken at ``u[0]``.
    """
    opts = {"engine": engine, "dtype": dtype} if engine == "torch" else {}
    pair = np.stack([u[0], np.zeros_like(u[0])])
    ds = simulate_spiking(c, pair, duration_ms=duration_ms, seed=int(seed), decompose=True,
                          u_operating=u[0], **opts)
    t = ds["time"].values
    sel = (t >= duration_ms / 2) & (t < duration_ms)
    hz = json.loads(ds.attrs["hz_per_unit"]) if ds.attrs.get("rate_units") == "Hz" else {}
    scale = np.array([hz.get(p, 1.0) for p in np.asarray(ds["population"].values).astype(str)])
    out = []
    for v in ("r", "x"):
        m = np.asarray(ds[v].values)[sel].mean(axis=0) / scale  # (batch, N)
        out.append((m[0] - m[1])[None])
    return out[0], out[1]


def _fold(d: np.ndarray, y: np.ndarray, period: float) -> np.ndarray:
    """Average of ``y(d)`` and ``y(-d)`` (offsets on a grid symmetric about 0)."""
    index = {round(float(v), 6): i for i, v in enumerate(d)}
    mirror = np.array([index.get(round(float(wrap_deg(-v, period)), 6), i) for i, v in enumerate(d)])
    return 0.5 * (y + y[mirror])


def profile_measures(theta: np.ndarray, r: np.ndarray, x: np.ndarray, stim_deg: np.ndarray,
                     period: float) -> dict[str, Any]:
    """Fraction left at the preferred feature, FWHM and fitted sigma of ``r`` and ``x`` (E units).

    ``theta`` (n,) preferences (deg); ``r``, ``x`` (batch, n) responses to the stimuli at
    ``stim_deg`` (batch,). ``remaining = x(0) / r(0)`` at zero offset; ``width_ratio`` =
    FWHM(r) / FWHM(x); ``sigma_ratio`` of the fitted von Mises widths; ``offset_*``: fitted
    baseline as a fraction of the fitted peak.
    """
    d, rp = aligned_profile(theta, r, stim_deg, period)
    _, xp = aligned_profile(theta, x, stim_deg, period)
    rp, xp = _fold(d, rp, period), _fold(d, xp, period)
    i0 = int(np.argmin(np.abs(d)))
    fr, fx = fit_von_mises(d, rp, period), fit_von_mises(d, xp, period)
    w_r, w_x = fwhm(d, rp, period), fwhm(d, xp, period)
    return {
        "remaining": xp[i0] / rp[i0] if rp[i0] > 0 else math.nan,
        "gain": rp[i0] / xp[i0] if xp[i0] > 0 else math.nan,
        "r_peak": float(rp[i0]), "x_peak": float(xp[i0]),
        "fwhm_r": w_r, "fwhm_x": w_x, "width_ratio": w_r / w_x,
        "sigma_r": fr.sigma_deg, "sigma_x": fx.sigma_deg, "sigma_ratio": fr.sigma_deg / fx.sigma_deg,
        "offset_r": fr.offset_fraction, "offset_x": fx.offset_fraction, "fit_r2_r": fr.r2, "fit_r2_x": fx.r2,
        "d_profile": d.tolist(), "r_profile": rp.tolist(), "x_profile": xp.tolist(),
    }


def nan_measures() -> dict[str, float]:
    """The scalar results of a cell without a steady state (NaN: dropped by the statistics)."""
    return {k: math.nan for k in MEASURES}


def measure(prepared: dict[str, Any], condition: dict[str, Any], seed: int) -> dict[str, Any]:
    """One (condition, seed) cell: build, respond (rate or spiking), measure the E tuning curves."""
    spiking = condition["backend"] == "spiking"
    sigma = condition.get("sigma_rec")
    c = circuit_for(prepared, condition["circuit"], seed,
                    None if sigma is None or not math.isfinite(sigma) else sigma,
                    prepared["spiking_pool_size"] if spiking else None)
    theta, period = feature_axis(c)
    u, stim = stimuli(prepared, c, 1 if spiking else prepared["n_orientations"])
    if spiking:
        u, stim = u[:1], stim[:1]
        r, x = spiking_responses(c, u, seed, prepared["spiking_duration_ms"], prepared["spiking_engine"],
                                 prepared["spiking_dtype"])
    else:
        try:
            r, x = rate_responses(c, u)
        except ConvergenceError:
            return nan_measures()
    e = c.is_E
    return profile_measures(theta[e], r[:, e], x[:, e], stim, period)
