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

:class:`DaleMatrix` holds one weight per connection; :class:`DaleConv` shares one
kernel per (post channel, pre channel) pair across the sites of a spatial map.
:func:`balanced_weights` draws a balanced initialisation without an outlier eigenvalue.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from cortex_resnet.model.circuit import check_dale
from cortex_resnet.rate.conv import circular_conv, offset_index, window_index
from cortex_resnet.errors import SpecError, UnknownNameError

__all__ = ["PARAMETRISATIONS", "DaleMatrix", "DaleConv", "balanced_weights", "softplus_inverse", "offset_index"]

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

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return f"DaleMatrix({tuple(self.theta_T.shape)}, {self.parametrisation})"


class DaleConv(nn.Module):
    """Weight-shared (convolutional) Dale weights on a periodic map: ``W[i, j] = K[c_i, c_j, x_j - x_i]``.

    The E and I populations are channels on the circuit's map (``n = channels x sites``,
    E channels first); one kernel per (post channel, pre channel) pair is shared by
    every site, so the recurrent step is a circular convolution and training keeps it
    one (translation equivariance survives). The recurrent step runs as a real circular
    convolution (:meth:`recurrent`, :mod:`cortex_resnet.rate.conv`) on the compact window
    the kernels reach: no ``N x N`` matrix. The interface of :class:`DaleMatrix` stays:
    :meth:`transposed` gathers the dense ``W^T`` from the kernel (for the steady state, the
    conversion back to a circuit and the benchmark of the dense path this replaces).
    Magnitudes ``f(theta)`` as in :class:`DaleMatrix`.

    Parameters
    ----------
    W : (n, N, N) initial weights; must be translation invariant (a spatial circuit
        with ``weight_cv = 0`` and ``p = 1``)
    population, mask, parametrisation, dtype, device, learnable : as for :class:`DaleMatrix`
    map_shape : the circuit's map

    Raises
    ------
    SpecError
        ``W`` is not translation invariant, or a column breaks Dale's law.
    """

    def __init__(self, W: np.ndarray, population: np.ndarray, mask: np.ndarray, map_shape: tuple[int, ...], *,
                 parametrisation: str = "softplus", dtype: torch.dtype = torch.float64,
                 device: str | torch.device = "cpu", learnable: bool = True):
        super().__init__()
        if parametrisation not in PARAMETRISATIONS:
            raise UnknownNameError("Dale parametrisation", parametrisation, list(PARAMETRISATIONS), field="dale")
        W = np.asarray(W, dtype=np.float64)
        W = W[None] if W.ndim == 2 else W
        n = W.shape[-1]
        sites = math.prod(map_shape)
        for Wk in W:
            check_dale(Wk, population)
        idx = offset_index(n, tuple(map_shape))
        n_kernel = (n // sites) ** 2 * sites
        m = np.asarray(mask, dtype=bool) | np.any(W != 0, axis=0)
        kmask = np.zeros(n_kernel, dtype=bool)
        kmask[idx[m]] = True
        kernels = np.zeros((W.shape[0], n_kernel))
        kernels[:, idx.ravel()] = np.abs(W).reshape(W.shape[0], -1)
        if not (np.array_equal(kmask[idx], m) and np.allclose(kernels[:, idx], np.abs(W), rtol=1e-12, atol=0)):
            raise SpecError("recurrence", "conv", "a translation-invariant circuit for weight-shared kernels: "
                            "connectivity.kind = 'spatial' with weight_cv = 0 and p = 1 (W[i, j] must depend "
                            "only on the two units' populations and their offset on the map)")
        self.parametrisation = parametrisation
        theta = softplus_inverse(kernels) if parametrisation == "softplus" else kernels
        theta = np.where(kmask, theta, THETA_FLOOR if parametrisation == "softplus" else 0.0)
        sign = np.where(np.asarray(population) == "E", 1.0, -1.0)
        self.theta_kernel = nn.Parameter(torch.as_tensor(theta, dtype=dtype, device=device), requires_grad=learnable)
        self.n_units = n
        # the N x N index and signed mask only the dense gather needs: built on first use, never stored
        self._dense: tuple[torch.Tensor, torch.Tensor] | None = None
        self.register_buffer("unit_sign", torch.as_tensor(sign, dtype=dtype, device=device), persistent=False)
        self.register_buffer("kernel_mask", torch.as_tensor(kmask, device=device))
        self.map_shape = tuple(int(x) for x in map_shape)
        C = n // sites
        win, valid, self.radius = window_index(C, self.map_shape, kmask)
        pre_sign = sign[np.arange(C) * sites].reshape((1, C) + (1,) * len(self.map_shape))
        self.register_buffer("window_index", torch.as_tensor(win, device=device), persistent=False)
        self.register_buffer("window_sign", torch.as_tensor(valid * pre_sign, dtype=dtype, device=device),
                             persistent=False)

    def __len__(self) -> int:
        return int(self.theta_kernel.shape[0])

    def _dense_index(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(index_T, signed_mask_T), (N_pre, N_post) each: where ``W^T`` reads the kernels, and sign x mask."""
        dev = self.theta_kernel.device
        if self._dense is None or self._dense[0].device != dev or self._dense[1].dtype != self.theta_kernel.dtype:
            idx_T = torch.as_tensor(np.ascontiguousarray(offset_index(self.n_units, self.map_shape).T), device=dev)
            signed = self.kernel_mask.to(dev)[idx_T].to(self.theta_kernel.dtype) * self.unit_sign[:, None]
            self._dense = (idx_T, signed)
        return self._dense

    @property
    def index_T(self) -> torch.Tensor:
        return self._dense_index()[0]

    @property
    def signed_mask_T(self) -> torch.Tensor:
        return self._dense_index()[1]

    @property
    def mask(self) -> torch.Tensor:
        """(N_post, N_pre) bool: the connections that exist."""
        return (self.signed_mask_T != 0).T

    def magnitude(self) -> torch.Tensor:
        """``f(theta)``, (n, C * C * sites), non-negative."""
        if self.parametrisation == "softplus":
            return F.softplus(self.theta_kernel, beta=1.0, threshold=_SOFTPLUS_THRESHOLD)
        return torch.relu(self.theta_kernel)

    def transposed(self) -> torch.Tensor:
        """``W_k^T`` for every ``k``: (n, N_pre, N_post), gathered from the kernels (dense)."""
        idx_T, signed = self._dense_index()
        return self.magnitude()[:, idx_T] * signed

    def conv_weights(self) -> torch.Tensor:
        """The signed compact kernels (n, C_post, C_pre, *window) the convolution runs with."""
        return self.magnitude()[:, self.window_index] * self.window_sign

    def recurrent(self, weights: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """``r -> W r`` for one of :meth:`conv_weights`' kernels: a circular convolution."""
        return lambda r: circular_conv(r, weights, self.map_shape, self.radius)

    def forward(self) -> torch.Tensor:
        """The weight matrices ``W_k`` (n, N_post, N_pre) (a transposed view)."""
        return self.transposed().transpose(-1, -2)

    def n_effective(self) -> int:
        """Number of learnable kernel entries (shared weights count once)."""
        return int(self.kernel_mask.sum().item()) * len(self)

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return f"DaleConv(kernel {tuple(self.theta_kernel.shape)}, {self.parametrisation})"


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
