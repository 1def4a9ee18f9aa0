"""Convolutional recurrence: ``W r`` of a translation-invariant spatial circuit as a real convolution.

A spatial circuit with ``weight_cv = 0`` and ``p = 1`` has ``W[i, j] = K[c_i, c_j, x_j - x_i]``:
the weight depends only on the two units' channels (E and I populations are channels on
the map, E first; ``N = channels x sites``, site index fastest) and on the periodic offset
of the presynaptic site from the postsynaptic one. Then ``(W r)[c, x] = sum_{c', d}
K[c, c', d] r[c', x + d]``: a circular cross-correlation, which is what ``conv1d`` /
``conv2d`` compute on a circularly padded map. Only the offsets the kernels reach are
kept (a window of ``2 R + 1`` sites per axis), so a step costs ``C^2 (2R+1)^d`` per site
instead of ``N`` per unit, and no ``N x N`` matrix is formed.

:func:`offset_index` maps units to kernel entries; :func:`window_index` picks the compact
window out of a full-map kernel; :class:`ConvRecurrence` is the operator ``r -> W r`` the rate
simulator (:class:`~cortex_resnet.rate.system.RateSystem` with ``conv=True``) and the bridge
(:class:`~cortex_resnet.bridge.dale.DaleConv`) both run.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from cortex_resnet.errors import SpecError
from cortex_resnet.model.circuit import Circuit

__all__ = ["offset_index", "signed_offsets", "window_index", "circular_conv", "ConvRecurrence",
           "circuit_kernels"]

NOT_TRANSLATION_INVARIANT = ("a translation-invariant circuit for convolutional recurrence: connectivity.kind = "
                             "'spatial' with weight_cv = 0 and p = 1 (W[i, j] must depend only on the two units' "
                             "populations and their offset on the map)")


def offset_index(n: int, map_shape: tuple[int, ...]) -> np.ndarray:
    """(N, N) index into a kernel (C, C, sites) for units laid out as channel x site (site fastest).

    Entry ``[i, j]`` is ``(c_i C + c_j) sites + o``, with ``o`` the flattened periodic
    offset ``(x_j - x_i) mod L`` of the presynaptic unit's site from the postsynaptic one's.
    """
    sites = math.prod(map_shape)
    channel, site = np.divmod(np.arange(n), sites)
    coords = np.stack(np.unravel_index(site, map_shape), axis=-1)
    off = (coords[None, :, :] - coords[:, None, :]) % np.asarray(map_shape)
    o = np.ravel_multi_index(tuple(np.moveaxis(off, -1, 0)), map_shape)
    n_ch = n // sites
    return (channel[:, None] * n_ch + channel[None, :]) * sites + o


def signed_offsets(L: int) -> np.ndarray:
    """The canonical signed offset of each periodic offset ``0..L-1``: ``-(L-1)//2 .. L//2``."""
    o = np.arange(L)
    return np.where(o > L // 2, o - L, o)


def window_index(n_channels: int, map_shape: tuple[int, ...],
                 kernel_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Where the compact convolution window reads a full-map kernel.

    Parameters
    ----------
    n_channels : channels ``C`` (E channels first)
    map_shape : the map (one or two periodic axes)
    kernel_mask : (C * C * sites,) bool, the kernel entries that exist

    Returns
    -------
    index : (C, C, *window) int, flat index into the (C * C * sites) kernel (0 where invalid)
    valid : (C, C, *window) bool, window entries that stand for an existing kernel entry
        (each periodic offset appears at most once: no double counting when the window
        spans the whole map)
    radius : ``R`` per axis, window ``2 R + 1``
    """
    C, sites = n_channels, math.prod(map_shape)
    km = np.asarray(kernel_mask, dtype=bool).reshape((C, C) + tuple(map_shape))
    present = np.nonzero(km.any(axis=(0, 1)))
    radius = tuple(int(np.abs(signed_offsets(L)[p]).max()) if p.size else 0
                   for L, p in zip(map_shape, present))
    grids = []
    for L, R in zip(map_shape, radius):
        s = np.arange(-R, R + 1)  # window position t = s + R
        grids.append((s % L, signed_offsets(L)[s % L] == s))  # canonical: each offset counted once
    idx_axes = np.meshgrid(*[g[0] for g in grids], indexing="ij")
    ok_axes = np.meshgrid(*[g[1] for g in grids], indexing="ij")
    site = np.ravel_multi_index(tuple(idx_axes), map_shape)
    ok = np.logical_and.reduce(ok_axes)
    pair = (np.arange(C)[:, None] * C + np.arange(C)[None, :]) * sites
    index = pair.reshape((C, C) + (1,) * len(map_shape)) + site[None, None]
    valid = ok[None, None] & np.asarray(kernel_mask, dtype=bool)[index]
    return np.where(valid, index, 0), valid, radius


def circular_conv(r: torch.Tensor, weight: torch.Tensor, map_shape: tuple[int, ...],
                  radius: tuple[int, ...]) -> torch.Tensor:
    """``W r`` as a circular cross-correlation: (..., N) -> (..., N), ``weight`` (C, C, *window)."""
    lead = r.shape[:-1]
    C = weight.shape[1]
    x = r.reshape((-1, C) + tuple(map_shape))
    pad: list[int] = []
    for R in reversed(radius):  # F.pad lists the last axis first
        pad += [R, R]
    if any(radius):
        x = F.pad(x, pad, mode="circular")
    conv = F.conv1d if len(map_shape) == 1 else F.conv2d
    return conv(x, weight).reshape(lead + (weight.shape[0] * math.prod(map_shape),))


def circuit_kernels(circuit: Circuit, W: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """The full-map kernels of a translation-invariant spatial circuit.

    Returns
    -------
    kernel : (C * C * sites,) signed weights ``K[c, c', o]``
    kernel_mask : (C * C * sites,) bool, the entries that exist (from ``circuit.mask`` and ``W != 0``)
    map_shape : the circuit's map

    Raises
    ------
    SpecError
        (field ``recurrence``) not a spatial circuit, or ``W`` not translation invariant.
    """
    conn = circuit.spec.connectivity
    if conn.kind != "spatial":
        raise SpecError("recurrence", "conv", "a spatial circuit (connectivity.kind = 'spatial')")
    map_shape = tuple(conn.map_shape)
    W = circuit.W if W is None else np.asarray(W, dtype=np.float64)
    n, sites = W.shape[0], math.prod(map_shape)
    idx = offset_index(n, map_shape)
    m = np.asarray(circuit.mask, dtype=bool) | (W != 0)
    kmask = np.zeros((n // sites) ** 2 * sites, dtype=bool)
    kmask[idx[m]] = True
    kernel = np.zeros(kmask.shape)
    kernel[idx.ravel()] = W.ravel()
    if not (np.array_equal(kmask[idx], m) and np.allclose(kernel[idx], W, rtol=1e-12, atol=0)):
        raise SpecError("recurrence", "conv", NOT_TRANSLATION_INVARIANT)
    return kernel, kmask, map_shape


class ConvRecurrence:
    """The operator ``r -> W r`` of a translation-invariant spatial circuit, as a real convolution.

    Parameters
    ----------
    circuit : a spatial circuit with translation-invariant weights (:func:`circuit_kernels`)
    dtype, device : of the compact kernel

    The kernel is read from ``circuit.W`` (weight for weight: the dense product and this
    convolution sum the same terms, in a different order; float64 agreement ~1e-15).
    """

    def __init__(self, circuit: Circuit, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"):
        kernel, kmask, self.map_shape = circuit_kernels(circuit)
        C = circuit.n_units // math.prod(self.map_shape)
        index, valid, self.radius = window_index(C, self.map_shape, kmask)
        self.weight = torch.as_tensor(np.where(valid, kernel[index], 0.0), dtype=dtype, device=device)

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        return circular_conv(r, self.weight, self.map_shape, self.radius)

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return f"ConvRecurrence(map {tuple(self.map_shape)}, radius {self.radius}, kernel {tuple(self.weight.shape)})"
