"""Fixed-point solvers for the steady state ``r* = phi(W r* + B u + b)``.

Two batched solvers in torch: damped Newton (exact Jacobian, quadratic
convergence; for circuits up to a few thousand units) and Anderson
acceleration (Jacobian-free, for large circuits and the equilibrium layer of
the bridge). Non-convergence raises :class:`ConvergenceError` with the
residual reached and what to try.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .circuit import Circuit
from .errors import ConvergenceError, UnknownNameError

__all__ = ["FixedPointResult", "anderson", "newton_steady_state", "steady_state"]


@dataclass(frozen=True)
class FixedPointResult:
    """Solution ``r`` (batch, N), iterations used, final max residual ``|g(r) - r|``."""

    r: torch.Tensor
    iterations: int
    residual: float
    converged: bool


def anderson(g: Callable[[torch.Tensor], torch.Tensor], r0: torch.Tensor, *, m: int = 5,
             tol: float = 1e-10, max_iter: int = 500, beta: float = 1.0,
             lam: float = 1e-10) -> FixedPointResult:
    """Anderson acceleration for ``r = g(r)``, batched over the first axis.

    Parameters
    ----------
    g : the map, (batch, N) -> (batch, N)
    r0 : (batch, N) initial guess
    m : history length
    tol : stop when ``max |g(r) - r| <= tol * (1 + max |r|)``
    beta : mixing (1 = undamped); the solver halves it on a residual blow-up
    """
    bsz, n = r0.shape
    mm = min(m, max(n, 1))
    X = torch.zeros(bsz, mm, n, dtype=r0.dtype, device=r0.device)
    F = torch.zeros_like(X)
    X[:, 0], F[:, 0] = r0, g(r0)
    res = float((F[:, 0] - X[:, 0]).abs().max())
    if mm == 1 or res <= tol * (1 + float(r0.abs().max())):
        return FixedPointResult(F[:, 0], 1, res, True)
    X[:, 1], F[:, 1] = F[:, 0], g(F[:, 0])
    H = torch.zeros(bsz, mm + 1, mm + 1, dtype=r0.dtype, device=r0.device)
    H[:, 0, 1:] = H[:, 1:, 0] = 1
    y = torch.zeros(bsz, mm + 1, 1, dtype=r0.dtype, device=r0.device)
    y[:, 0] = 1
    best = (float("inf"), r0)
    k = 2
    for k in range(2, max_iter + 2):
        nk = min(k, mm)
        G = F[:, :nk] - X[:, :nk]
        H[:, 1:nk + 1, 1:nk + 1] = G @ G.transpose(1, 2) + lam * torch.eye(nk, dtype=r0.dtype, device=r0.device)
        alpha = torch.linalg.solve(H[:, :nk + 1, :nk + 1], y[:, :nk + 1])[:, 1:nk + 1, 0]
        new = beta * (alpha[:, None] @ F[:, :nk])[:, 0] + (1 - beta) * (alpha[:, None] @ X[:, :nk])[:, 0]
        X[:, k % mm] = new
        F[:, k % mm] = g(new)
        res = float((F[:, k % mm] - new).abs().max())
        if not np.isfinite(res):
            break
        if res < best[0]:
            best = (res, F[:, k % mm])
        if res <= tol * (1 + float(new.abs().max())):
            return FixedPointResult(F[:, k % mm], k, res, True)
    return FixedPointResult(best[1], k, best[0], False)


def newton_steady_state(circuit: Circuit, h: torch.Tensor, r0: torch.Tensor, W: torch.Tensor, *,
                        tol: float = 1e-12, max_iter: int = 100) -> FixedPointResult:
    """Damped Newton on ``G(r) = r - phi(W r + h)``, Jacobian ``I - diag(phi') W``."""
    eye = torch.eye(circuit.n_units, dtype=h.dtype, device=h.device)
    r = r0
    res = float("inf")
    for it in range(1, max_iter + 1):
        z = r @ W.T + h
        G = r - circuit.phi(z)
        res = float(G.abs().max())
        if not np.isfinite(res):
            break
        if res <= tol * (1 + float(r.abs().max())):
            return FixedPointResult(r, it, res, True)
        J = eye - circuit.phi_derivative(z)[:, :, None] * W[None]
        try:
            delta = torch.linalg.solve(J, G.unsqueeze(-1)).squeeze(-1)
        except RuntimeError:  # singular Jacobian: fall back to a damped fixed-point step
            delta = 0.5 * G
        step = 1.0
        norm0 = G.norm(dim=-1).max()
        for _ in range(30):  # backtracking line search on the residual norm
            cand = r - step * delta
            Gc = cand - circuit.phi(cand @ W.T + h)
            if torch.isfinite(Gc).all() and Gc.norm(dim=-1).max() < norm0 * (1 - 1e-4 * step) + 1e-300:
                break
            step *= 0.5
        r = cand
    return FixedPointResult(r, max_iter, res, False)


_METHODS = ("newton", "anderson")


def steady_state(circuit: Circuit, u: torch.Tensor | np.ndarray | float, *, method: str = "newton",
                 dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu",
                 r0: torch.Tensor | None = None, tol: float = 1e-12, max_iter: int = 200) -> torch.Tensor:
    """Solve ``r* = phi(W r* + B u + b)`` for a batch of constant inputs.

    Parameters
    ----------
    circuit : the circuit
    u : (batch, n_inputs), (n_inputs,) or a scalar (same value on every input channel)
    method : ``"newton"`` (exact, N up to a few thousand) or ``"anderson"``

    Returns
    -------
    torch.Tensor
        (batch, N) steady-state rates.

    Raises
    ------
    ConvergenceError
        With the residual reached; the circuit may have no stable fixed point
        (check ``max_eig_real``) or need a better initial guess ``r0``.
    """
    if method not in _METHODS:
        raise UnknownNameError("steady-state method", method, list(_METHODS), field="method")
    W = torch.as_tensor(circuit.W, dtype=dtype, device=device)
    B = torch.as_tensor(circuit.B, dtype=dtype, device=device)
    b = torch.as_tensor(circuit.b, dtype=dtype, device=device)
    u_t = torch.as_tensor(np.array(u, dtype=np.float64), dtype=dtype, device=device)  # a copy: u may be a read-only view
    if u_t.ndim == 0:
        u_t = u_t.expand(1, circuit.n_inputs)
    elif u_t.ndim == 1:
        u_t = u_t[None]
    h = u_t @ B.T + b
    r_init = circuit.phi(h) if r0 is None else r0.to(dtype=dtype, device=device)
    if method == "newton":
        out = newton_steady_state(circuit, h, r_init, W, tol=tol, max_iter=max_iter)
    else:
        out = anderson(lambda r: circuit.phi(r @ W.T + h), r_init, tol=tol, max_iter=max_iter)
    if not out.converged:
        raise ConvergenceError(
            f"steady-state solver '{method}' did not converge after {out.iterations} iterations "
            f"(max residual {out.residual:.3g}); the circuit may have no stable fixed point for this "
            "input (check max_eig_real, or simulate the dynamics instead), or try the other method",
            residual=out.residual, iterations=out.iterations)
    return out.r
