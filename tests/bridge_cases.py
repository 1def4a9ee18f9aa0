"""Small circuits and inputs shared by the bridge tests (dense, sparse, spatial; relu, power law).

Sizes are small (tens of units) so that every exactness case runs in milliseconds;
the couplings are the canonical microcircuit's (inhibition-stabilised, stable) or
the SSN's, so that trajectories are non-trivial: amplified, rectified, oscillating
towards a fixed point.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from cortex_resnet.model.circuit import Circuit, build_circuit
from cortex_resnet.model.spec import CircuitSpec, parse_spec

__all__ = ["CASES", "case_spec", "case_circuit", "case_input", "DT_MS", "one_thread"]

DT_MS = 0.5

_RELU = {"name": "relu"}
_POWER = {"name": "powerlaw", "k": 0.04, "n": 2.0}
_CANON = {"J_EE": 2.0, "J_EI": 2.0, "J_IE": 1.2, "J_II": 1.0, "weight_cv": 0.2}

CASES: dict[str, dict[str, Any]] = {
    "dense_relu": {"E": 24, "I": 8, "transfer": _RELU, "conn": {"kind": "dense", **_CANON},
                   "input": {"n_inputs": 3, "projection": "random"}, "amp": 1.0},
    "sparse_relu": {"E": 40, "I": 12, "transfer": _RELU, "conn": {"kind": "sparse", "p": 0.3, **_CANON, "J_EE": 1.2},
                    "input": {"n_inputs": 3, "projection": "random"}, "amp": 1.0},
    "spatial_relu": {"E": 32, "I": 16, "transfer": _RELU,
                     "conn": {"kind": "spatial", "map_shape": [16], "sigma_E": 1.5, "sigma_I": 3.0,
                              "J_EE": 1.5, "J_EI": 2.0, "J_IE": 1.5, "J_II": 1.0},
                     "input": {"n_inputs": 16, "projection": "topographic"}, "amp": 1.0},
    "spatial2d_relu": {"E": 36, "I": 36, "transfer": _RELU,
                       "conn": {"kind": "spatial", "map_shape": [6, 6], "sigma_E": 0.7, "sigma_I": 1.0,
                                "J_EE": 1.5, "J_EI": 2.0, "J_IE": 1.5, "J_II": 1.0, "weight_cv": 0.2},
                       "input": {"n_inputs": 36, "projection": "topographic"}, "amp": 1.0},
    "dense_powerlaw": {"E": 24, "I": 8, "transfer": _POWER,
                       "conn": {"kind": "dense", "J_EE": 1.25, "J_EI": 0.65, "J_IE": 1.2, "J_II": 0.5,
                                "weight_cv": 0.2},
                       "input": {"n_inputs": 2, "projection": "random", "gain_I": 1.0}, "amp": 10.0},
}


def case_spec(name: str, **changes: Any) -> CircuitSpec:
    """The spec of a named case (E tau 20 ms, I tau 10 ms, E bias 0.1)."""
    c = CASES[name]
    spec = parse_spec({
        "name": name, "seed": 7,
        "populations": {"E": {"n": c["E"], "tau_ms": 20.0, "transfer": c["transfer"]},
                        "I": {"n": c["I"], "tau_ms": 10.0, "transfer": c["transfer"]}},
        "connectivity": c["conn"],
        "input": {"gain_E": 1.0, "gain_I": 0.5, **c["input"]},
        "bias": {"E": 0.1, "I": 0.0},
    })
    return spec.replace(**changes) if changes else spec


def case_circuit(name: str, **changes: Any) -> Circuit:
    return build_circuit(case_spec(name, **changes))


def case_input(name: str, batch: int = 3, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(batch, n_inputs) non-negative inputs of the case's typical amplitude."""
    c = CASES[name]
    rng = np.random.default_rng(seed)
    u = c["amp"] * rng.uniform(0.2, 1.0, size=(batch, c["input"]["n_inputs"]))
    return torch.as_tensor(u, dtype=dtype)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny matmuls run 25x slower with 2 spinning threads on a shared, loaded machine: use one.

    Import this name into a test module to make it autouse there.
    """
    from threadpoolctl import threadpool_limits

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):  # NumPy's BLAS too (eigvals)
        yield
    torch.set_num_threads(n)
