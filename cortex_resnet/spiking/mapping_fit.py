"""The gain scaling fitted over a distribution of inputs (``spiking.weight_scaling = "fit"``).

The operating-point mapping (:mod:`cortex_resnet.spiking.mapping`, ``"gain"``) linearises each
population's LIF transfer at ONE input (the mean): ``k`` matches the population-mean slope
``R mean(phi'(z*))`` there. A trained relu circuit has units far from that point -- most are
silent for a given input, the active ones have slope 1, not the population mean (e.g. 0.27) --
so the pools' rates follow ``R phi(z)`` only near the mean input.

Here ``(k, dc)`` of every unit (``per = "unit"``, the default) or of every population
(``per = "population"``) minimise, over a sample of inputs ``u_s`` (the rate model's steady
states ``r_s``, inputs ``z_s = W r_s + B u_s + b``),

    sum_s sum_a [ Phi_a(dc_a + k_a z_sa, sigma_sa) - R_a r_sa ]^2        (Hz^2)

where ``Phi`` is the pool's mean-field rate (:meth:`PoolModel.transfer`: Siegert with the
synaptic shot noise, the Fourcaud-Brunel and time-step shifts, conductance effects) with the
presynaptic pools at the rate model's rates ``nu_s = R r_s``. The weights onto a neuron scale
with its own ``k``, so the residuals of a unit depend only on its own ``(k, dc)``: the
problem separates into one 2-parameter least-squares problem per unit (population), solved
all at once by Levenberg-Marquardt with finite-difference Jacobians. With
``background_noise = "match"`` the white noise is re-matched after each fit so that the total
input noise averaged over the sample equals the target (``sigma_mV``); fit and noise
alternate until the noise settles.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import torch

from cortex_resnet.errors import ConvergenceError, SimulationError, SpecError
from cortex_resnet.model.circuit import Circuit
from cortex_resnet.model.fixedpoint import steady_state
from cortex_resnet.model.spiking_spec import SpikingSpec
from cortex_resnet.model.stimulus import Stimulus
from cortex_resnet.rate.simulator import RateSystem, integrate
from cortex_resnet.spiking.meanfield import siegert_inverse
from cortex_resnet.spiking.pools import pool_model

__all__ = ["fit_gain", "sample_rates", "fit_residuals"]

RIDGE_HZ2 = 1e-2  # Hz^2: the pull towards the start (see _lm)
_CACHE: dict[str, tuple] = {}  # one compare builds several plans of the same circuit and sample
_CACHE_SIZE = 4


def sample_rates(circuit: Circuit, u: np.ndarray) -> np.ndarray:
    """Rate-model steady states (S, N) for constant inputs ``u`` (S, n_inputs): Newton (40 iterations;
    it converges in a few where it converges) on the whole batch; if that fails, Newton input by input
    (one hard input no longer sends the whole batch to the slow path), and only the inputs where it
    fails get the noise-free dynamics after 2 s (exponential Euler, 0.5 ms steps) from rest."""
    u = np.asarray(u, np.float64)
    try:
        return steady_state(circuit, u, max_iter=40).numpy()
    except ConvergenceError:
        pass
    out, failed = np.empty((u.shape[0], circuit.n_units)), []
    for i in range(u.shape[0]):
        try:
            out[i] = steady_state(circuit, u[i:i + 1], max_iter=40).numpy()[0]
        except ConvergenceError:
            failed.append(i)
    if failed:
        out[failed] = _relaxed_rates(circuit, u[failed])
    return out


def _relaxed_rates(circuit: Circuit, u: np.ndarray) -> np.ndarray:
    """The noise-free dynamics' rates after 2 s from rest (S, N); SpecError where they run away."""
    quiet = circuit if circuit.spec.noise.sigma == 0 else replace(
        circuit, spec=circuit.spec.replace(**{"noise.sigma": 0.0}))
    stim = Stimulus.from_array(u[None], 0.5)
    try:
        run = integrate(RateSystem(quiet), stim, 2000.0, 0.5, method="expeuler", record_stride=4000)
    except SimulationError:
        run = None
    if run is None or not bool(torch.isfinite(run.r[-1]).all()):
        value = u[0].tolist() if u.shape[0] == 1 else f"{u.shape[0]} inputs"
        raise SpecError("operating input", value, "an input at which the rate model has a steady state "
                        "(its rates run away here), or spiking.weight_scaling = 'identity'")
    return run.r[-1].numpy()


def fit_residuals(pool_rates, k: np.ndarray, dc: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``Phi(k, dc) - target`` (S, N) Hz, ``pool_rates(k, dc)`` the pools' mean-field rates."""
    return pool_rates(k, dc) - target


def _group_sums(gid: np.ndarray, n_groups: int, *arrays: np.ndarray) -> list[np.ndarray]:
    """Sum of each (S, N) array over the samples and the units of each group."""
    return [np.bincount(gid, weights=a.sum(0), minlength=n_groups) for a in arrays]


def _lm(pool_rates, k: np.ndarray, dc: np.ndarray, target: np.ndarray, gid: np.ndarray,
        free: np.ndarray, iters: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Levenberg-Marquardt on ``(k, dc)`` of each group (units ``gid == g``; only ``free`` units move),
    with a weak pull towards the start (:data:`RIDGE_HZ2` per sample and unit for a 100 % change of
    ``k`` or a 5 mV change of ``dc``): where the sample does not constrain a unit (silent for every
    input: any low enough ``mu`` fits), it stays near its start instead of drifting to extremes."""
    G = int(gid.max()) + 1
    lam = np.full(G, 1e-3)
    k0, dc0 = k.copy(), dc.copy()
    (n_g,) = _group_sums(gid, G, np.ones_like(target))
    k0g = np.bincount(gid, weights=k0, minlength=G) / np.bincount(gid, minlength=G)
    rho_k, rho_d = RIDGE_HZ2 * n_g / np.maximum(k0g, 1e-6) ** 2, RIDGE_HZ2 * n_g / 25.0
    e = fit_residuals(pool_rates, k, dc, target)
    for _ in range(iters):
        hk, hd = 1e-6 * np.maximum(k, 1e-3), 1e-5
        Jk = (fit_residuals(pool_rates, k + hk, dc, target) - e) / hk
        Jd = (fit_residuals(pool_rates, k, dc + hd, target) - e) / hd
        a11, a12, a22, g1, g2, loss = _group_sums(gid, G, Jk * Jk, Jk * Jd, Jd * Jd, Jk * e, Jd * e, e * e)
        kg, dg, d0g = (np.bincount(gid, weights=v, minlength=G) / np.bincount(gid, minlength=G) for v in (k, dc, dc0))
        a11, a22 = a11 + rho_k, a22 + rho_d
        g1, g2 = g1 + rho_k * (kg - k0g), g2 + rho_d * (dg - d0g)
        loss = loss + rho_k * (kg - k0g) ** 2 + rho_d * (dg - d0g) ** 2
        d11, d22 = a11 * (1 + lam) + 1e-12, a22 * (1 + lam) + 1e-12
        det = d11 * d22 - a12 * a12
        step_k, step_d = (-g1 * d22 + g2 * a12) / det, (-g2 * d11 + g1 * a12) / det
        k_new = np.where(free, np.maximum(k + step_k[gid], 1e-3 * k), k)
        dc_new = np.where(free, dc + step_d[gid], dc)
        e_new = fit_residuals(pool_rates, k_new, dc_new, target)
        (loss_new,) = _group_sums(gid, G, e_new * e_new)
        kn, dn = (np.bincount(gid, weights=v, minlength=G) / np.bincount(gid, minlength=G) for v in (k_new, dc_new))
        loss_new = loss_new + rho_k * (kn - k0g) ** 2 + rho_d * (dn - d0g) ** 2
        ok = loss_new < loss
        keep = ok[gid] & free
        k, dc = np.where(keep, k_new, k), np.where(keep, dc_new, dc)
        e = np.where(keep[None], e_new, e)
        lam = np.where(ok, lam * 0.3, lam * 10.0)
        if np.all((loss - np.where(ok, loss_new, loss)) <= 1e-12 * np.maximum(loss, 1e-300)) and np.all(lam > 1e6):
            break
        if np.all(~ok) and np.all(lam > 1e8):
            break
    return k, dc


def _cache_key(circuit: Circuit, sspec: SpikingSpec, u: np.ndarray, per: str, dt_ms: float | None) -> str:
    h = hashlib.sha1()
    for a in (circuit.W, circuit.B, circuit.b, u):
        h.update(np.ascontiguousarray(a, np.float64).tobytes())
    h.update(f"{sspec!r}|{sspec.model_dump_json()}|{per}|{dt_ms}".encode())
    return h.hexdigest()


def fit_gain(circuit: Circuit, sspec: SpikingSpec, u: np.ndarray, start: tuple[np.ndarray, np.ndarray, np.ndarray],
             R_unit: np.ndarray, free: np.ndarray, target_sigma: np.ndarray, *, per: str = "unit", dt_ms: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Fitted ``(k, dc, sigma_white)`` (N,) each, and a summary (module docstring).

    Parameters
    ----------
    u : (S, n_inputs) the sample of inputs
    start : ``(k, dc, sigma_white)`` of the units that are not fitted (identity populations); the
        fitted ones start from the better of a neutral map (``k = 1`` mV per unit, ``dc`` at
        threshold) and :func:`_regression_start`, with the target noise as white noise
    R_unit : (N,) Hz per rate unit; ``free`` (N,) bool: units whose ``(k, dc)`` are fitted
    target_sigma : (N,) mV, the total input noise to match (NaN: no white noise added)
    per : ``"unit"`` or ``"population"``
    """
    if per not in ("unit", "population"):
        raise SpecError("per", per, "'unit' or 'population'")
    key = _cache_key(circuit, sspec, u, per, dt_ms)
    if key in _CACHE:
        return _CACHE[key]
    r = np.maximum(sample_rates(circuit, u), 0.0)
    ext = u @ circuit.B.T + circuit.b  # (S, N)
    nu, target = R_unit * r, R_unit * r
    pops = {p: i for i, p in enumerate(circuit.population_names)}
    gid = np.arange(circuit.n_units) if per == "unit" else np.array([pops[p] for p in circuit.unit_population])
    k, dc, sig_w = (np.array(a, np.float64) for a in start)
    theta = np.array([sspec.lif(p).theta_mV for p in circuit.unit_population])
    k, dc = np.where(free, 1.0, k), np.where(free, theta, dc)  # neutral: z = 0 at threshold, 1 mV per unit
    sig_w = np.where(np.isnan(target_sigma), sig_w, np.nan_to_num(target_sigma))

    ones = np.ones(circuit.n_units)

    def rates_at(sig):  # weights, Poisson input rates and the current drive are linear in k
        base = pool_model(circuit, sspec, ones, R_unit, np.zeros(circuit.n_units), ext, sig, dt_ms)
        return lambda kk, dd: replace(base, w=base.w * kk[:, None], nu_in_hz=base.nu_in_hz * kk,
                                      mu_dc_mV=dd + kk * base.mu_dc_mV).transfer(nu, fast=True)

    before = fit_residuals(rates_at(sig_w), k, dc, target)
    few = slice(0, 32)  # the start needs no more
    k, dc = _better_start(rates_at(sig_w), (k, dc), _regression_start(
        circuit, sspec, (r @ circuit.W.T + ext)[few], target[few], target_sigma, gid, (k, dc)), target, gid, free)
    for i in range(6):  # ends with the (k, dc) fitted at the noise it is used with
        k, dc = _lm(rates_at(sig_w), k, dc, target, gid, free, iters=60 if i == 0 else 25)
        new_sig = _match_noise(circuit, sspec, k, dc, ext, nu, sig_w, target_sigma, R_unit, dt_ms)
        if np.allclose(new_sig, sig_w, rtol=1e-4, atol=1e-6) or i == 5:
            break
        sig_w = new_sig
    after = fit_residuals(rates_at(sig_w), k, dc, target)
    summary = {"samples": int(u.shape[0]), "per": per,
               "rms_hz_before": _rms_by_population(circuit, before),
               "rms_hz_after": _rms_by_population(circuit, after)}
    out = (k, dc, sig_w, summary)
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = out
    return out


def _regression_start(circuit: Circuit, sspec: SpikingSpec, z: np.ndarray, target: np.ndarray, sigma: np.ndarray,
                      gid: np.ndarray, fallback: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(k, dc)`` of the straight line through ``(z, Phi^-1(target))`` of each group, over the samples
    whose target rate is invertible (1 Hz .. 0.8 / t_ref; Siegert without shifts at the noise
    ``sigma``, or 5 mV where none is matched): a start that does not depend on one operating point.
    Groups with fewer than 3 such samples or a non-positive slope keep ``fallback``."""
    lif = {p: sspec.lif(p) for p in circuit.population_names}
    par = np.array([[lif[p].tau_m_ms, lif[p].t_ref_ms, lif[p].theta_mV, lif[p].reset_above_rest_mV]
                    for p in circuit.unit_population])
    sig = np.where(np.isnan(sigma), 5.0, sigma)
    ok = (target >= 1.0) & (target <= 800.0 / par[:, 1])
    mu = np.full(target.shape, np.nan)
    s_i, a_i = np.nonzero(ok)
    if s_i.size:
        mu[s_i, a_i] = siegert_inverse(target[s_i, a_i], sig[a_i], par[a_i, 0], par[a_i, 1], par[a_i, 2], par[a_i, 3])
    G = int(gid.max()) + 1
    w = ok.astype(float)
    zz, mm = np.where(ok, z, 0.0), np.where(ok, mu, 0.0)
    n, sz, sm, szz, szm = (np.bincount(gid, weights=a.sum(0), minlength=G) for a in (w, zz, mm, zz * zz, zz * mm))
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = (n * szm - sz * sm) / (n * szz - sz * sz)
        icpt = (sm - slope * sz) / n
    good = (n >= 3) & np.isfinite(slope) & (slope > 0)
    return np.where(good[gid], slope[gid], fallback[0]), np.where(good[gid], icpt[gid], fallback[1])


def _better_start(pool_rates, a: tuple, b: tuple, target: np.ndarray, gid: np.ndarray,
                  free: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per group, the start ``(k, dc)`` with the smaller squared rate error (``b`` only for ``free`` units)."""
    G = int(gid.max()) + 1
    (la,), (lb,) = (_group_sums(gid, G, np.square(fit_residuals(pool_rates, *x, target))) for x in (a, b))
    pick_b = (lb < la)[gid] & free
    return np.where(pick_b, b[0], a[0]), np.where(pick_b, b[1], a[1])


def _rms_by_population(circuit: Circuit, e: np.ndarray) -> dict[str, float]:
    return {p: float(np.sqrt(np.mean(e[:, circuit.unit_population == p] ** 2))) for p in circuit.population_names}


def _match_noise(circuit: Circuit, sspec: SpikingSpec, k, dc, ext, nu, sig_w, target_sigma, R_unit,
                 dt_ms) -> np.ndarray:
    """White noise (N,) mV so that the total input noise, averaged (in variance) over the sample,
    equals ``target_sigma`` (no white noise where the shot noise already exceeds it; NaN target:
    unchanged)."""
    model = pool_model(circuit, sspec, k, R_unit, dc, k * ext, sig_w, dt_ms)
    _, sigma, tau_eff, _ = model.moments(nu)
    load = model.tau_m_ms / tau_eff  # conductance load G (1 for current synapses)
    shot2 = np.maximum(sigma**2 - sig_w**2 / load, 0.0).mean(0)
    new = np.sqrt(np.maximum(target_sigma**2 - shot2, 0.0) * load.mean(0))
    return np.where(np.isnan(target_sigma), sig_w, new)
