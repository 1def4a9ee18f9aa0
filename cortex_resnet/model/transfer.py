"""Transfer functions ``phi`` (input -> rate), registered by name.

Each transfer is a small frozen object: it validates its parameters when built,
is callable on torch tensors (differentiable, any dtype/device) and has
``numpy`` for NumPy arrays and ``derivative`` for the linear analysis.

Known names: ``linear``, ``relu``, ``powerlaw`` (rectified power law
``k [z]_+^n``, the stabilised supralinear network), ``sigmoid``, ``tanh`` and
``lif`` (the Siegert / Ricciardi first-passage rate of a leaky
integrate-and-fire neuron driven by white noise).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from cortex_resnet.errors import SpecError, UnknownNameError
from cortex_resnet.model.siegert import siegert, siegert_rate_hz

__all__ = ["Transfer", "get_transfer", "known_transfers", "register_transfer", "siegert_rate_hz"]

_REGISTRY: dict[str, type["Transfer"]] = {}


def register_transfer(cls: type["Transfer"]) -> type["Transfer"]:
    """Class decorator: make a transfer available under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def known_transfers() -> list[str]:
    """Names of all registered transfer functions."""
    return sorted(_REGISTRY)


def get_transfer(name: str, **params: Any) -> "Transfer":
    """Build a transfer function by name.

    Raises
    ------
    UnknownNameError
        If ``name`` is not registered (the message lists the known names).
    SpecError
        If a parameter is unknown or out of range.
    """
    if name not in _REGISTRY:
        raise UnknownNameError("transfer function", name, known_transfers(), field="transfer.name")
    cls = _REGISTRY[name]
    allowed = {f.name for f in fields(cls)}
    for key in params:
        if key not in allowed:
            raise SpecError(f"transfer.{key}", params[key],
                            f"not a parameter of '{name}'; its parameters: {', '.join(sorted(allowed)) or 'none'}")
    return cls(**params)


def _positive(obj: Any, *names: str) -> None:
    for n in names:
        v = getattr(obj, n)
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise SpecError(f"transfer.{n}", v, "a finite number > 0")


@dataclass(frozen=True)
class Transfer(ABC):
    """Base class: a pointwise, monotone input -> rate map (subclasses define ``__call__``)."""

    name: ClassVar[str] = "base"

    @abstractmethod
    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        """``phi(z)`` elementwise, differentiable, on any dtype/device."""

    def numpy(self, z: np.ndarray) -> np.ndarray:
        """Evaluate on a NumPy array (float64)."""
        return self(torch.as_tensor(np.asarray(z, dtype=np.float64))).numpy()

    def derivative(self, z: torch.Tensor) -> torch.Tensor:
        """``phi'(z)`` elementwise (autograd unless a subclass knows better)."""
        z = z.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            y = self(z)
            (g,) = torch.autograd.grad(y.sum(), z)
        return g.detach()

    def params(self) -> dict[str, float]:
        """Parameters as a plain dict (for specs and result attributes)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __repr__(self) -> str:
        """One line: the name and parameters (the dataclass subclasses print theirs the same way)."""
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params().items())})"


@register_transfer
@dataclass(frozen=True)
class Linear(Transfer):
    """``phi(z) = gain * z`` (no rectification; for analytic checks)."""

    name: ClassVar[str] = "linear"
    gain: float = 1.0

    def __post_init__(self) -> None:
        _positive(self, "gain")

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return self.gain * z

    def derivative(self, z: torch.Tensor) -> torch.Tensor:
        return torch.full_like(z, self.gain)


@register_transfer
@dataclass(frozen=True)
class ReLU(Transfer):
    """``phi(z) = gain * [z - threshold]_+``."""

    name: ClassVar[str] = "relu"
    gain: float = 1.0
    threshold: float = 0.0

    def __post_init__(self) -> None:
        _positive(self, "gain")

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        y = torch.relu(z - self.threshold) if self.threshold != 0 else torch.relu(z)
        return y if self.gain == 1 else self.gain * y  # same numbers, fewer passes (the bridge's hot loop)

    def derivative(self, z: torch.Tensor) -> torch.Tensor:
        return self.gain * (z > self.threshold).to(z.dtype)


@register_transfer
@dataclass(frozen=True)
class PowerLaw(Transfer):
    """Rectified power law ``phi(z) = k [z]_+^n`` (Ahmadian et al. 2013, SSN)."""

    name: ClassVar[str] = "powerlaw"
    k: float = 0.04
    n: float = 2.0

    def __post_init__(self) -> None:
        _positive(self, "k", "n")

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return self.k * torch.relu(z) ** self.n

    def derivative(self, z: torch.Tensor) -> torch.Tensor:
        return self.k * self.n * torch.relu(z) ** (self.n - 1.0)


@dataclass(frozen=True)
class _Saturating(Transfer):
    """``r_max`` times a saturating function of ``gain x z``: the shared fields of Sigmoid and Tanh."""

    r_max: float = 1.0
    gain: float = 1.0

    def __post_init__(self) -> None:
        _positive(self, "r_max", "gain")


@register_transfer
@dataclass(frozen=True)
class Sigmoid(_Saturating):
    """``phi(z) = r_max / (1 + exp(-gain (z - threshold)))``."""

    name: ClassVar[str] = "sigmoid"
    threshold: float = 0.0

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return self.r_max * torch.sigmoid(self.gain * (z - self.threshold))


@register_transfer
@dataclass(frozen=True)
class Tanh(_Saturating):
    """``phi(z) = r_max * tanh(gain * z)`` (signed rates; for ML-style circuits)."""

    name: ClassVar[str] = "tanh"

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return self.r_max * torch.tanh(self.gain * z)


@register_transfer
@dataclass(frozen=True)
class LIF(Transfer):
    """Siegert / Ricciardi rate of a LIF neuron with white-noise input (:func:`~cortex_resnet.model.siegert.siegert`).

    ``1/nu = t_ref + tau_m sqrt(pi) * int_{(V_r-mu)/sigma}^{(theta-mu)/sigma} e^{x^2}(1+erf x) dx``

    The input ``z`` is the mean free membrane potential ``mu`` above rest (mV);
    ``sigma_mV`` is the (fixed) standard deviation of the input fluctuations.
    The output is in Hz. ``theta_mV`` and ``v_reset_mV`` are measured from rest.

    Parameters
    ----------
    tau_m_ms : membrane time constant (ms)
    t_ref_ms : absolute refractory period (ms)
    theta_mV : threshold above rest (mV)
    v_reset_mV : reset potential above rest (mV), must be < ``theta_mV``
    sigma_mV : input noise amplitude (mV), > 0
    """

    name: ClassVar[str] = "lif"
    tau_m_ms: float = 20.0
    t_ref_ms: float = 2.0
    theta_mV: float = 20.0
    v_reset_mV: float = 10.0
    sigma_mV: float = 5.0

    def __post_init__(self) -> None:
        _positive(self, "tau_m_ms", "sigma_mV")
        if not (math.isfinite(self.t_ref_ms) and self.t_ref_ms >= 0):
            raise SpecError("transfer.t_ref_ms", self.t_ref_ms, "a finite number >= 0")
        if not self.v_reset_mV < self.theta_mV:
            raise SpecError("transfer.v_reset_mV", self.v_reset_mV,
                            f"below the threshold theta_mV = {self.theta_mV}")

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        if z.is_floating_point() and z.dtype.itemsize < 4:
            z = z.float()  # bf16/f16 (autocast): erfcx has no such kernel, and 8 bits of mantissa
            # would not resolve the integral; the rate comes back in float32
        return siegert(z, self.sigma_mV, self.tau_m_ms, self.t_ref_ms, self.theta_mV, self.v_reset_mV)


TransferFn = Callable[[torch.Tensor], torch.Tensor]
