"""Initial membrane potentials of a spiking run (``spiking.v_init``).

``"stationary"`` (the default) draws every neuron's potential from the
stationary density of the leaky integrate-and-fire neuron driven by white
noise (the diffusion approximation; Brunel & Hakim 1999, Brunel 2000 eq. 13)
at the mean-field fixed point of the *initial* drive ``B u(0) + b``::

    P(V) ∝ exp(-y^2) * integral_{max(y, y_r)}^{y_th} exp(s^2) ds,
    y = (V - mu) / sigma,  y_th = (theta - mu) / sigma,  y_r = (V_r - mu) / sigma

with ``mu``, ``sigma`` the mean and noise of the input at the self-consistent
rates (relaxation of the mean-field rate dynamics, :mod:`cortex_resnet.spiking.meanfield`; threshold and reset shifted as
the mean field shifts them for filtered noise and the time step). The density
vanishes at the threshold, so the network does not start with the volley
that a uniform or narrow start produces (neurons near threshold all crossing
at once). The fraction ``nu t_ref`` that would be refractory starts at the reset.

Almost without noise (``sigma < MIN_SIGMA_MV``) a subthreshold pool starts at its
mean ``mu`` (the fixed point). Where the density is not defined -- no mean-field
fixed point (an oscillating or runaway network), or a suprathreshold mean without
noise (periodic firing) -- the pools concerned start ``uniform`` between reset
and threshold; the plan's ``info["v_init"]`` says so.
"""

from __future__ import annotations

import numpy as np

__all__ = ["stationary_sample", "initial_potentials", "MIN_SIGMA_MV"]

MIN_SIGMA_MV = 0.1  # below this the diffusion density is not a useful description: uniform instead
_GRID = 4000


def stationary_sample(mu: float, sigma: float, theta: float, reset: float, n: int,
                      rng: np.random.Generator, refractory_fraction: float = 0.0) -> np.ndarray:
    """``n`` potentials (mV, same reference as ``mu``) from the LIF stationary density (module docstring).

    ``refractory_fraction`` of them (rounded) are placed at ``reset``.
    """
    y_th, y_r = (theta - mu) / sigma, (reset - mu) / sigma
    y = np.linspace(min(y_r, 0.0) - 6.0, y_th, _GRID)
    dy = y[1] - y[0]
    # log of the integral from y_k to y_th of exp(s^2) ds, as a reverse running log-sum (no overflow)
    log_int = np.full(y.size, -np.inf)  # the density is 0 at the threshold
    log_int[:-1] = np.logaddexp.accumulate((y[1:] ** 2 + np.log(dy))[::-1])[::-1]  # cells above y_k
    k_r = int(np.searchsorted(y, y_r))
    log_int[:k_r] = log_int[min(k_r, y.size - 1)]  # below the reset the flux integral is constant
    log_p = log_int - y**2
    p = np.exp(log_p - np.max(log_p))
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (p[1:] + p[:-1]))])
    cdf /= cdf[-1]
    v = mu + sigma * np.interp(rng.random(n), cdf, y)
    n_ref = int(round(min(max(refractory_fraction, 0.0), 1.0) * n))
    if n_ref:
        v[rng.permutation(n)[:n_ref]] = reset
    return v


def initial_potentials(plan_args: dict, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Initial potentials (batch, n) in mV and a description for the plan's ``info``.

    ``plan_args``: ``sspec``, ``is_E``, ``unit_of``, ``batch``, ``models`` (one
    :class:`~cortex_resnet.spiking.meanfield.PoolModel` per replica at the initial drive, or None);
    optional per-neuron ``v_reset_mV``, ``v_th_mV``, ``v_rest_mV`` (n,) (named populations).
    """
    sspec, is_E, unit_of, batch = plan_args["sspec"], plan_args["is_E"], plan_args["unit_of"], plan_args["batch"]
    lo = plan_args.get("v_reset_mV", np.where(is_E, sspec.populations.E.v_reset_mV, sspec.populations.I.v_reset_mV))
    hi = plan_args.get("v_th_mV", np.where(is_E, sspec.populations.E.v_th_mV, sspec.populations.I.v_th_mV))
    if sspec.v_init == "normal":
        return 0.5 * (lo + hi) + sspec.v_init_sd_mV * rng.standard_normal((batch, is_E.size)), {"kind": "normal"}
    v = lo + (hi - lo) * rng.random((batch, is_E.size))  # uniform; also the stationary fallback
    if sspec.v_init == "uniform":
        return v, {"kind": "uniform"}
    rest = plan_args.get("v_rest_mV", np.where(is_E, sspec.populations.E.v_rest_mV, sspec.populations.I.v_rest_mV))
    fallback: set[str] = set()
    solved: dict[bytes, tuple | None] = {}  # replicas with the same initial drive share a fixed point
    for b, model in enumerate(plan_args["models"]):
        key = b"".join(np.ascontiguousarray(a).tobytes() for a in (model.mu_dc_mV, model.nu_in_hz,
                                                                   model.sigma_white_mV))
        if key not in solved:
            solved[key] = _fixed_point(model)
        state = solved[key]
        if state is None:
            fallback.add("no mean-field fixed point")
            continue
        nu, mu, sigma, shift = state
        for a in range(mu.size):
            cols = np.where(unit_of == a)[0]
            if sigma[a] < MIN_SIGMA_MV:
                if mu[a] < model.theta_mV[a]:  # noiseless and subthreshold: the fixed point itself
                    v[b, cols] = rest[cols] + mu[a]
                else:
                    fallback.add(f"noise below {MIN_SIGMA_MV} mV with a suprathreshold mean")
                continue
            v[b, cols] = rest[cols] + stationary_sample(
                mu[a], sigma[a], model.theta_mV[a] + shift[a], model.v_reset_mV[a] + shift[a], cols.size, rng,
                nu[a] * model.t_ref_ms[a] * 1e-3)
    info = {"kind": "stationary", "density": "LIF diffusion stationary density at the mean-field fixed point "
                                             "of the initial drive"}
    if fallback:
        info["uniform_fallback"] = sorted(fallback)
    return v, info


def _fixed_point(model, tol_hz: float = 0.01, max_iter: int = 2000, relax: float = 0.2):
    """``(nu, mu, sigma, shift)`` at the mean-field fixed point reached by relaxing the rate dynamics
    from 5 Hz (as :func:`cortex_resnet.spiking.meanfield.solve`, without its Newton polish: 0.01 Hz is
    precise enough for an initial density), or None when the relaxation does not settle."""
    nu = np.full(model.K.shape[0], 5.0)
    for _ in range(max_iter):
        with np.errstate(all="ignore"):
            step = model.transfer(nu) - nu
        if not np.all(np.isfinite(step)):
            return None
        if float(np.max(np.abs(step))) < tol_hz:
            mu, sigma, _, shift = model.moments(nu)
            return nu, mu, sigma, shift
        nu = np.maximum(nu + relax * step, 0.0)
    return None
