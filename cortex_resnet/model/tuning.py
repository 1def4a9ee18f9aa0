"""Feature-specific (tuned) circuits: preferred features, von Mises kernels, tuned blocks and input.

The spec side is :mod:`cortex_resnet.model.tuning_spec` (the ``[tuning]`` table);
:func:`cortex_resnet.model.circuit.build_circuit` calls :func:`tune_block` on every
(post, pre) block and :func:`tuned_projection` for ``input.projection = "tuned"``.
Angles in deg.

Weights keep their population totals: a tuned row of a dense block sums to 1 before
the coupling ``J`` (exactly), a sparse one in expectation, as for untuned blocks;
so a spatially uniform input sees the same circuit as without tuning, and the
circuit's uniform-mode (population) gain is unchanged.
"""

from __future__ import annotations

import math

import numpy as np

from cortex_resnet.model.spec import CircuitSpec

__all__ = ["preferences", "log_kernel", "von_mises", "tune_block", "tuned_projection", "unit_preferences",
           "wrap_deg"]


def preferences(n: int, period_deg: float) -> np.ndarray:
    """(n,) preferred features evenly spaced on the ring: ``k * period_deg / n`` (deg)."""
    return np.arange(n) * (period_deg / n)


def wrap_deg(d: np.ndarray | float, period_deg: float) -> np.ndarray:
    """Feature differences wrapped into ``[-P/2, P/2)`` (deg)."""
    return (np.asarray(d, dtype=float) + period_deg / 2) % period_deg - period_deg / 2


def log_kernel(d_deg: np.ndarray, sigma_deg: float, period_deg: float) -> np.ndarray:
    """``log k(d) = (cos(2 pi d / P) - 1) / s^2`` with ``s = 2 pi sigma / P`` (0 at ``d = 0``)."""
    s = 2 * math.pi * sigma_deg / period_deg
    return (np.cos(2 * math.pi * np.asarray(d_deg, dtype=float) / period_deg) - 1.0) / s**2


def von_mises(d_deg: np.ndarray, sigma_deg: float, period_deg: float) -> np.ndarray:
    """The von Mises kernel ``k(d)`` (peak 1 at ``d = 0``; a Gaussian of sd ``sigma_deg`` when narrow)."""
    return np.exp(log_kernel(d_deg, sigma_deg, period_deg))


def _pair_kernel(n_post: int, n_pre: int, sigma_deg: float, period_deg: float) -> np.ndarray:
    """(n_post, n_pre) kernel of the preference differences, each row's largest entry 1.

    Scaled per row in the log domain, so a width far below the unit spacing keeps the nearest
    preference(s) instead of underflowing to an all-zero row.
    """
    d = preferences(n_post, period_deg)[:, None] - preferences(n_pre, period_deg)[None, :]
    lk = log_kernel(d, sigma_deg, period_deg)
    return np.exp(lk - lk.max(axis=1, keepdims=True))


def tune_block(spec: CircuitSpec, rng: np.random.Generator, post: str, pre: str, mask: np.ndarray,
               base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (post, pre) block's (mask, weight per unit coupling) with its tuning applied.

    Untuned (no ``[tuning]``, or the pathway not in ``tuning.sigma_deg``): unchanged.
    ``modulate = "strength"``: weights of the present connections times the kernel,
    rescaled so that each row keeps its total (dense: exactly; sparse: in expectation).
    ``modulate = "probability"``: a new draw, each pair present with probability
    ``p k(d)`` (``p``: the pathway's peak probability), equal weights of expected row total 1.
    """
    tun = spec.tuning
    sigma = None if tun is None else tun.sigma(post, pre)
    if sigma is None:
        return mask, base
    n_post, n_pre = base.shape
    k = _pair_kernel(n_post, n_pre, sigma, tun.period_deg)
    if tun.modulate == "strength":
        w = base * k * n_pre / k.sum(axis=1, keepdims=True)
        return mask, w
    prob = spec.connectivity.probability(post, pre) * k
    m = rng.random(prob.shape) < prob
    total = prob.sum(axis=1, keepdims=True)
    w = np.divide(np.ones_like(prob), total, out=np.zeros_like(prob), where=total > 0)
    return m, np.broadcast_to(w, prob.shape).copy()


def unit_preferences(spec: CircuitSpec) -> np.ndarray:
    """(N,) preferred feature (deg) of every unit, in unit order (excitatory populations first)."""
    period = spec.tuning.period_deg if spec.tuning is not None else 180.0
    pops = spec.populations
    return np.concatenate([preferences(pops[k].n, period) for k in pops.order])


def tuned_projection(spec: CircuitSpec) -> np.ndarray:
    """``B`` (N, n_inputs) of ``input.projection = "tuned"``: unit ``i``'s population gain times
    ``k(theta_i - phi_c)`` of width ``input.sigma_deg``; channel ``c`` prefers ``c P / n_inputs``."""
    inp, pops, period = spec.input, spec.populations, spec.tuning.period_deg
    gain = np.concatenate([np.full(pops[k].n, inp.gain.get(k, inp.gain_E if pops.is_excitatory(k) else inp.gain_I))
                           for k in pops.order])
    d = unit_preferences(spec)[:, None] - preferences(inp.n_inputs, period)[None, :]
    return gain[:, None] * von_mises(d, inp.sigma_deg, period)
