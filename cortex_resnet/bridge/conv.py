"""A chain of convolutional E/I areas (CORnet-S style) that learns like a CNN.

Area ``a`` is a translation-invariant spatial E/I circuit (``channels_E`` + ``channels_I``
channels on its own periodic map), unrolled with ``recurrence = "conv"``: its recurrent
step is a real circular convolution with Dale kernels (:class:`~cortex_resnet.bridge.dale.DaleConv`),
optionally normalised per step. It receives a feedforward convolution (stride, same padding)
of the previous area's **E** channels -- pyramidal cells are the only ones that project out of
an area -- with non-negative weights (``feedforward = "dale"``; ``"signed"`` lifts it); the
first area's feedforward convolution reads the data (signed). Each area runs its ``steps``
Euler steps with this drive held (``r_0 = 0``), then passes its E rates on. The readout is a
linear map of the last area's E rates at each of its steps (anytime readout).

Exactness: without normalisation an area is a circuit (:func:`area_circuit`: the area's
weights, ``B = I`` and the feedforward drive as its constant input) that the rate simulator
integrates to the same numbers (:meth:`ConvChainClassifier.area_trajectories` gives what to compare).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from cortex_resnet.bridge.convert import circuit_of
from cortex_resnet.bridge.dale import softplus_inverse
from cortex_resnet.bridge.unroll import UnrolledCircuit, unroll
from cortex_resnet.errors import SpecError
from cortex_resnet.model.circuit import Circuit, build_circuit
from cortex_resnet.model.conv_spec import ConvAreaSpec, area_sizes
from cortex_resnet.model.spec import CircuitSpec

__all__ = ["ConvChainClassifier", "area_spec", "area_circuit"]


def area_spec(base: CircuitSpec, area: ConvAreaSpec, sites: tuple[int, ...]) -> CircuitSpec:
    """The circuit spec of one area: ``base`` (one E and one I population, spatial) on the area's map,
    translation invariant (``weight_cv = 0``, ``p = 1``) with ``channels x sites`` units each."""
    pops = base.populations.order
    if base.connectivity.kind != "spatial" or len(pops) != 2:
        raise SpecError("model.circuit", base.name, "a spatial circuit with one E and one I population "
                        "(connectivity.kind = 'spatial') for a chain of conv areas")
    n_sites = math.prod(sites)
    e, i = pops
    n = {e: area.channels_E * n_sites, i: area.channels_I * n_sites}
    return base.replace(**{f"populations.{e}.n": n[e], f"populations.{i}.n": n[i],
                           "connectivity.map_shape": list(sites), "connectivity.weight_cv": 0.0,
                           "connectivity.p": 1.0, "input.projection": "by_population", "input.n_inputs": 2})


def area_circuit(net: UnrolledCircuit) -> Circuit:
    """The circuit an area computes (its current weights and bias), with ``B = I``: input channel ``i``
    is the feedforward drive of unit ``i``."""
    c = circuit_of(net)
    return c.with_weights(B=np.eye(c.n_units))


class ConvChainClassifier(nn.Module):
    """Conv areas in a chain with E-only feedforward and E-only anytime readout (module docstring).

    Parameters
    ----------
    base : the circuit every area copies (one E, one I population; spatial)
    areas : the chain
    in_shape : ``(C, L)`` or ``(C, H, W)`` of one example
    n_classes : number of classes
    steps_dt_ms : Euler step (ms)
    norm : per-step normalisation of each area (``None``, ``"layer"``, ``"batch"``)
    feedforward : ``"dale"`` (non-negative E-to-area weights, magnitudes as ``dale``: softplus or relu
        of a parameter) or ``"signed"``
    seed : initial weights; ``dtype``, ``device`` of the parameters; ``variant``, ``dale``: of the areas
    """

    def __init__(self, base: CircuitSpec, areas: list[ConvAreaSpec], in_shape: tuple[int, ...], n_classes: int,
                 dt_ms: float, *, norm: str | None = None, feedforward: str = "dale", seed: int = 0,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                 variant: str = "tied", dale: str = "softplus"):
        super().__init__()
        in_shape = tuple(int(s) for s in in_shape)
        if len(in_shape) not in (2, 3):
            raise SpecError("in_shape", in_shape, "(C, L) or (C, H, W): data with spatial axes for conv areas")
        if feedforward not in ("dale", "signed"):
            raise SpecError("model.feedforward", feedforward, "dale or signed")
        self.in_shape, self.n_classes, self.feedforward, self.dale = in_shape, int(n_classes), feedforward, dale
        self.specs = list(areas)
        self.sizes = area_sizes(in_shape[1:], self.specs)
        gen = torch.Generator().manual_seed(int(seed))
        nets, weights = [], []
        in_ch = in_shape[0]
        for a, (area, sites) in enumerate(zip(self.specs, self.sizes)):
            spec = area_spec(base, area, sites)
            circuit = build_circuit(spec, np.random.default_rng([spec.seed, seed, a]))
            net = unroll(circuit, area.steps, dt_ms, variant=variant, dtype=dtype, device=device, norm=norm,
                         dale=dale, recurrence="conv")
            net.B.requires_grad_(False)  # unused: the feedforward convolution is the area's drive
            nets.append(net)
            out_ch = area.channels_E + area.channels_I
            fan_in = in_ch * area.kernel_size ** len(sites)
            shape = (out_ch, in_ch) + (area.kernel_size,) * len(sites)
            w = torch.rand(shape, generator=gen, dtype=torch.float64)
            if a > 0 and feedforward == "dale":  # magnitudes U(0, 1/sqrt(fan_in)), as the signed init's |w|
                w = w / math.sqrt(fan_in)
                w = w if dale == "relu" else torch.as_tensor(softplus_inverse(w.numpy()))
            else:
                w = (w * 2 - 1) / math.sqrt(fan_in)
            weights.append(nn.Parameter(w.to(dtype=dtype, device=device)))
            in_ch = area.channels_E
        self.areas = nn.ModuleList(nets)
        self.ff_weight = nn.ParameterList(weights)
        n_E = self.specs[-1].channels_E * math.prod(self.sizes[-1])
        bound = 1 / math.sqrt(n_E)
        self.readout_weight = nn.Parameter(((torch.rand((self.n_classes, n_E), generator=gen, dtype=torch.float64)
                                             * 2 - 1) * bound).to(dtype=dtype, device=device))
        self.readout_bias = nn.Parameter(((torch.rand(self.n_classes, generator=gen, dtype=torch.float64) * 2 - 1)
                                          * bound).to(dtype=dtype, device=device))

    @property
    def dtype(self) -> torch.dtype:
        return self.readout_weight.dtype

    def feedforward_weight(self, a: int) -> torch.Tensor:
        """The feedforward kernel into area ``a`` (out channels, in channels, *kernel)."""
        w = self.ff_weight[a]
        if a == 0 or self.feedforward == "signed":
            return w
        return torch.relu(w) if self.dale == "relu" else F.softplus(w)

    def feedforward_drive(self, a: int, h: torch.Tensor) -> torch.Tensor:
        """(batch, C_in, *map_{a-1}) -> the drive of area ``a``'s units (batch, N_a), without bias."""
        conv = F.conv1d if h.ndim == 3 else F.conv2d
        k = self.specs[a].kernel_size
        return conv(h, self.feedforward_weight(a), stride=self.specs[a].stride, padding=k // 2).flatten(1)

    def area_trajectories(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per area: (feedforward drive without bias (batch, N_a), rates (K_a + 1, batch, N_a))."""
        if tuple(x.shape[1:]) != self.in_shape:
            raise SpecError("x", f"shape {tuple(x.shape)}", f"(batch, {', '.join(map(str, self.in_shape))})")
        h = x.to(self.dtype)
        out = []
        for a, net in enumerate(self.areas):
            u = self.feedforward_drive(a, h)
            drive = u + net.b
            r = torch.zeros_like(u)
            states = [r]
            recs = net.recurrences()
            for k in range(net.steps):
                r = net.step(r, drive, k, recs[min(k, len(recs) - 1)])
                states.append(r)
            out.append((u, torch.stack(states)))
            h = r[:, : net.n_E].reshape((r.shape[0], self.specs[a].channels_E) + self.sizes[a])
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at each step of the last area (anytime readout): (K_last, batch, n_classes)."""
        states = self.area_trajectories(x)[-1][1]
        n_E = self.areas[-1].n_E
        return F.linear(states[1:, :, :n_E], self.readout_weight, self.readout_bias)

    def param_count(self) -> int:
        """Learnable numbers, shared kernels counted once (connections inside the masks)."""
        total = sum(p.numel() for n, p in self.named_parameters() if p.requires_grad and not n.startswith("areas."))
        return total + sum(net.param_count() for net in self.areas)

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return (f"ConvChainClassifier({len(self.areas)} areas, input {tuple(self.in_shape)}, "
                f"{self.n_classes} classes, {self.param_count():,} parameters)")
