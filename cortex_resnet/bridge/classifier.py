"""A classifier around an unrolled circuit: learned input projection, E-only anytime readout.

``x`` (data) --encode--> ``u`` (the circuit's input channels) --net--> ``r_0..r_K``
--readout of the E units at every step--> logits ``(K, batch, n_classes)``.

The input projection is ``dense`` (flatten, linear) or ``conv`` (images and
1-D signals on spatial circuits: a convolution onto the circuit's map, then
average pooling to the map's size, so each input channel drives the units at
one map site; with E and I channels on the map and local recurrent kernels the
unrolled net is a convolutional ResNet). Only pyramidal (E) cells are read out,
as only they project out of a cortical area: all of them, or those of the named
excitatory populations ``readout_populations`` (e.g. ``["L23E", "L5E"]``: a
cortical column's output layers). Which populations the input reaches is the
circuit's input projection ``B`` (its zero pattern), set by the experiment's
``model.input_populations`` (:mod:`cortex_resnet.training.experiment`).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from cortex_resnet.errors import SpecError, UnknownNameError
from cortex_resnet.bridge.unroll import UnrolledCircuit

__all__ = ["CircuitClassifier", "INPUT_PROJECTIONS", "readout_units"]

INPUT_PROJECTIONS = ("dense", "conv")


def _uniform(shape: tuple[int, ...], bound: float, gen: torch.Generator, dtype: torch.dtype,
             device: torch.device) -> nn.Parameter:
    """A parameter drawn from U(-bound, bound) with an explicit generator (never the global one)."""
    t = (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound
    return nn.Parameter(t.to(dtype=dtype, device=device))


def readout_units(net: UnrolledCircuit, populations: list[str] | tuple[str, ...] | None) -> list[int]:
    """Unit indices read out: every E unit (``None``) or the units of the named excitatory populations.

    Raises :class:`SpecError` for an unknown, repeated or inhibitory population name.
    """
    if populations is None:
        return list(range(net.n_E))
    layout = net.circuit.layout
    if not populations or len(set(populations)) != len(populations):
        raise SpecError("readout_populations", list(populations), "distinct population names (at least one)")
    out: list[int] = []
    for name in populations:
        if name not in layout:
            raise SpecError("readout_populations", name, f"one of the circuit's populations {list(layout)}")
        sl = layout[name]
        if net.circuit.population[sl.start] != "E":
            excit = [k for k, s in layout.items() if net.circuit.population[s.start] == "E"]
            raise SpecError("readout_populations", name, f"an excitatory population {excit} (only pyramidal "
                            "cells project out of a cortical area)")
        out += list(range(sl.start, sl.stop))
    return sorted(out)


class CircuitClassifier(nn.Module):
    """Encoder + unrolled circuit + E-only readout at every step.

    Parameters
    ----------
    net : the unrolled circuit (:func:`~cortex_resnet.bridge.unroll`)
    in_shape : shape of one example: ``(features,)``, ``(C, L)`` or ``(C, H, W)``
    n_classes : number of classes
    input_projection : ``"dense"`` or ``"conv"`` (spatial circuits only; the map must
        have as many dimensions as the data has spatial axes, and ``n_inputs`` must be
        a multiple of the number of map sites)
    kernel_size : of the convolution (odd; ``"same"`` padding)
    seed : for the initial encoder/readout weights (uniform, ``+-1/sqrt(fan_in)``)
    readout_populations : names of the excitatory populations read out (default: every E unit)
    """

    def __init__(self, net: UnrolledCircuit, in_shape: tuple[int, ...], n_classes: int,
                 input_projection: str = "dense", *, kernel_size: int = 5, seed: int = 0,
                 readout_populations: list[str] | None = None):
        super().__init__()
        if input_projection not in INPUT_PROJECTIONS:
            raise UnknownNameError("input projection", input_projection, list(INPUT_PROJECTIONS),
                                   field="input_projection")
        in_shape = tuple(int(s) for s in in_shape)
        if not in_shape or any(s < 1 for s in in_shape) or len(in_shape) > 3:
            raise SpecError("in_shape", in_shape, "(features,), (C, L) or (C, H, W) with sizes >= 1")
        if isinstance(n_classes, bool) or int(n_classes) < 2:
            raise SpecError("n_classes", n_classes, "an integer >= 2")
        self.net, self.in_shape, self.n_classes = net, in_shape, int(n_classes)
        self.input_projection = input_projection
        gen = torch.Generator().manual_seed(int(seed))
        dtype, device = net.dtype, net.B.device
        n_in = net.n_inputs
        if input_projection == "dense":
            fan_in = math.prod(in_shape)
            w_shape: tuple[int, ...] = (n_in, fan_in)
        else:
            conn = net.circuit.spec.connectivity
            if conn.kind != "spatial":
                raise SpecError("input_projection", "conv", "a spatial circuit (connectivity.kind = 'spatial')")
            self.map_shape = tuple(conn.map_shape)
            if len(in_shape) != len(self.map_shape) + 1:
                raise SpecError("in_shape", in_shape, f"(C, {', '.join('...' for _ in self.map_shape)}): "
                                f"{len(self.map_shape)} spatial axes like the circuit's map {list(self.map_shape)}")
            sites = math.prod(self.map_shape)
            if n_in % sites:
                raise SpecError("input.n_inputs", n_in, f"a multiple of the map's {sites} sites for a conv projection")
            if kernel_size < 1 or kernel_size % 2 == 0:
                raise SpecError("kernel_size", kernel_size, "an odd integer >= 1")
            w_shape = (n_in // sites, in_shape[0]) + (kernel_size,) * len(self.map_shape)
            fan_in = in_shape[0] * kernel_size ** len(self.map_shape)
        self.kernel_size = kernel_size
        bound = 1 / math.sqrt(fan_in)
        self.encoder_weight = _uniform(w_shape, bound, gen, dtype, device)
        self.encoder_bias = _uniform((w_shape[0],), bound, gen, dtype, device)
        idx = readout_units(net, readout_populations)
        self.readout_populations = None if readout_populations is None else list(readout_populations)
        self.register_buffer("readout_index", torch.tensor(idx, dtype=torch.long, device=device), persistent=False)
        # every E unit = the first n_E (units are ordered E first): a slice, no gather
        self._read_slice = slice(0, net.n_E) if idx == list(range(net.n_E)) else None
        bound = 1 / math.sqrt(len(idx))
        self.readout_weight = _uniform((self.n_classes, len(idx)), bound, gen, dtype, device)
        self.readout_bias = _uniform((self.n_classes,), bound, gen, dtype, device)

    def _check_x(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.in_shape:
            raise SpecError("x", f"shape {tuple(x.shape)}", f"(batch, {', '.join(map(str, self.in_shape))})")
        return x.to(self.net.dtype)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Data (batch, *in_shape) -> circuit input ``u`` (batch, n_inputs), in the net's dtype.

        Under autocast the projection runs in the autocast dtype (bf16) and its
        result is cast back: the circuit's state stays in the net's dtype.
        """
        x = self._check_x(x)
        if self.input_projection == "dense":
            u = F.linear(x.flatten(1), self.encoder_weight, self.encoder_bias)
        else:
            if x.ndim == 4 and x.is_cuda:  # NHWC: the layout cuDNN's bf16/tf32 kernels prefer
                x = x.contiguous(memory_format=torch.channels_last)
            conv = F.conv1d if len(self.map_shape) == 1 else F.conv2d
            h = conv(x, self.encoder_weight, self.encoder_bias, padding=self.kernel_size // 2)
            pool = F.adaptive_avg_pool1d if len(self.map_shape) == 1 else F.adaptive_avg_pool2d
            u = pool(h, self.map_shape).flatten(1)
        return u.to(self.net.dtype)

    def select(self, r: torch.Tensor) -> torch.Tensor:
        """The read-out units' rates: (..., N) -> (..., n_read) (all E units, or the named populations')."""
        if self._read_slice is not None:
            return r[..., self._read_slice]
        return r.index_select(-1, self.readout_index.to(r.device))

    def readout(self, r_read: torch.Tensor) -> torch.Tensor:
        """Rates of the read-out units (..., n_read) (see :meth:`select`) -> logits (..., n_classes)."""
        return F.linear(r_read, self.readout_weight, self.readout_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at steps 1..K (anytime readout): (K, batch, n_classes)."""
        states = self.net(self.encode(x))
        return self.readout(self.select(states[1:]))

    def steady_logits(self, x: torch.Tensor, **kwargs: object) -> torch.Tensor:
        """Logits at the circuit's equilibrium (implicit gradients), (batch, n_classes)."""
        r = self.net.steady_state(self.encode(x), **kwargs)
        return self.readout(self.select(r))

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return f"CircuitClassifier({self.n_classes} classes, {sum(p.numel() for p in self.parameters()):,} parameters)"
