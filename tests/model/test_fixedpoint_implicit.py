"""The equilibrium layer: Anderson + damped fallback, implicit gradients (gradcheck, = BPTT), O(1) memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortex_resnet.bench.bridge import saved_tensor_bytes
from cortex_resnet.bridge import unroll
from cortex_resnet.errors import ConvergenceError, SpecError
from cortex_resnet.model.fixedpoint import (
    anderson,
    implicit_fixed_point,
    solve_fixed_point,
    steady_state,
)
from tests.bridge_cases import DT_MS, case_circuit, case_input, one_thread  # noqa: F401 (autouse)


def _contraction(n: int, radius: float, seed: int) -> torch.Tensor:
    A = np.random.default_rng(seed).standard_normal((n, n))
    return torch.as_tensor(A * radius / np.max(np.abs(np.linalg.eigvals(A))))


def test_solves_a_linear_map_exactly():
    A, c = _contraction(20, 0.9, 0), torch.linspace(-1, 1, 20, dtype=torch.float64).expand(3, 20)
    res = solve_fixed_point(lambda r: r @ A.T + c, torch.zeros(3, 20, dtype=torch.float64), tol=1e-13)
    exact = np.linalg.solve(np.eye(20) - A.numpy(), c[0].numpy())
    assert res.converged and np.max(np.abs(res.r[0].numpy() - exact)) <= 1e-10


def test_damped_fallback_rescues_a_failed_anderson():
    """Anderson extrapolates into log's negative domain (NaN); damping converges from the start."""
    g = lambda r: 3 - 2 * torch.log(r + 1) * torch.sqrt(r)  # noqa: E731
    r0 = torch.full((1, 1), 3.0, dtype=torch.float64)
    assert not anderson(g, r0, tol=1e-12).converged
    res = solve_fixed_point(g, r0, tol=1e-12)
    assert res.converged and abs(float(g(res.r) - res.r)) <= 1e-10


def test_failure_report_names_both_stages():
    with pytest.raises(ConvergenceError) as err:
        solve_fixed_point(lambda r: r + 1.0, torch.zeros(2, 3, dtype=torch.float64), max_iter=50, what="demo")
    msg = str(err.value)
    assert msg.startswith("demo") and "Anderson" in msg and "damped" in msg and "max_iter" in msg
    assert err.value.residual == pytest.approx(1.0)  # g(r) - r = 1 everywhere


def test_non_raising_mode_returns_the_best_iterate():
    res = solve_fixed_point(lambda r: r + 1.0, torch.zeros(1, 2, dtype=torch.float64), max_iter=5,
                            raise_on_fail=False)
    assert not res.converged and np.isfinite(res.residual)


@pytest.mark.parametrize("direct", [False, True])
def test_gradcheck_implicit_fixed_point(direct):
    """Gradients of r* = tanh(W r* + h) w.r.t. W and h against finite differences (float64)."""
    W0, h0 = _contraction(5, 0.6, 1), torch.linspace(-0.5, 0.8, 10, dtype=torch.float64).reshape(2, 5)

    def f(W, h):
        g = lambda r: torch.tanh(r @ W.T + h)  # noqa: E731
        jac = None
        if direct:
            def jac(r):
                d = 1 - torch.tanh(r @ W.T + h) ** 2
                return d[:, :, None] * W
        return implicit_fixed_point(g, torch.zeros_like(h), tol=1e-14, max_iter=300, jacobian=jac)

    assert torch.autograd.gradcheck(f, (W0.clone().requires_grad_(True), h0.clone().requires_grad_(True)),
                                    eps=1e-6, atol=1e-7, rtol=1e-5)


class _Steady(torch.nn.Module):
    def __init__(self, net, backward: str):
        super().__init__()
        self.net, self.backward = net, backward

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.net.steady_state(u, tol=1e-14, backward=self.backward)


@pytest.mark.parametrize("backward", ["iterative", "direct"])
def test_gradcheck_steady_state_layer_of_a_net(backward):
    c = case_circuit("dense_relu", **{"populations.E.n": 5, "populations.I.n": 3,
                                      "populations.E.transfer": {"name": "tanh"},
                                      "populations.I.transfer": {"name": "tanh"}})
    layer = _Steady(unroll(c, 4, DT_MS, dtype=torch.float64), backward)

    def f(theta, b, u):
        return torch.func.functional_call(layer, {"net.W.theta_T": theta, "net.b": b}, (u,), strict=False)

    inputs = (layer.net.W.theta_T.detach().clone().requires_grad_(True),
              layer.net.b.detach().clone().requires_grad_(True),
              case_input("dense_relu", batch=2).requires_grad_(True))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("backward", ["iterative", "direct"])
def test_implicit_gradient_equals_backprop_through_a_long_unroll(backward):
    """BPTT through 1500 Euler steps (1.5 s, slowest decay 0.018/ms: converged to ~1e-12) vs the IFT."""
    c = case_circuit("dense_relu")
    u = case_input("dense_relu")
    w = torch.linspace(-1, 1, c.n_units, dtype=torch.float64)
    net = unroll(c, 1500, 1.0, dtype=torch.float64)
    ((net(u)[-1] * w).sum()).backward()
    bptt = {k: p.grad.clone() for k, p in net.named_parameters()}
    net.zero_grad()
    r_star = net.steady_state(u, backward=backward)
    np.testing.assert_allclose(r_star.detach().numpy(), steady_state(c, u.numpy()).numpy(), atol=1e-9)
    (r_star * w).sum().backward()
    for k, p in net.named_parameters():
        scale = float(bptt[k].abs().max())
        assert float((p.grad - bptt[k]).abs().max()) <= 1e-7 * max(scale, 1.0), k


def test_memory_is_flat_in_the_number_of_iterations():
    """Saved-for-backward bytes: constant for the equilibrium layer, linear in K for BPTT."""
    c = case_circuit("dense_relu")
    u = case_input("dense_relu")
    net = unroll(c, 10, DT_MS, dtype=torch.float64)

    def steady(k):
        return lambda: net.steady_state(u, tol=0.0, max_iter=k, raise_on_fail=False, fallback=False)

    few, _ = saved_tensor_bytes(steady(10))
    many, _ = saved_tensor_bytes(steady(200))
    assert few == many
    b10, _ = saved_tensor_bytes(lambda: unroll(c, 10, DT_MS, dtype=torch.float64)(u))
    b200, _ = saved_tensor_bytes(lambda: unroll(c, 200, DT_MS, dtype=torch.float64)(u))
    assert b200 > 10 * b10 / 2 and many < b200 / 10


def test_no_graph_without_grad():
    net = unroll(case_circuit("dense_relu"), 3, DT_MS, dtype=torch.float64)
    with torch.no_grad():
        r = net.steady_state(case_input("dense_relu"))
    assert r.grad_fn is None


def test_pulse_mode_equilibrium_is_the_free_circuit():
    c = case_circuit("dense_relu")
    net = unroll(c, 3, DT_MS, input_mode="pulse", dtype=torch.float64)
    with torch.no_grad():
        r = net.steady_state(case_input("dense_relu"))
    np.testing.assert_allclose(r.numpy(), steady_state(c, np.zeros((3, c.n_inputs))).numpy(), atol=1e-9)


@pytest.mark.parametrize("kwargs", [{"variant": "untied"}, {"norm": "layer"}])
def test_steady_state_needs_a_tied_net(kwargs):
    net = unroll(case_circuit("dense_relu"), 3, DT_MS, **kwargs, dtype=torch.float64)
    with pytest.raises(SpecError, match="tied"):
        net.steady_state(case_input("dense_relu"))
