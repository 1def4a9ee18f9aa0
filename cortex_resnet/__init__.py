"""cortex_resnet: locally recurrent cortical circuits as residual networks.

Public API (mirrors the CLI)::

    from cortex_resnet import load_model, simulate
    circuit = load_model("models/canonical_microcircuit.toml")
    ds = simulate(circuit, "step:amp=1.0,onset_ms=50", duration_ms=300)
    ds["Fx"]  # what recurrence adds: r = x + F(x)
"""

from __future__ import annotations

from pathlib import Path

from .circuit import Circuit, build_circuit
from .errors import (ConvergenceError, CortexError, ResourceError, SimulationError, SpecError,
                     UnstableCircuitError)
from .rate import simulate
from .spec import CircuitSpec, load_spec

__version__ = "0.1.0"

__all__ = [
    "load_model", "simulate", "build_circuit", "load_spec", "Circuit", "CircuitSpec",
    "CortexError", "SpecError", "SimulationError", "UnstableCircuitError", "ConvergenceError",
    "ResourceError", "__version__",
]


def load_model(path: str | Path, seed: int | None = None) -> Circuit:
    """Load a model file (TOML) and build its circuit (seeded by the file or ``seed``)."""
    spec = load_spec(path)
    if seed is not None:
        spec = spec.replace(seed=seed)
    return build_circuit(spec)
