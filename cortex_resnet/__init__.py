"""cortex_resnet: locally recurrent cortical circuits as residual networks.

Public API (mirrors the CLI)::

    from cortex_resnet import load_model, simulate, simulate_spiking, unroll, train, run_hypothesis
    circuit = load_model("models/canonical_microcircuit.toml")
    ds = simulate(circuit, "step:amp=1.0,onset_ms=50", duration_ms=300)
    ds["Fx"]                                   # what recurrence adds: r = x + F(x)
    net = unroll(circuit, steps=50, dt_ms=0.5) # the same dynamics as 50 residual blocks
    spk = simulate_spiking(circuit, "step:amp=1.0,onset_ms=50", duration_ms=300)

The heavier entry points (spiking, bridge, training, hypotheses) are imported on
first use, so ``import cortex_resnet`` stays fast.
"""

from __future__ import annotations

from cortex_resnet import _startup  # noqa: F401  first, before torch: Ctrl-C at start-up exits 130 (CLI only)

from pathlib import Path

from cortex_resnet.model.circuit import Circuit, build_circuit
from cortex_resnet.errors import (ConvergenceError, CortexError, ResourceError, SimulationError, SpecError,
                     UnstableCircuitError)
from cortex_resnet.rate.simulator import simulate
from cortex_resnet.model.spec import CircuitSpec, load_spec

__version__ = "0.1.0"

# name -> module that defines it (imported on first access)
_LAZY = {
    "simulate_spiking": "spiking.simulator", "to_spiking": "spiking.simulator",
    "unroll": "bridge", "to_circuit": "bridge", "save_circuit": "bridge", "load_circuit": "bridge",
    "CircuitClassifier": "bridge",
    "steady_state": "model.fixedpoint", "analyze": "model.analysis",
    "train": "training.loop", "load_experiment": "training.experiment", "compare_run": "workflows.compare",
    "get_dataset": "data.datasets", "known_datasets": "data.datasets", "UnrolledCircuit": "bridge",
    "run_hypothesis": "hypotheses.runner", "list_hypotheses": "hypotheses",
    "load_dataset": "io.results", "save_dataset": "io.results",
}

__all__ = [
    "load_model", "simulate", "build_circuit", "load_spec", "Circuit", "CircuitSpec", *_LAZY,
    "CortexError", "SpecError", "SimulationError", "UnstableCircuitError", "ConvergenceError",
    "ResourceError", "__version__",
]


def load_model(path: str | Path, seed: int | None = None) -> Circuit:
    """Load a model file (TOML) and build its circuit (seeded by the file or ``seed``).

    A model file written by ``save_circuit`` (its ``weights`` field names a
    ``.npz`` weight file) is loaded with those weights instead of random ones.
    """
    spec = load_spec(path)
    if spec.weights is not None:
        from cortex_resnet.bridge import load_circuit

        circuit = load_circuit(path)
        if seed is None:
            return circuit
        import dataclasses

        return dataclasses.replace(circuit, spec=circuit.spec.replace(seed=seed))
    if seed is not None:
        spec = spec.replace(seed=seed)
    return build_circuit(spec)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cortex_resnet' has no attribute {name!r}")
