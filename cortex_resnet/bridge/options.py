"""Options of :func:`~cortex_resnet.bridge.unroll`: a frozen object that rejects bad values when built."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cortex_resnet.model.circuit import Circuit
from cortex_resnet.errors import SpecError, UnknownNameError
from cortex_resnet.bridge.dale import PARAMETRISATIONS

__all__ = ["VARIANTS", "INPUT_MODES", "NORMS", "INITS", "RECURRENCES", "MAX_STEPS", "UnrollOptions", "check_alpha"]

VARIANTS = ("tied", "untied", "plain", "projection", "gated")
INPUT_MODES = ("sustained", "pulse")
NORMS = ("layer", "batch")
INITS = ("circuit", "balanced")
RECURRENCES = ("dense", "conv")
MAX_STEPS = 1_000_000


@dataclass(frozen=True)
class UnrollOptions:
    """How a circuit is unrolled; rejects bad values when built.

    Attributes
    ----------
    steps : number of residual blocks ``K`` (>= 1)
    dt_ms : Euler step (ms); ``alpha = dt_ms / tau_ms`` must be <= 1
    variant : one of :data:`VARIANTS`
    input_mode : ``"sustained"`` or ``"pulse"``
    tied : one ``W`` for all steps (default: ``False`` for ``untied``, else ``True``)
    norm : ``None``, ``"layer"`` or ``"batch"`` (per-step normalisation)
    state_gate : ``gated`` only: ``alpha`` depends on the state
    dale : Dale parametrisation, ``"softplus"`` or ``"relu"``
    init : ``"circuit"`` (the circuit's ``W``: exact) or ``"balanced"`` (fresh
        balanced weights on the circuit's mask, no outlier eigenvalue)
    init_radius : bulk spectral radius of the balanced initialisation
    recurrence : ``"dense"`` (one weight per connection; local on spatial maps) or
        ``"conv"`` (kernels shared across map sites: a convolutional ResNet; spatial,
        translation-invariant circuits)
    """

    steps: int
    dt_ms: float
    variant: str = "tied"
    input_mode: str = "sustained"
    tied: bool | None = None
    norm: str | None = None
    state_gate: bool = False
    dale: str = "softplus"
    init: str = "circuit"
    init_radius: float = 0.9
    recurrence: str = "dense"

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, (int, np.integer)) or self.steps < 1:
            raise SpecError("steps", self.steps, "an integer >= 1 (the number of residual blocks K)")
        if self.steps > MAX_STEPS:
            raise SpecError("steps", self.steps, f"at most {MAX_STEPS}")
        if not (isinstance(self.dt_ms, (int, float)) and math.isfinite(self.dt_ms) and self.dt_ms > 0):
            raise SpecError("dt_ms", self.dt_ms, "a finite Euler step > 0 ms")
        for name, value, known in (("variant", self.variant, VARIANTS), ("input_mode", self.input_mode, INPUT_MODES),
                                   ("dale", self.dale, PARAMETRISATIONS), ("init", self.init, INITS),
                                   ("recurrence", self.recurrence, RECURRENCES)):
            if value not in known:
                raise UnknownNameError(name.replace("_", " "), value, list(known), field=name)
        if self.norm is not None and self.norm not in NORMS:
            raise UnknownNameError("normalisation", self.norm, list(NORMS) + ["None"], field="norm")
        if self.state_gate and self.variant != "gated":
            raise SpecError("state_gate", True, "only with variant = 'gated'")
        if self.variant == "untied" and self.tied:
            raise SpecError("tied", True, "False (or None) for variant = 'untied'")
        if self.variant == "tied" and self.tied is False:
            raise SpecError("tied", False, "True (or None) for variant = 'tied'; use variant = 'untied'")
        if self.recurrence == "conv" and self.init != "circuit":
            raise SpecError("init", self.init, "'circuit' with recurrence = 'conv' (balanced weights are not shared)")
        if not (math.isfinite(self.init_radius) and self.init_radius > 0):
            raise SpecError("init_radius", self.init_radius, "a finite spectral radius > 0")
        object.__setattr__(self, "steps", int(self.steps))
        object.__setattr__(self, "dt_ms", float(self.dt_ms))
        if self.tied is None:
            object.__setattr__(self, "tied", self.variant != "untied")


def check_alpha(circuit: Circuit, opts: UnrollOptions) -> None:
    if opts.variant == "plain":
        return
    tau = circuit.tau_ms
    worst = int(np.argmin(tau))
    alpha = opts.dt_ms / tau[worst]
    if alpha > 1.0 + 1e-12:
        raise SpecError(
            "dt_ms", opts.dt_ms,
            f"a step <= the smallest time constant tau_ms = {tau[worst]:g} ms (unit {worst}, population "
            f"{circuit.population[worst]}): alpha = dt/tau = {alpha:.3g} > 1 makes the Euler step overshoot "
            "(each step jumps past the target rate, so the net oscillates or diverges where the circuit "
            f"would not). Use dt_ms <= {tau[worst]:g} with more steps, or variant = 'plain' (alpha = 1)")
