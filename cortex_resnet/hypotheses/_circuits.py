"""Shared pieces of the circuit-based hypotheses: model files, per-seed circuits, linear response.

A seed is an independent random circuit: the model file's spec with
``seed = SEED`` (weights drawn with ``weight_cv`` heterogeneity, random
projections) built with ``numpy.random.default_rng(SEED)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from cortex_resnet.model.circuit import Circuit, build_circuit
from cortex_resnet.errors import SpecError
from cortex_resnet.model.spec import load_spec, parse_spec
from cortex_resnet.hypotheses.base import Hypothesis, Params
from cortex_resnet.catalog import catalog_root

__all__ = ["CircuitParams", "resolve_file", "prepare_circuit", "circuit_for_seed", "spiking_circuit_for_seed", "pop_mean",
           "linear_response", "population_prediction", "circuit_hypothesis"]


class CircuitParams(Params):
    """A circuit from a model file with optional changes.

    ``model``: path of a model file (relative paths: the working directory, the
    spec file's folder, the repository root); ``n_E``/``n_I``: population sizes;
    ``weight_cv``: weight heterogeneity across seeds; ``overrides``: any dotted
    spec fields, e.g. ``{"connectivity.J_EE" = 1.5}``.
    """

    model: str
    n_E: int | None = Field(default=None, ge=1, le=20_000)
    n_I: int | None = Field(default=None, ge=1, le=20_000)
    weight_cv: float | None = Field(default=None, ge=0.0, le=2.0)
    overrides: dict[str, Any] = {}


def resolve_file(path: str, base_dir: Path | None) -> Path:
    """Find a file given relative to the cwd, the spec's folder or the repository root."""
    p = Path(path)
    candidates = [p] if p.is_absolute() else [Path.cwd() / p]
    if base_dir is not None and not p.is_absolute():
        candidates += [base_dir / p] + [parent / p for parent in base_dir.parents]
    if not p.is_absolute():
        candidates.append(catalog_root() / p)  # the bundled models/ and experiments/
    for c in candidates:
        if c.is_file():
            return c
    raise SpecError("params.model", path, "an existing model file (TOML), e.g. models/isn.toml")


def prepare_circuit(params: CircuitParams, base_dir: Path | None) -> dict[str, Any]:
    """The params as data plus the validated circuit spec (file content, not its path)."""
    spec = load_spec(resolve_file(params.model, base_dir))
    changes: dict[str, Any] = dict(params.overrides)
    if params.n_E is not None:
        changes["populations.E.n"] = params.n_E
    if params.n_I is not None:
        changes["populations.I.n"] = params.n_I
    if params.weight_cv is not None:
        changes["connectivity.weight_cv"] = params.weight_cv
    try:
        spec = spec.replace(**changes) if changes else spec
    except (KeyError, TypeError):
        raise SpecError("params.overrides", sorted(changes), "existing dotted spec fields, e.g. "
                        "connectivity.J_EE") from None
    out = params.model_dump(mode="json")
    out["circuit_spec"] = spec.model_dump(mode="json")
    return out


def circuit_for_seed(prepared: dict[str, Any], seed: int, **changes: Any) -> Circuit:
    """The circuit of one seed, with dotted spec ``changes`` (e.g. ``connectivity.J_EE``)."""
    spec = parse_spec(prepared["circuit_spec"]).replace(seed=int(seed), **changes)
    return build_circuit(spec, np.random.default_rng(int(seed)))


def pop_mean(r: np.ndarray, circuit: Circuit, pop: str) -> float:
    """Mean over the units of population ``pop`` (last axis)."""
    return float(np.mean(np.asarray(r)[..., circuit.population == pop]))


def linear_response(circuit: Circuit, r_star: np.ndarray, u: np.ndarray, du: np.ndarray) -> np.ndarray:
    """Predicted steady-state change ``dr = (I - D W)^-1 D B du`` at the fixed point ``r_star``.

    ``D = diag(phi'(W r* + B u + b))``; exact for piecewise-linear ``phi`` while no unit
    crosses threshold.
    """
    z = circuit.W @ r_star + circuit.B @ u + circuit.b
    d = circuit.phi_derivative(torch.as_tensor(z, dtype=torch.float64)).numpy()
    A = np.eye(circuit.n_units) - d[:, None] * circuit.W
    return np.linalg.solve(A, d * (circuit.B @ du))


def population_prediction(J_EE: float, J_EI: float, J_IE: float, J_II: float) -> dict[str, float]:
    """Two-population linear (threshold-linear, above threshold) steady-state sensitivities.

    ``r = M^-1 g`` with ``M = [[1 - J_EE, J_EI], [-J_IE, 1 + J_II]]``, determinant
    ``D = (1 - J_EE)(1 + J_II) + J_EI J_IE``. Returns ``dr_E/dg_E, dr_I/dg_E, dr_E/dg_I,
    dr_I/dg_I`` and ``D``; the ISN paradox is ``dr_I/dg_I = (1 - J_EE)/D < 0``.
    """
    D = (1 - J_EE) * (1 + J_II) + J_EI * J_IE
    return {"D": D, "dE_dgE": (1 + J_II) / D, "dI_dgE": J_IE / D, "dE_dgI": -J_EI / D,
            "dI_dgI": (1 - J_EE) / D}


def spiking_circuit_for_seed(prepared: dict[str, Any], seed: int, J_EE: float) -> Circuit:
    """The seed's circuit with ``J_EE`` set and the spiking pool size of the hypothesis (if given)."""
    changes: dict[str, Any] = {"connectivity.J_EE": J_EE}
    if prepared.get("spiking_pool_size") is not None:
        changes["spiking.pool_size"] = prepared["spiking_pool_size"]
    return circuit_for_seed(prepared, seed, **changes)


def circuit_hypothesis(**fields: Any) -> Hypothesis:
    """Preset of the circuit hypotheses: random circuits from a model file, the params prepared by
    :func:`prepare_circuit` (unless ``prepare`` is given); ``fields`` as :class:`Hypothesis`."""
    fields.setdefault("prepare", prepare_circuit)
    return Hypothesis(**fields)
