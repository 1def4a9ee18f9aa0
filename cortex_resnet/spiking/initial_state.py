"""Initial membrane potentials of a spiking run (``spiking.v_init``), for a whole batch at once.

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

**Batched.** The fixed points of all replicas relax together as (batch, pools) arrays
(each replica stops when its own step is below 0.01 Hz, as a replica on its own would),
with the Siegert rate in closed form (:func:`~cortex_resnet.spiking.fast_siegert.siegert_fast`,
within 1e-9 relative of the quadrature); every (replica, pool) density is sampled by
inverting its cumulative distribution, exact in closed form
(:func:`~cortex_resnet.spiking.fast_siegert.stationary_cdf`) at :data:`GRID` points spanning
its mass and linear in between (Kolmogorov-Smirnov distance to the exact density below
tested). Each replica draws its random numbers from its own generator
(:func:`replica_seed`), and every step is computed row by row, so a replica's potentials do not
depend on the batch it is part of (tested). Compared with the former replica-by-replica code
the random numbers are used in another order: the same distribution, not the same numbers.
"""

from __future__ import annotations

import numpy as np

from cortex_resnet.errors import SpecError
from cortex_resnet.spiking.fast_siegert import cdf_constants, stationary_cdf, stationary_density

__all__ = ["stationary_sample", "sample_pools", "initial_potentials", "fixed_points", "replica_seed", "replica_generators", "MIN_SIGMA_MV", "GRID"]

MIN_SIGMA_MV = 0.1  # below this the diffusion density is not a useful description: uniform instead
GRID = 32  # exact CDF points per pool density (linear in between, then one Newton step)
_CHUNK = 2048  # pools per block of CDF evaluations (bounds the temporaries)


def sample_pools(mu: np.ndarray, sigma: np.ndarray, theta: np.ndarray, reset: np.ndarray, pool_of: np.ndarray,
                 uniforms: tuple[np.ndarray, np.ndarray], refractory_fraction: np.ndarray | float = 0.0) -> np.ndarray:
    """Potentials (mV, the reference of ``mu``) of neurons ``pool_of`` (n,) from the LIF stationary
    density of their pool (module docstring); per pool (P,): ``mu``, ``sigma`` (> 0), ``theta``,
    ``reset`` (mV). ``uniforms``: two (n,) arrays of U(0, 1) numbers, the quantile of each neuron
    and the order in which a pool's neurons are chosen to be refractory: in each pool the
    ``round(refractory_fraction * size)`` neurons with the smallest second number start at ``reset``."""
    mu, sigma, theta, reset = (np.asarray(a, np.float64).reshape(-1) for a in (mu, sigma, theta, reset))
    pool_of = np.asarray(pool_of, np.int64).reshape(-1)
    P = mu.size
    y_th, y_r = (theta - mu) / sigma, (reset - mu) / sigma
    # the mass: a Gaussian tail below min(y_r, 0), nothing above max(y_r, 0) + 6 worth sampling
    lo = np.minimum(-6.0, y_r - 0.5)
    hi = np.minimum(y_th, np.maximum(y_r, 0.0) + 6.0)
    steps = np.linspace(0.0, 1.0, GRID)
    cdf, cdf_bottom, cdf_top = np.empty((P, GRID)), np.empty(P), np.empty(P)
    for s in range(0, P, _CHUNK):
        sl = slice(s, s + _CHUNK)
        y = lo[sl, None] + (hi - lo)[sl, None] * steps
        c = stationary_cdf(y, None, None, {key: val[:, None] for key, val in cdf_constants(y_th[sl], y_r[sl]).items()})
        cdf_bottom[sl], cdf_top[sl] = c[:, 0], c[:, -1]
        cdf[sl] = (c - c[:, :1]) / (c[:, -1:] - c[:, :1])
    u, keys = (np.asarray(a, np.float64).reshape(-1) for a in uniforms)
    left, right = np.zeros(u.size, np.int64), np.full(u.size, GRID - 1)  # cdf[left] <= u < cdf[right]
    while np.any(right - left > 1):  # bisection over the grid columns, sample by sample
        mid = (left + right) // 2
        below = cdf[pool_of, mid] <= u
        left, right = np.where(below, mid, left), np.where(below, right, mid)
    c0, c1 = cdf[pool_of, left], cdf[pool_of, right]
    j = left + np.where(c1 > c0, (np.minimum(u, c1) - c0) / np.where(c1 > c0, c1 - c0, 1.0), 0.0)
    width = (hi - lo)[pool_of] / (GRID - 1)
    y0 = lo[pool_of] + width * left
    y = lo[pool_of] + width * j
    consts = {key: val[pool_of] for key, val in cdf_constants(y_th, y_r).items()}
    y = _newton(y, u, (y0, y0 + width), consts, cdf_bottom[pool_of], (cdf_top - cdf_bottom)[pool_of])
    v = mu[pool_of] + sigma[pool_of] * y
    size = np.bincount(pool_of, minlength=P)
    n_ref = np.rint(np.clip(np.broadcast_to(refractory_fraction, (P,)), 0.0, 1.0) * size).astype(np.int64)
    if n_ref.any():
        order = np.lexsort((keys, pool_of))  # a random order within each pool
        rank = np.empty(pool_of.size, np.int64)
        rank[order] = np.arange(pool_of.size) - np.repeat(np.cumsum(size) - size, size)
        ref = rank < n_ref[pool_of]
        v[ref] = reset[pool_of[ref]]
    return v


def _newton(y: np.ndarray, u: np.ndarray, cell: tuple[np.ndarray, np.ndarray], consts: dict[str, np.ndarray],
            bottom: np.ndarray, norm: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """Solve ``CDF(y) = u`` inside the cell bracketing it: Newton steps on the exact CDF, bisection
    where a step leaves the bracket (the CDF is concave below the threshold, where the density
    vanishes), until ``|CDF(y) - u| < tol`` (at most 40 rounds; only the unsettled samples)."""
    lo, hi = (np.array(a, np.float64) for a in cell)
    todo = np.arange(y.size)
    y = y.copy()
    for _ in range(40):
        if not todo.size:
            break
        yt, k = y[todo], {key: val[todo] for key, val in consts.items()}
        f = (stationary_cdf(yt, None, None, k) - bottom[todo]) / norm[todo] - u[todo]
        d = stationary_density(yt, None, None, k) / norm[todo]
        hi[todo] = np.where(f > 0, yt, hi[todo])
        lo[todo] = np.where(f > 0, lo[todo], yt)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = yt - f / d
        ok = (d > 0) & (step > lo[todo]) & (step < hi[todo])
        going = np.abs(f) >= tol  # settled samples keep their y
        y[todo] = np.where(going, np.where(ok, step, 0.5 * (lo[todo] + hi[todo])), yt)
        todo = todo[going]
    return y


def stationary_sample(mu: float, sigma: float, theta: float, reset: float, n: int,
                      rng: np.random.Generator, refractory_fraction: float = 0.0) -> np.ndarray:
    """``n`` potentials (mV, same reference as ``mu``) from one pool's LIF stationary density
    (:func:`sample_pools`); ``refractory_fraction`` of them (rounded) are placed at ``reset``."""
    return sample_pools(np.array([mu]), np.array([sigma]), np.array([theta]), np.array([reset]),
                        np.zeros(n, np.int64), (rng.random(n), rng.random(n)), refractory_fraction)


def fixed_points(model, tol_hz: float = 0.01, max_iter: int = 2000,
                 relax: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Rates (batch, A) in Hz at the mean-field fixed points of a model whose inputs carry the batch
    (:meth:`~cortex_resnet.spiking.meanfield.PoolModel.take`), reached by relaxing the rate dynamics
    from 5 Hz as :func:`cortex_resnet.spiking.meanfield.solve` does, without its Newton polish
    (0.01 Hz is precise enough for an initial density), and which replicas settled (batch,) bool.
    A replica stops at its own first step below ``tol_hz``."""
    nu = np.full((model_batch(model), model.K.shape[0]), 5.0)
    active, ok = np.ones(nu.shape[0], bool), np.zeros(nu.shape[0], bool)
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if not idx.size:
            break
        with np.errstate(all="ignore"):
            step = model.take(idx).transfer(nu[idx], fast=True) - nu[idx]
        finite = np.isfinite(step).all(1)
        done = finite & (np.abs(np.where(np.isfinite(step), step, 0.0)).max(1) < tol_hz)
        ok[idx[done]] = True
        active[idx[done | ~finite]] = False
        go = finite & ~done
        nu[idx[go]] = np.maximum(nu[idx[go]] + relax * step[go], 0.0)
    return nu, ok


def replica_seed(seed: int, replica: int) -> int:
    """Seed of replica ``replica``'s random streams (64-bit, from ``numpy.random.SeedSequence``): its
    initial potentials here, its input spikes and noise in the torch engine."""
    return int(np.random.SeedSequence([int(seed) % 2**63, int(replica)]).generate_state(1, np.uint64)[0] >> 1)


def replica_generators(seed: int, batch: int, replica_seeds: list[int] | None = None) -> list[np.random.Generator]:
    """One generator per replica for its initial potentials: from ``replica_seeds`` (one per replica)
    or :func:`replica_seed` ``(seed, b)``."""
    keys = [replica_seed(seed, b) for b in range(batch)] if replica_seeds is None else list(replica_seeds)
    if len(keys) != batch:
        raise SpecError("replica_seeds", f"{len(keys)} seeds", f"one per replica ({batch})")
    return [np.random.default_rng([int(k), 0x1417]) for k in keys]


def initial_potentials(plan_args: dict, rngs: list[np.random.Generator]) -> tuple[np.ndarray, dict]:
    """Initial potentials (batch, n) in mV and a description for the plan's ``info``.

    ``plan_args``: ``sspec``, ``is_E``, ``unit_of``, ``batch``, ``model`` (the
    :class:`~cortex_resnet.spiking.meanfield.PoolModel` at the initial drive, its inputs of shape
    (batch, A): :meth:`~cortex_resnet.spiking.meanfield.PoolModel.take`), optional per-neuron
    ``v_reset_mV``, ``v_th_mV``, ``v_rest_mV`` (n,) (named populations). ``rngs``: one generator per
    replica; a replica's potentials depend on its own generator and drive only, not on the batch.
    """
    sspec, is_E, unit_of, batch = plan_args["sspec"], plan_args["is_E"], plan_args["unit_of"], plan_args["batch"]
    n = is_E.size
    lo = plan_args.get("v_reset_mV", np.where(is_E, sspec.populations.E.v_reset_mV, sspec.populations.I.v_reset_mV))
    hi = plan_args.get("v_th_mV", np.where(is_E, sspec.populations.E.v_th_mV, sspec.populations.I.v_th_mV))
    if sspec.v_init == "normal":
        z = np.stack([g.standard_normal(n) for g in rngs])
        return 0.5 * (lo + hi) + sspec.v_init_sd_mV * z, {"kind": "normal"}
    draws = np.stack([g.random(3 * n if sspec.v_init == "stationary" else n) for g in rngs])  # (batch, 3n)
    v = lo + (hi - lo) * draws[:, :n]  # uniform; also the stationary fallback
    if sspec.v_init == "uniform":
        return v, {"kind": "uniform"}
    rest = plan_args.get("v_rest_mV", np.where(is_E, sspec.populations.E.v_rest_mV, sspec.populations.I.v_rest_mV))
    model = plan_args["model"]
    nu, ok = fixed_points(model)
    shared = nu.shape[0] != batch  # one model for every replica (inputs without the batch)
    nu, ok = np.broadcast_to(nu, (batch, nu.shape[1])), np.broadcast_to(ok, (batch,))
    fallback: set[str] = set() if ok.all() else {"no mean-field fixed point"}
    rows = np.flatnonzero(ok)
    if rows.size:
        v[rows], quiet_super = _stationary_rows(model if shared else model.take(rows), nu[rows], v[rows], unit_of,
                                                rest, (draws[rows, n:2 * n], draws[rows, 2 * n:]))
        if quiet_super:
            fallback.add(f"noise below {MIN_SIGMA_MV} mV with a suprathreshold mean")
    info = {"kind": "stationary", "density": "LIF diffusion stationary density at the mean-field fixed point "
                                             "of the initial drive"}
    if fallback:
        info["uniform_fallback"] = sorted(fallback)
    return v, info


def model_batch(model) -> int:
    """The batch the inputs of ``model`` carry (1 without a batch dimension)."""
    return max([np.shape(getattr(model, k))[0] for k in ("mu_dc_mV", "nu_in_hz", "sigma_white_mV")
                if np.ndim(getattr(model, k)) == 2] or [1])


def _stationary_rows(model, nu: np.ndarray, v: np.ndarray, unit_of: np.ndarray, rest: np.ndarray,
                     uniforms: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, bool]:
    """The potentials (rows, n) of replicas with a fixed point ``nu`` (rows, A); the uniform start
    ``v`` stays where the density is not defined (returned flag: a noiseless suprathreshold pool)."""
    mu, sigma, _, shift = model.moments(nu)
    mu, sigma, shift = (np.broadcast_to(a, nu.shape) for a in (mu, sigma, shift))
    quiet = sigma < MIN_SIGMA_MV
    still = quiet & (mu < model.theta_mV)  # noiseless and subthreshold: the fixed point itself
    v = v.copy()
    still_n = still[:, unit_of]
    v[still_n] = (rest[None, :] + mu[:, unit_of])[still_n]
    noisy = ~quiet
    if noisy.any():
        pid = np.full(nu.shape, -1, np.int64)
        pid[noisy] = np.arange(int(noisy.sum()))
        pool_of = pid[:, unit_of]
        sel = pool_of >= 0
        th = np.broadcast_to(model.theta_mV, nu.shape) + shift
        vr = np.broadcast_to(model.v_reset_mV, nu.shape) + shift
        frac = nu * np.broadcast_to(model.t_ref_ms, nu.shape) * 1e-3
        v[sel] = np.broadcast_to(rest, v.shape)[sel] + sample_pools(
            mu[noisy], sigma[noisy], th[noisy], vr[noisy], pool_of[sel], (uniforms[0][sel], uniforms[1][sel]),
            frac[noisy])
    return v, bool((quiet & ~still).any())
