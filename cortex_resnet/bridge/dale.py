"""Dale's law as a parametrisation: ``W = sign(pre) * mask * f(theta)``.

Every weight is a non-negative magnitude ``f(theta)`` times the fixed sign of
its presynaptic population (+1 for E columns, -1 for I columns), times a fixed
0/1 mask of the connections that exist. Whatever an optimiser does to
``theta``, E columns stay ``>= 0``, I columns ``<= 0`` and absent connections
stay absent: the E/I identity of every unit survives training by construction.

Magnitude maps ``f``:

* ``"softplus"`` (default): ``f = log(1 + e^theta)``, strictly positive, never a dead
  weight; the gradient ``d f / d theta = sigmoid(theta)`` scales with the weight
  (small weights learn multiplicatively). Initialised with the exact inverse
  ``theta = log(expm1(|W|))``, so ``f(theta)`` reproduces ``|W|`` to within a
  rounding error (relative ~1e-16 in float64).
* ``"relu"`` (rectification, Song, Yang & Wang 2016): ``f = max(theta, 0)``,
  bit-exact at initialisation; a weight driven below zero is pruned (and
  stays at 0 with zero gradient).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..circuit import check_dale
from ..errors import SpecError, UnknownNameError

__all__ = ["PARAMETRISATIONS", "DaleMatrix", "balanced_weights", "softplus_inverse"]

PARAMETRISATIONS = ("softplus", "relu")
THETA_FLOOR = -60.0       # softplus(-60) = 9e-27: a connection that exists but carries ~0
_SOFTPLUS_THRESHOLD = 20.0  # torch's softplus is the identity above this (beta = 1)


def softplus_inverse(m: np.ndarray) -> np.ndarray:
    """``theta`` with ``softplus(theta) = m`` for ``m >= 0`` (floored at ``THETA_FLOOR``)."""
    m = np.asarray(m, dtype=np.float64)
    with np.errstate(divide="ignore"):
        small = np.log(np.expm1(np.minimum(m, _SOFTPLUS_THRESHOLD)))
    return np.maximum(np.where(m > _SOFTPLUS_THRESHOLD, m, small), THETA_FLOOR)


class DaleMatrix(nn.Module):
    """A stack of sign-constrained, masked, learnable weight matrices (post x pre).

    ``n`` matrices share one mask and the presynaptic signs (``n = 1`` for a tied
    net, ``K`` for an untied one). They are stored transposed, pre x post, as
    ``theta_T`` (n, N_pre, N_post), so that :meth:`transposed` yields ``W^T``
    contiguous without a copy (``r @ W^T`` in the rate simulator's layout), and
    all ``n`` matrices are formed by one batched operation.

    Parameters
    ----------
    W : (N_post, N_pre) or (n, N_post, N_pre) initial weights; column signs must follow ``population``
    population : (N_pre,) ``"E"``/``"I"`` of the presynaptic units
    mask : (N_post, N_pre) bool, connections that exist (default: where any ``W`` is nonzero);
        nonzero weights outside it are added to it
    parametrisation : ``"softplus"`` or ``"relu"`` (see the module docstring)
    dtype, device : of the parameter
    learnable : ``False`` freezes ``theta_T``

    Raises
    ------
    SpecError
        A column with the wrong sign for its population (mixed-sign column).
    """

    def __init__(self, W: np.ndarray, population: np.ndarray, mask: np.ndarray | None = None, *,
                 parametrisation: str = "softplus", dtype: torch.dtype = torch.float64,
                 device: str | torch.device = "cpu", learnable: bool = True):
        super().__init__()
        if parametrisation not in PARAMETRISATIONS:
            raise UnknownNameError("Dale parametrisation", parametrisation, list(PARAMETRISATIONS),
                                   field="dale")
        W = np.asarray(W, dtype=np.float64)
        W = W[None] if W.ndim == 2 else W
        population = np.asarray(population)
        if W.ndim != 3 or W.shape[2] != population.shape[0]:
            raise SpecError("W", f"shape {W.shape}", f"shape (N_post, {population.shape[0]}) or a stack of them")
        for Wk in W:
            check_dale(Wk, population)
        m = np.any(W != 0, axis=0)
        if mask is not None:
            m |= np.asarray(mask, dtype=bool)
        self.parametrisation = parametrisation
        mag = np.abs(W)
        theta = softplus_inverse(mag) if parametrisation == "softplus" else mag
        theta = np.where(m, theta, THETA_FLOOR if parametrisation == "softplus" else 0.0)
        sign = np.where(population == "E", 1.0, -1.0)
        self.theta_T = nn.Parameter(torch.as_tensor(np.ascontiguousarray(theta.transpose(0, 2, 1)), dtype=dtype,
                                                    device=device), requires_grad=learnable)
        self.register_buffer("signed_mask_T", torch.as_tensor(m.T * sign[:, None], dtype=dtype, device=device))

    def __len__(self) -> int:
        return int(self.theta_T.shape[0])

    @property
    def mask(self) -> torch.Tensor:
        """(N_post, N_pre) bool: the connections that exist."""
        return (self.signed_mask_T != 0).T

    def magnitude_T(self) -> torch.Tensor:
        """``f(theta_T)``, (n, N_pre, N_post), non-negative."""
        if self.parametrisation == "softplus":
            return F.softplus(self.theta_T, beta=1.0, threshold=_SOFTPLUS_THRESHOLD)
        return torch.relu(self.theta_T)

    def transposed(self) -> torch.Tensor:
        """``W_k^T`` for every ``k``: (n, N_pre, N_post), contiguous."""
        return self.magnitude_T() * self.signed_mask_T

    def forward(self) -> torch.Tensor:
        """The signed, masked weight matrices ``W_k`` (n, N_post, N_pre) (a transposed view)."""
        return self.transposed().transpose(-1, -2)

    def n_effective(self) -> int:
        """Number of learnable connections (inside the mask, all matrices)."""
        return int((self.signed_mask_T != 0).sum().item()) * len(self)


def balanced_weights(population: np.ndarray, mask: np.ndarray, rng: np.random.Generator, *,
                     radius: float = 0.9, cv: float = 1.0) -> np.ndarray:
    """Random Dale weights with exact E/I balance per row and no outlier eigenvalue.

    Each row's excitatory weights sum to ``g`` and its inhibitory weights to
    ``-g`` (the same ``g`` for every row), so ``W 1 = 0`` exactly and the mean
    connectivity is the rank-one nilpotent matrix ``1 mu^T`` with ``mu^T 1 = 0``:
    the mean-field outlier eigenvalue is removed and, because the fluctuations
    also have zero row sums, no outlier reappears (Rajan & Abbott 2006, PRL
    97:188104). The spectrum fills a disc; ``g`` is set so that the disc's
    radius (circular-law estimate ``||W - mean||_F / sqrt(N)``) equals ``radius``.

    Parameters
    ----------
    population : (N,) ``"E"``/``"I"``
    mask : (N, N) bool, connections that may exist
    rng : the generator for the magnitudes (gamma, coefficient of variation ``cv``)
    radius : target bulk spectral radius (dimensionless; < 1 keeps ``-I + W`` stable)
    cv : coefficient of variation of the magnitudes (> 0: the bulk needs variance)

    Raises
    ------
    SpecError
        A row with excitatory but no inhibitory input (or the reverse) cannot be balanced.
    """
    population = np.asarray(population)
    mask = np.asarray(mask, dtype=bool)
    if not (radius > 0 and np.isfinite(radius)):
        raise SpecError("radius", radius, "a finite spectral radius > 0")
    if not (cv > 0 and np.isfinite(cv)):
        raise SpecError("cv", cv, "a finite coefficient of variation > 0")
    is_e = population == "E"
    k = 1.0 / cv**2
    mag = rng.gamma(shape=k, scale=1.0 / k, size=mask.shape) * mask
    exc, inh = mag[:, is_e].sum(axis=1), mag[:, ~is_e].sum(axis=1)
    bad = np.where((exc > 0) != (inh > 0))[0]
    if bad.size:
        raise SpecError("mask", f"row {int(bad[0])}",
                        "rows with both excitatory and inhibitory connections (or neither) to balance them")
    ok = exc > 0
    W = np.zeros(mask.shape)
    W[np.ix_(ok, is_e)] = mag[np.ix_(ok, is_e)] / exc[ok, None]
    W[np.ix_(ok, ~is_e)] = -mag[np.ix_(ok, ~is_e)] / inh[ok, None]
    n = mask.shape[0]
    bulk = np.linalg.norm(W - W.mean(axis=0, keepdims=True)) / np.sqrt(n)
    if bulk == 0:
        raise SpecError("mask", "too few connections", "at least two connections per row to draw a bulk")
    return W * (radius / bulk)
