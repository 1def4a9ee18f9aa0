"""Shared pieces of the circuit-based hypotheses: model files, per-seed circuits, linear response.

A seed is an independent random circuit: the model file's spec with
``seed = SEED`` (weights drawn with ``weight_cv`` heterogeneity, random
projections) built with ``numpy.random.default_rng(SEED)``.

Named circuits (populations other than the E/I shorthand, e.g. E, PV, SOM or the
eight populations of a cortical column) are addressed by population name: the
recurrent excitation of an excitatory population ``X`` is the pathway
``connectivity.pathways.X.X.J`` (:func:`self_coupling_field`), extra drive to a
population is extra bias on its units (:func:`bias_vector`).
"""

from __future__ import annotations

from dataclasses import replace
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
           "linear_response", "population_prediction", "circuit_hypothesis", "self_coupling_field", "check_named",
           "bias_vector", "with_extra_channel", "threshold_linear_prediction", "excitatory_names"]


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
    out["named"] = not spec.populations.is_shorthand
    return out


def circuit_for_seed(prepared: dict[str, Any], seed: int, **changes: Any) -> Circuit:
    """The circuit of one seed, with dotted spec ``changes`` (e.g. ``connectivity.J_EE``)."""
    spec = parse_spec(prepared["circuit_spec"]).replace(seed=int(seed), **changes)
    return build_circuit(spec, np.random.default_rng(int(seed)))


def pop_mean(r: np.ndarray, circuit: Circuit, pop: str) -> float:
    """Mean over the units of population ``pop`` (last axis): a population name, or ``"E"``/``"I"``
    (every excitatory/inhibitory unit) where no population has that name."""
    return float(np.mean(np.asarray(r)[..., circuit.select(pop)]))


def excitatory_names(spec_data: dict[str, Any]) -> list[str]:
    """The excitatory populations of a prepared circuit spec, in file order."""
    pops = parse_spec(spec_data).populations
    return [k for k in pops.names if pops.is_excitatory(k)]


def self_coupling_field(prepared: dict[str, Any], pop: str) -> str:
    """The dotted spec field of population ``pop``'s recurrent self-excitation: ``connectivity.J_EE``
    (E/I shorthand) or ``connectivity.pathways.POP.POP.J`` (named circuits)."""
    return f"connectivity.pathways.{pop}.{pop}.J" if prepared["named"] else "connectivity.J_EE"


def check_named(prepared: dict[str, Any], field: str, names: list[str], kind: str) -> None:
    """Raise :class:`SpecError` (``params.FIELD``) unless every name is a population of type ``kind``
    (``excitatory``/``inhibitory``) with, for excitatory ones, a self-coupling pathway in the model."""
    spec = parse_spec(prepared["circuit_spec"])
    pops = spec.populations
    allowed = [k for k in pops.names if pops.type_of(k) == kind]
    for name in names:
        if name not in allowed:
            raise SpecError(f"params.{field}", name, f"one of the model's {kind} populations {allowed}")
        if kind == "excitatory" and prepared["named"] and name not in spec.connectivity.pathways.get(name, {}):
            raise SpecError(f"params.{field}", name, f"a population with recurrent self-excitation in the model "
                            f"([connectivity.pathways.{name}] {name} = {{J = ...}})")


def bias_vector(circuit: Circuit, names: list[str], amount: float) -> np.ndarray:
    """(N,) ``amount`` on the units of the populations ``names``, 0 elsewhere (extra drive)."""
    out = np.zeros(circuit.n_units)
    for name in names:
        out[circuit.select(name)] = amount
    return out


def with_extra_channel(circuit: Circuit, column: np.ndarray) -> Circuit:
    """The circuit with one more input channel (the last) projecting ``column`` (N,) onto its units."""
    return replace(circuit, B=np.hstack([circuit.B, np.asarray(column, float)[:, None]]))


def threshold_linear_prediction(circuit: Circuit, r: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Steady state ``(I - D W)^-1 D h`` of a threshold-linear circuit (relu/linear transfers; ``D`` =
    gain on units active at ``r``, 0 on silent ones); NaN for other transfer functions."""
    if any(t.name not in ("relu", "linear") for t in circuit.transfers.values()):
        return np.full(circuit.n_units, np.nan)
    d = np.zeros(circuit.n_units)
    for name, sl in circuit.layout.items():
        t = circuit.transfers[name]
        active = np.ones(sl.stop - sl.start, bool) if t.name == "linear" else (circuit.W[sl] @ r + h[sl] > 0)
        d[sl] = t.params().get("gain", 1.0) * active
    return np.linalg.solve(np.eye(circuit.n_units) - d[:, None] * circuit.W, d * h)


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
    if prepared.get("named"):
        raise SpecError("params.backends", "spiking", "['rate'] for a circuit of named populations (the "
                        "spiking rows of this hypothesis use the E/I shorthand's J_EE)")
    changes: dict[str, Any] = {"connectivity.J_EE": J_EE}
    if prepared.get("spiking_pool_size") is not None:
        changes["spiking.pool_size"] = prepared["spiking_pool_size"]
    return circuit_for_seed(prepared, seed, **changes)


def circuit_hypothesis(**fields: Any) -> Hypothesis:
    """Preset of the circuit hypotheses: random circuits from a model file, the params prepared by
    :func:`prepare_circuit` (unless ``prepare`` is given); ``fields`` as :class:`Hypothesis`."""
    fields.setdefault("prepare", prepare_circuit)
    return Hypothesis(**fields)
