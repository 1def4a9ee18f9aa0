"""A circuit's tensors on one device and dtype (:class:`RateSystem`), and a run's state.

``T dr/dt = -r + phi(W r + B u(t) + b + eta(t))``: :class:`RateSystem` holds ``W``, ``B``,
``b``, ``tau`` as tensors, the recurrent operator and the right-hand side;
:class:`RateState` is everything needed to continue a run exactly; :class:`RateRun` is
what :func:`~cortex_resnet.rate.simulator.integrate` returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from cortex_resnet.errors import SpecError, UnknownNameError
from cortex_resnet.model.circuit import Circuit
from cortex_resnet.rate.conv import ConvRecurrence
from cortex_resnet.rate.step import input_drive

__all__ = ["RateRun", "RateState", "RateSystem", "noise_init", "resolve_device", "resolve_dtype"]


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32"``/``"float64"`` (or a torch dtype) to a torch float dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {"float32": torch.float32, "float64": torch.float64}
    if dtype not in table:
        raise UnknownNameError("dtype", dtype, list(table), field="dtype")
    return table[dtype]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise SpecError("device", device, "auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SpecError("device", device, "a device present here: no CUDA device is available (use cpu or auto)")
    return dev


class RateSystem:
    """A circuit's tensors on one device/dtype, with the recurrent operator and right-hand side."""

    def __init__(self, circuit: Circuit, dtype: torch.dtype = torch.float64,
                 device: torch.device | str = "cpu", recurrence: bool = True, conv: bool = False):
        self.circuit = circuit
        self.dtype, self.device = dtype, torch.device(device)
        as_t = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype, device=self.device)
        c = circuit if recurrence else circuit.without_recurrence()
        self.recurrence = recurrence
        self.B, self.b, self.tau = as_t(c.B), as_t(c.b), as_t(c.tau_ms)
        self.BT = self.B.T.contiguous()
        self.W = as_t(c.W)
        self.WT = self.W.T.contiguous()
        self._sparse = None
        density = float(c.mask.mean()) if c.mask.size else 1.0
        if c.spec.connectivity.kind == "sparse" and density < 0.2 and c.n_units >= 500:
            self._sparse = self.W.to_sparse_csr()
        self.step_WT = None
        if c.step_weights is not None:
            self.step_WT = [as_t(Wk).T.contiguous() for Wk in c.step_weights]
        self._conv = ConvRecurrence(c, dtype, self.device) if conv and recurrence else None  # real convolution
        self.phi = circuit.phi

    def recurrent_op(self, k: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
        """``r -> W r`` for step ``k`` (step-dependent weights for chain circuits)."""
        if not self.recurrence:
            return lambda r: torch.zeros_like(r)
        if self.step_WT is not None:
            WT = self.step_WT[min(k, len(self.step_WT) - 1)]
            return lambda r: r @ WT
        if self._conv is not None:
            return self._conv
        if self._sparse is not None:
            Wsp = self._sparse
            return lambda r: (Wsp @ r.T).T
        WT = self.WT
        return lambda r: r @ WT

    def recurrent_weights(self, k: int = 0) -> torch.Tensor | Callable[[torch.Tensor], torch.Tensor]:
        """What :func:`~cortex_resnet.rate.step.euler_step` takes as ``recurrent`` for step ``k``:
        the dense ``W^T`` (fused into one ``addmm``) where the product is dense, else
        :meth:`recurrent_op`."""
        if self.recurrence and self.step_WT is None and self._sparse is None and self._conv is None:
            return self.WT
        return self.recurrent_op(k)

    def drive(self, u: torch.Tensor, eta: torch.Tensor | None) -> torch.Tensor:
        """``B u + b (+ eta)``, (batch, N)."""
        d = input_drive(u, self.BT, self.b)
        return d if eta is None else d + eta

    def rhs(self, r: torch.Tensor, drive: torch.Tensor, k: int = 0) -> torch.Tensor:
        """``dr/dt = (-r + phi(W r + drive)) / tau`` in 1/ms."""
        rec = self.recurrent_weights(k)
        z = torch.addmm(drive, r, rec) if isinstance(rec, torch.Tensor) and r.ndim == 2 else None
        if z is None:
            z = self.recurrent_op(k)(r) + drive
        return (self.phi(z) - r) / self.tau

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return f"RateSystem({self.circuit.spec.name!r}: {self.circuit.n_units} units, {self.dtype} on {self.device})"


@dataclass
class RateState:
    """Everything needed to continue a run exactly: time, step, rates, noise and its generator."""

    t_ms: float
    step: int
    r: torch.Tensor
    eta: torch.Tensor | None = None
    generator: torch.Generator | None = None

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return f"RateState(t {self.t_ms:g} ms, step {self.step}, r {tuple(self.r.shape)}, noise={self.eta is not None})"


@dataclass
class RateRun:
    """Output of :func:`~cortex_resnet.rate.simulator.integrate`: record times (ms), rates
    (T, batch, N), inputs (T, batch, n_in) and the final state."""

    times_ms: np.ndarray
    r: torch.Tensor
    u: torch.Tensor
    state: RateState

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return (f"RateRun({len(self.times_ms)} samples to {float(self.times_ms[-1]) if len(self.times_ms) else 0.0:g} ms, "
                f"r {tuple(self.r.shape)})")


def noise_init(system: RateSystem, batch: int, seed: int) -> tuple[torch.Tensor | None, torch.Generator | None]:
    """The OU noise's stationary start ``eta_0`` (batch, N) and its generator (None without noise)."""
    ns = system.circuit.spec.noise
    if ns.sigma == 0:
        return None, None
    gen = torch.Generator(device=system.device)
    gen.manual_seed(int(seed) % (2**63))
    eta = ns.sigma * torch.randn(batch, system.circuit.n_units, generator=gen,
                                 dtype=system.dtype, device=system.device)
    return eta, gen
