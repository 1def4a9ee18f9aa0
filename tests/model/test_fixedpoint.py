"""Steady-state solvers (:mod:`cortex_resnet.model.fixedpoint`) against linear solves and residuals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortex_resnet.errors import ConvergenceError, UnknownNameError
from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.model.fixedpoint import anderson, steady_state
from cortex_resnet.model.spec import load_spec
from tests import problems as P

METHODS = ["newton", "anderson"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("problem", list(P.PROBLEMS))
def test_linear_circuit_steady_state_equals_linear_solve(problem, method):
    """r* = (I - gW)^-1 g (B u + b) by numpy.linalg.solve, for a batch of three inputs.
    The solvers stop at residual <= 1e-12 (1 + |r|); ||(I - gW)^-1|| <= ~10 here turns that
    into <= 1e-10 relative."""
    circuit = P.PROBLEMS[problem]()
    u = np.array([[1.0, 0.0], [0.3, -0.2], [2.0, 1.0]])
    r = steady_state(circuit, u, method=method).numpy()
    for b in range(u.shape[0]):
        ref = P.linear_steady_state(circuit, u[b])
        assert P.max_rel_error(r[b], ref) <= 1e-10


@pytest.mark.parametrize("method", METHODS)
def test_nonlinear_steady_state_satisfies_the_fixed_point_equation(method):
    """SSN (power law, rates in Hz): the residual r - phi(W r + B u + b) evaluated
    independently in NumPy is <= 1e-9 (1 + max r); the solvers stop at 1e-12 (1 + max |r|) in
    their own float64 evaluation, so only summation-order rounding separates the two."""
    from pathlib import Path

    circuit = build_circuit(load_spec(Path(__file__).resolve().parents[2] / "models" / "ssn.toml"))
    u = np.array([[2.0], [10.0], [40.0]])
    r = steady_state(circuit, u, method=method).numpy()
    k, n = 0.04, 2.0
    z = r @ circuit.W.T + u @ circuit.B.T + circuit.b
    residual = r - k * np.maximum(z, 0) ** n
    assert np.max(np.abs(residual)) <= 1e-9 * (1 + r.max())
    assert np.all(np.diff(r[:, circuit.is_E].mean(axis=1)) > 0)  # more input, more E rate


def test_newton_and_anderson_agree_on_a_relu_isn():
    circuit = build_circuit(P.ei_pair_spec(2.0))
    u = np.array([[0.0, 0.0], [0.0, 0.3], [0.5, 0.0]])
    a = steady_state(circuit, u, method="newton")
    b = steady_state(circuit, u, method="anderson")
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_no_fixed_point_raises_convergence_error(method):
    """r = relu(W r + 1) with J_EE = 3 and no inhibition has no fixed point (r = 3 r + 1 > r
    for every r >= 0): the solver must say so, with the residual reached."""
    circuit = build_circuit(P.runaway_spec())
    with pytest.raises(ConvergenceError) as info:
        steady_state(circuit, 1.0, method=method, max_iter=50)
    err = info.value
    assert "did not converge" in str(err) and "max_eig_real" in str(err)
    assert err.iterations is not None and err.iterations >= 1
    assert err.residual is None or not err.residual <= 1e-6


def test_unknown_method_lists_names():
    with pytest.raises(UnknownNameError) as info:
        steady_state(P.linear_circuit(), 1.0, method="broyden_x")
    assert set(METHODS) <= set(info.value.known)


def test_anderson_solves_a_contraction():
    """r = cos(r) (the Dottie number 0.7390851332151607, a contraction): batched, 1e-12."""
    r0 = torch.zeros(3, 4, dtype=torch.float64)
    out = anderson(torch.cos, r0, tol=1e-14)
    assert out.converged
    torch.testing.assert_close(out.r, torch.full_like(r0, 0.7390851332151607), rtol=0, atol=1e-12)


@pytest.mark.parametrize("u_shape", [(), (2,), (1, 2)])
def test_input_shapes(u_shape):
    circuit = P.linear_circuit()
    r = steady_state(circuit, np.ones(u_shape))
    assert r.shape == (1, circuit.n_units)
    np.testing.assert_allclose(r[0].numpy(), P.linear_steady_state(circuit, np.ones(2)), rtol=1e-10)


def test_anderson_without_convergence_returns_its_lowest_residual_iterate():
    """Issue 12: r = r + 1 + 0.5 sin(r) has no fixed point (residual 1 + 0.5 sin r >= 0.5), so Anderson
    cannot converge; it must return the iterate with the lowest residual among those it evaluated
    (recorded here independently of the solver), with that residual, not a later iterate."""
    seen: list[tuple[float, torch.Tensor]] = []

    def g(r: torch.Tensor) -> torch.Tensor:
        out = r + 1.0 + 0.5 * torch.sin(r)
        seen.append((float((out - r).abs().max()), r.clone()))
        return out

    out = anderson(g, torch.zeros(1, 3, dtype=torch.float64), m=3, max_iter=40)
    assert not out.converged
    residuals = [s[0] for s in seen]
    k = int(np.argmin(residuals))
    assert k < len(seen) - 1, "the test needs a best iterate that is not the last one"
    assert residuals[k] < residuals[-1]
    assert out.residual == residuals[k]
    assert torch.equal(out.r, seen[k][1])
    # the reported residual is the returned iterate's own residual
    assert float((out.r + 1.0 + 0.5 * torch.sin(out.r) - out.r).abs().max()) == pytest.approx(out.residual, rel=1e-12)
