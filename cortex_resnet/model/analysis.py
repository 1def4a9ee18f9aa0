"""Linear analysis of a circuit at its fixed point: Jacobian, spectrum, stability, ISN.

The Jacobian of ``T dr/dt = -r + phi(W r + h)`` at ``r*`` is
``J = T^-1 (-I + D W)`` with ``D = diag(phi'(W r* + h))`` (units 1/ms). The
circuit is *inhibition-stabilised* when the excitatory subnetwork alone would
be unstable: the largest real part of ``eig(D_E W_EE)`` exceeds 1 (the E-E
loop gain), while the full circuit is stable.

Two degenerate cases are classified rather than reported as ordinary numbers
(``LinearAnalysis.condition``): *singular*, when ``I - D W`` is singular
(condition number above :data:`SINGULAR_CONDITION`: the steady state is not
unique or does not exist, so ``r*`` and the spectrum at it mean nothing), and
*marginal*, when the largest real part is zero to within rounding
(:data:`MARGINAL_TOL` times the spectral radius of ``J``): neither stable nor
unstable in the linear analysis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from cortex_resnet.model.circuit import Circuit
from cortex_resnet.errors import ConvergenceError
from cortex_resnet.model.fixedpoint import steady_state

__all__ = ["LinearAnalysis", "jacobian", "analyze", "pathway_change", "SINGULAR_CONDITION", "MARGINAL_TOL",
           "CONDITIONS"]

#: above this condition number of ``I - D W`` (float64: ``r*`` would keep < 4 digits) the circuit is singular
SINGULAR_CONDITION = 1e12
#: ``|max Re(eig)| <= MARGINAL_TOL * max |eig|`` is zero to within rounding: marginal
MARGINAL_TOL = 1e-9
CONDITIONS = ("stable", "unstable", "marginal", "singular")


@dataclass(frozen=True)
class LinearAnalysis:
    """Results of :func:`analyze` for one constant input.

    Attributes
    ----------
    r_star : (N,) steady-state rates
    jacobian : (N, N) Jacobian at ``r_star`` (1/ms)
    eigenvalues : (N,) complex eigenvalues of the Jacobian (1/ms)
    max_eig_real : largest real part (1/ms); < 0 means locally stable
    stable : ``max_eig_real < 0`` and neither marginal nor singular
    ee_loop_gain : largest real part of ``eig(D_E W_EE)`` (dimensionless)
    inhibition_stabilized : ``ee_loop_gain > 1`` and ``stable``
    condition : ``"stable"``, ``"unstable"``, ``"marginal"`` or ``"singular"`` (module docstring)
    condition_number : of ``I - D W`` (inf when exactly singular)
    ee_loop_gain_by_population : the same loop gain for each excitatory population on its own
        (``eig(D_X W_XX)``: e.g. per cortical layer); ISN per population when > 1 and ``stable``
    """

    r_star: np.ndarray
    jacobian: np.ndarray
    eigenvalues: np.ndarray
    max_eig_real: float
    stable: bool
    ee_loop_gain: float
    inhibition_stabilized: bool
    condition: str = "stable"
    condition_number: float = 1.0
    ee_loop_gain_by_population: dict[str, float] = field(default_factory=dict)

    @property
    def isn_by_population(self) -> dict[str, bool]:
        """Inhibition-stabilised per excitatory population (its own E-E loop unstable, circuit stable)."""
        return {k: bool(self.stable and g > 1.0) for k, g in self.ee_loop_gain_by_population.items()}

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return (f"LinearAnalysis({self.r_star.size} units: max Re(eig) {self.max_eig_real:.4g} /ms, stable={self.stable}, "
                f"ISN={self.inhibition_stabilized}, EE loop gain {self.ee_loop_gain:.3g}, {self.condition})")


def jacobian(circuit: Circuit, r_star: np.ndarray, u: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Jacobian (N, N) in 1/ms and the gains ``phi'`` (N,) at ``r_star`` for input ``u``."""
    u = np.broadcast_to(np.asarray(u, dtype=np.float64), (circuit.n_inputs,))
    z = circuit.W @ r_star + circuit.B @ u + circuit.b
    d = circuit.phi_derivative(torch.as_tensor(z, dtype=torch.float64)).numpy()
    J = (-np.eye(circuit.n_units) + d[:, None] * circuit.W) / circuit.tau_ms[:, None]
    return J, d


def analyze(circuit: Circuit, u: np.ndarray | float = 0.0, r_star: np.ndarray | None = None) -> LinearAnalysis:
    """Steady state (Newton), Jacobian, eigenvalues, stability and ISN test for one input."""
    if r_star is None:
        r_star = steady_state(circuit, np.broadcast_to(np.asarray(u, float), (circuit.n_inputs,))).numpy()[0]
    J, d = jacobian(circuit, r_star, u)
    if not np.all(np.isfinite(J)):
        raise ConvergenceError(f"linear analysis: the Jacobian at the steady state is not finite (max |r*| = "
                               f"{float(np.max(np.abs(r_star))):.3g}); the circuit has no finite steady state for "
                               "this input (simulate the dynamics instead)")
    eig = np.linalg.eigvals(J)
    max_re = float(np.max(eig.real))
    e = circuit.is_E
    ee = d[e][:, None] * circuit.W[np.ix_(e, e)]
    ee_gain = float(np.max(np.linalg.eigvals(ee).real)) if ee.size else 0.0
    by_pop = {}
    for name, sl in circuit.layout.items():
        if sl.stop > sl.start and circuit.population[sl.start] == "E":
            block = d[sl][:, None] * circuit.W[sl, sl]
            by_pop[name] = float(np.max(np.linalg.eigvals(block).real))
    cond = float(np.linalg.cond(np.eye(circuit.n_units) - d[:, None] * circuit.W))
    if not cond <= SINGULAR_CONDITION:  # inf/NaN too
        condition = "singular"
    elif abs(max_re) <= MARGINAL_TOL * float(np.max(np.abs(eig))):
        condition = "marginal"
    else:
        condition = "stable" if max_re < 0 else "unstable"
    stable = condition == "stable"
    return LinearAnalysis(r_star=r_star, jacobian=J, eigenvalues=eig, max_eig_real=max_re,
                          stable=stable, ee_loop_gain=ee_gain,
                          inhibition_stabilized=bool(stable and ee_gain > 1.0),
                          condition=condition, condition_number=cond, ee_loop_gain_by_population=by_pop)


def pathway_change(W_before: np.ndarray, W_after: np.ndarray, layout: dict[str, slice]) -> dict[str, dict[str, float]]:
    """How each (post, pre) pathway's weights changed, e.g. by training.

    For every block ``W[post, pre]`` that is not all zero before: ``J_before``/``J_after``, the
    mean over post units of the summed magnitudes from ``pre`` (the pathway's coupling ``J``,
    dimensionless or mV per Hz as ``W``); ``rel_J_change = (J_after - J_before) / J_before``
    (signed: the pathway grew or shrank); ``rel_change = ||W_after - W_before||_F / ||W_before||_F``
    over the block (any redistribution, also one that keeps ``J``). Keys ``"POST<-PRE"``.
    """
    W0, W1 = np.asarray(W_before, float), np.asarray(W_after, float)
    if W0.shape != W1.shape:
        raise ValueError(f"W_before {W0.shape} and W_after {W1.shape} differ in shape")
    out: dict[str, dict[str, float]] = {}
    for post, sp in layout.items():
        for pre, sq in layout.items():
            b0, b1 = W0[sp, sq], W1[sp, sq]
            if b0.size == 0 or not np.any(b0):
                continue
            j0, j1 = float(np.abs(b0).sum(1).mean()), float(np.abs(b1).sum(1).mean())
            out[f"{post}<-{pre}"] = {"J_before": j0, "J_after": j1, "rel_J_change": (j1 - j0) / j0,
                                     "rel_change": float(np.linalg.norm(b1 - b0) / np.linalg.norm(b0))}
    return out
