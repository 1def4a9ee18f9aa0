"""Test problems with exact solutions (the references the simulators are checked against).

Everything here is computed independently of :mod:`cortex_resnet.rate.simulator` and
:mod:`cortex_resnet.model.fixedpoint`: NumPy/SciPy in float64 only.

* Linear circuits (``phi(z) = g z``) with a constant input ``u``:
  ``T dr/dt = -r + g (W r + B u + b)`` has the exact solution
  ``r(t) = r* + expm(A t) (r0 - r*)`` with ``A = T^-1 (g W - I)`` and the steady
  state ``r* = (I - g W)^-1 g (B u + b)`` (:func:`linear_exact`, :func:`linear_steady_state`).
* Fixed-step integrators applied to a linear system are themselves linear maps
  ``r_{k+1} = M r_k + c`` whose matrices are known in closed form
  (:func:`discrete_map`): Euler ``M = I + dt A``, exponential Euler
  ``M = I + diag(1 - exp(-dt/tau)) (g W - I)``, RK4 the degree-4 Taylor polynomial
  of ``dt A``. Iterating them in float64 (:func:`discrete_solution`) gives the exact
  discrete trajectory, free of truncation error.
* Two-population (E-I) circuits with uniform dense weights, whose population
  equations are 2 x 2 and solvable by hand (:func:`ei_pair_spec`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.linalg

from cortex_resnet.model.circuit import Circuit, build_circuit
from cortex_resnet.model.spec import CircuitSpec, parse_spec

__all__ = [
    "linear_spec", "linear_circuit", "ei_pair_spec", "runaway_spec", "noisy_spec",
    "linear_parts", "linear_steady_state", "linear_exact", "discrete_map", "discrete_solution",
    "ei_pair_matrix", "max_rel_error", "PROBLEMS",
]


def _spec(n_E: int, n_I: int, tau_E: float, tau_I: float, transfer: dict[str, Any],
          connectivity: dict[str, Any], input_: dict[str, Any] | None = None,
          bias: dict[str, float] | None = None, noise: dict[str, float] | None = None,
          name: str = "test", seed: int = 0) -> CircuitSpec:
    return parse_spec({
        "name": name, "seed": seed,
        "populations": {"E": {"n": n_E, "tau_ms": tau_E, "transfer": transfer},
                        "I": {"n": n_I, "tau_ms": tau_I, "transfer": transfer}},
        "connectivity": connectivity,
        "input": input_ or {"n_inputs": 1, "gain_E": 1.0, "gain_I": 0.5},
        "bias": bias or {"E": 0.1, "I": 0.0},
        "noise": noise or {"sigma": 0.0},
    })


def linear_spec(n_E: int = 8, n_I: int = 4, *, J: tuple[float, float, float, float] = (0.5, 1.0, 1.0, 0.5),
                weight_cv: float = 0.3, gain: float = 1.0, n_inputs: int = 2,
                projection: str = "random", seed: int = 3) -> CircuitSpec:
    """A small linear E-I circuit with heterogeneous weights (so no symmetry hides a bug).

    ``J = (J_EE, J_EI, J_IE, J_II)``; with the defaults the population matrix has
    eigenvalues ``+-0.866 i`` (stable, not inhibition-stabilised), tau 20 / 10 ms.
    """
    J_EE, J_EI, J_IE, J_II = J
    return _spec(n_E, n_I, 20.0, 10.0, {"name": "linear", "gain": gain},
                 {"kind": "dense", "J_EE": J_EE, "J_EI": J_EI, "J_IE": J_IE, "J_II": J_II,
                  "weight_cv": weight_cv},
                 {"n_inputs": n_inputs, "gain_E": 1.0, "gain_I": 0.5, "projection": projection},
                 seed=seed, name="linear_test")


def linear_circuit(**kw: Any) -> Circuit:
    """:func:`linear_spec` built with its own seed."""
    return build_circuit(linear_spec(**kw))


def ei_pair_spec(J_EE: float, *, J_EI: float = 2.5, J_IE: float = 2.0, J_II: float = 1.0,
                 n_E: int = 8, n_I: int = 2, transfer: str = "relu",
                 bias: tuple[float, float] = (2.0, 1.0)) -> CircuitSpec:
    """Uniform dense E-I circuit with by-population input (channel 0 -> E, 1 -> I).

    Every unit of a population sees the same input, so the population rates obey
    the 2 x 2 linear system of :func:`ei_pair_matrix` while all units are above
    threshold (the biases keep them there for the J values used in the tests).
    """
    return _spec(n_E, n_I, 20.0, 10.0, {"name": transfer},
                 {"kind": "dense", "J_EE": J_EE, "J_EI": J_EI, "J_IE": J_IE, "J_II": J_II},
                 {"n_inputs": 2, "gain_E": 1.0, "gain_I": 1.0, "projection": "by_population"},
                 {"E": bias[0], "I": bias[1]}, name=f"ei_pair_JEE{J_EE}")


def ei_pair_matrix(J_EE: float, J_EI: float, J_IE: float, J_II: float) -> np.ndarray:
    """Population coupling matrix ``[[J_EE, -J_EI], [J_IE, -J_II]]`` (rows: onto E, onto I)."""
    return np.array([[J_EE, -J_EI], [J_IE, -J_II]], dtype=np.float64)


def runaway_spec(J_EE: float = 3.0) -> CircuitSpec:
    """ReLU circuit with strong excitation and no inhibition: rates grow like exp(t (J_EE - 1)/tau_E)."""
    return _spec(8, 2, 20.0, 10.0, {"name": "relu"},
                 {"kind": "dense", "J_EE": J_EE, "J_EI": 0.0, "J_IE": 1.0, "J_II": 0.0},
                 bias={"E": 1.0, "I": 0.0}, name="runaway")


def noisy_spec(sigma: float = 0.5, tau_noise_ms: float = 5.0) -> CircuitSpec:
    """A small ReLU circuit with Ornstein-Uhlenbeck input noise (for seed/chunk tests)."""
    return _spec(8, 4, 20.0, 10.0, {"name": "relu"},
                 {"kind": "dense", "J_EE": 1.5, "J_EI": 2.0, "J_IE": 1.5, "J_II": 1.0, "weight_cv": 0.2},
                 bias={"E": 0.5, "I": 0.2}, noise={"sigma": sigma, "tau_ms": tau_noise_ms},
                 name="noisy", seed=11)


# ----------------------------------------------------------------- exact solutions

def _gain(circuit: Circuit) -> float:
    fe, fi = circuit.transfer_E, circuit.transfer_I
    if fe.name != "linear" or fi.name != "linear" or fe.gain != fi.gain:
        raise ValueError("exact solutions need the same linear transfer in both populations")
    return float(fe.gain)


def linear_parts(circuit: Circuit, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``A`` (N, N) in 1/ms, forcing ``c = T^-1 g (B u + b)`` (N,) and ``g W`` for a constant ``u``."""
    g = _gain(circuit)
    gW = g * circuit.W
    A = (gW - np.eye(circuit.n_units)) / circuit.tau_ms[:, None]
    c = g * (circuit.B @ np.asarray(u, dtype=np.float64) + circuit.b) / circuit.tau_ms
    return A, c, gW


def linear_steady_state(circuit: Circuit, u: np.ndarray) -> np.ndarray:
    """``r* = (I - g W)^-1 g (B u + b)`` by ``numpy.linalg.solve``, (N,)."""
    g = _gain(circuit)
    rhs = g * (circuit.B @ np.asarray(u, dtype=np.float64) + circuit.b)
    return np.linalg.solve(np.eye(circuit.n_units) - g * circuit.W, rhs)


def linear_exact(circuit: Circuit, u: np.ndarray, times_ms: np.ndarray,
                 r0: np.ndarray | None = None) -> np.ndarray:
    """Exact trajectory ``r(t) = r* + expm(A t) (r0 - r*)`` at ``times_ms``, (T, N)."""
    A, _, _ = linear_parts(circuit, u)
    r_star = linear_steady_state(circuit, u)
    r0 = np.zeros(circuit.n_units) if r0 is None else np.asarray(r0, dtype=np.float64)
    return np.stack([r_star + scipy.linalg.expm(A * t) @ (r0 - r_star) for t in times_ms])


def discrete_map(circuit: Circuit, u: np.ndarray, dt_ms: float, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Exact one-step map ``r_{k+1} = M r_k + c`` of a fixed-step method on the linear circuit.

    For a linear autonomous system ``r' = A r + f`` an explicit Runge-Kutta method
    with stability polynomial ``P`` maps deviations from the fixed point as
    ``r_{k+1} - r* = P(dt A) (r_k - r*)``, with ``P(z) = 1 + z`` (Euler) and
    ``P(z) = sum_{j<=4} z^j / j!`` (RK4). Exponential Euler here uses
    ``alpha = 1 - exp(-dt/tau)`` in place of ``dt/tau``: ``M = I + diag(alpha) (g W - I)``.
    """
    A, _, gW = linear_parts(circuit, u)
    n = circuit.n_units
    eye = np.eye(n)
    if method == "euler":
        M = eye + dt_ms * A
    elif method == "expeuler":
        alpha = -np.expm1(-dt_ms / circuit.tau_ms)
        M = eye + alpha[:, None] * (gW - eye)
    elif method == "rk4":
        Z = dt_ms * A
        M, term = eye.copy(), eye.copy()
        for j in range(1, 5):
            term = term @ Z / j
            M = M + term
    else:
        raise ValueError(method)
    r_star = linear_steady_state(circuit, u)
    return M, r_star - M @ r_star


def discrete_solution(circuit: Circuit, u: np.ndarray, dt_ms: float, n_steps: int, method: str) -> np.ndarray:
    """The exact discrete trajectory from ``r = 0``: (n_steps + 1, N), float64."""
    M, c = discrete_map(circuit, u, dt_ms, method)
    out = np.zeros((n_steps + 1, circuit.n_units))
    for k in range(n_steps):
        out[k + 1] = M @ out[k] + c
    return out


# Named catalogue (name -> builder) for tests that run over every problem.
PROBLEMS = {
    "linear_heterogeneous": lambda: linear_circuit(),
    "linear_gain2_weak": lambda: linear_circuit(J=(0.2, 0.3, 0.3, 0.2), gain=2.0, seed=5),
    "linear_isn": lambda: linear_circuit(J=(1.5, 2.0, 2.0, 1.0), weight_cv=0.2, seed=7),
}


def max_rel_error(a: np.ndarray, ref: np.ndarray) -> float:
    """``max |a - ref| / max |ref|`` (a scale-aware error that is defined where ref crosses 0)."""
    return float(np.max(np.abs(np.asarray(a) - ref)) / max(np.max(np.abs(ref)), math.ulp(1.0)))
