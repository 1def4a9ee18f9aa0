"""Fixed-point solvers for the steady state ``r* = phi(W r* + B u + b)``.

Two batched solvers in torch: damped Newton (exact Jacobian, quadratic
convergence; for circuits up to a few thousand units) and Anderson
acceleration (Jacobian-free, for large circuits and the equilibrium layer of
the bridge). Non-convergence raises :class:`ConvergenceError` with the
residual reached and what to try.

The equilibrium layer (:func:`implicit_fixed_point`) solves ``r* = g(r*)`` without
recording a graph (Anderson, then a damped fallback), then attaches one
application of ``g`` to the graph and replaces the gradient arriving at ``r*``
by the solution of ``(I - J^T) v = dL/dr*`` (``J = dg/dr`` at ``r*``; implicit
function theorem). Training at equilibrium so costs O(1) memory in depth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from cortex_resnet.model.circuit import Circuit
from cortex_resnet.errors import ConvergenceError, UnknownNameError

__all__ = ["FixedPointResult", "anderson", "newton_steady_state", "steady_state", "solve_fixed_point",
           "implicit_fixed_point"]


@dataclass(frozen=True)
class FixedPointResult:
    """Solution ``r`` (batch, N), iterations used, final max residual ``|g(r) - r|``."""

    r: torch.Tensor
    iterations: int
    residual: float
    converged: bool

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return (f"FixedPointResult(r {tuple(self.r.shape)}, {self.iterations} iterations, residual {self.residual:.3g}, "
                f"converged={self.converged})")


def _anderson_mix(X: torch.Tensor, F: torch.Tensor, H: torch.Tensor, y: torch.Tensor, nk: int, lam: float,
                  beta: float) -> torch.Tensor | None:
    """The next Anderson iterate from the ``nk`` newest (x, g(x)) pairs; None where the
    least-squares system is singular."""
    G = F[:, :nk] - X[:, :nk]
    GG = G @ G.transpose(1, 2)
    # Tikhonov term relative to the residuals' scale (an absolute lam would swamp
    # G G^T near convergence and stall the method into plain averaging)
    ridge = (lam * GG.diagonal(dim1=1, dim2=2).mean(dim=1)).clamp_min(torch.finfo(X.dtype).eps ** 2)
    H[:, 1:nk + 1, 1:nk + 1] = GG + ridge[:, None, None] * torch.eye(nk, dtype=X.dtype, device=X.device)
    try:
        alpha = torch.linalg.solve(H[:, :nk + 1, :nk + 1], y[:, :nk + 1])[:, 1:nk + 1, 0]
    except RuntimeError:
        return None
    return beta * (alpha[:, None] @ F[:, :nk])[:, 0] + (1 - beta) * (alpha[:, None] @ X[:, :nk])[:, 0]


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

    Returns
    -------
    FixedPointResult
        The converged iterate, or, without convergence, the iterate with the lowest residual
        ``max |g(r) - r|`` seen (that value in ``residual``), not the last one.
    """
    bsz, n = r0.shape
    mm = max(2, m)  # (a history of 1 would be a plain iteration; m > n is fine: the ridge regularises)
    X = torch.zeros(bsz, mm, n, dtype=r0.dtype, device=r0.device)
    F = torch.zeros_like(X)
    X[:, 0], F[:, 0] = r0, g(r0)
    res = float((F[:, 0] - X[:, 0]).abs().max())
    if res <= tol * (1 + float(r0.abs().max())):
        return FixedPointResult(F[:, 0].clone(), 1, res, True)
    X[:, 1], F[:, 1] = F[:, 0], g(F[:, 0])
    H = torch.zeros(bsz, mm + 1, mm + 1, dtype=r0.dtype, device=r0.device)
    H[:, 0, 1:] = H[:, 1:, 0] = 1
    y = torch.zeros(bsz, mm + 1, 1, dtype=r0.dtype, device=r0.device)
    y[:, 0] = 1
    # the lowest-residual iterate so far and its residual |g(x) - x|, as a copy: X is a ring
    # buffer whose slots are overwritten later
    best = (res, r0.clone()) if np.isfinite(res) else (float("inf"), r0)
    res1 = float((F[:, 1] - X[:, 1]).abs().max())
    if res1 < best[0]:
        best = (res1, X[:, 1].clone())
    k = 2
    for k in range(2, max_iter + 2):
        new = _anderson_mix(X, F, H, y, min(k, mm), lam, beta)
        if new is None:  # singular (e.g. a repeated iterate): stop with the best so far
            break
        X[:, k % mm] = new
        F[:, k % mm] = g(new)
        res = float((F[:, k % mm] - new).abs().max())
        if not np.isfinite(res):
            break
        if res < best[0]:
            best = (res, new.clone())
        if res <= tol * (1 + float(new.abs().max())):
            return FixedPointResult(F[:, k % mm].clone(), k, res, True)  # a copy: not the whole buffer
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


# --------------------------------------------------------------------------- equilibrium layer

def _damped(g: Callable[[torch.Tensor], torch.Tensor], r: torch.Tensor, tol: float, max_iter: int,
            beta: float) -> tuple[FixedPointResult, float]:
    """``r <- r + beta (g(r) - r)``; ``beta`` halves (down to 1/64) when the residual blows up or
    stops improving for 25 iterations (an overshooting oscillation), restarting from the best point."""
    best = (float("inf"), r)
    res = float("inf")
    last_gain = 0
    for it in range(1, max_iter + 1):
        gr = g(r)
        res = float((gr - r).abs().max())
        if not np.isfinite(res) or res > 1e3 * best[0] or it - last_gain > 25:
            beta *= 0.5
            if beta < 1.0 / 64:
                break
            r, last_gain = best[1], it
            continue
        if res < best[0]:
            best, last_gain = (res, r), it
        if res <= tol * (1 + float(r.abs().max())):
            return FixedPointResult(gr, it, res, True), beta
        r = r + beta * (gr - r)
    return FixedPointResult(best[1], max_iter, best[0], False), beta


def solve_fixed_point(g: Callable[[torch.Tensor], torch.Tensor], r0: torch.Tensor, *, tol: float = 1e-10,
                      max_iter: int = 500, m: int = 5, beta: float = 0.5, fallback: bool = True,
                      raise_on_fail: bool = True, what: str = "fixed point") -> FixedPointResult:
    """Solve ``r = g(r)`` (batched): Anderson acceleration, then a damped iteration if it fails.

    Parameters
    ----------
    g : the map, (batch, N) -> (batch, N)
    r0 : (batch, N) initial guess
    tol : stop when ``max |g(r) - r| <= tol * (1 + max |r|)``
    max_iter : iterations per stage (Anderson, then the damped fallback)
    m : Anderson history length
    beta : initial damping of the fallback ``r <- r + beta (g(r) - r)``
    fallback : run the damped iteration when Anderson fails
    raise_on_fail : raise (default) or return the best non-converged result
    what : name used in the failure report

    Raises
    ------
    ConvergenceError
        Reports both stages' residuals and iteration counts and what to try.
    """
    out = anderson(g, r0, m=m, tol=tol, max_iter=max_iter)
    if out.converged:
        return out
    report = f"Anderson (m = {m}) reached residual {out.residual:.3g} after {out.iterations} iterations"
    if fallback:
        start = out.r if bool(torch.isfinite(out.r).all()) else r0
        damped, beta_end = _damped(g, start, tol, max_iter, beta)
        if damped.converged:
            return FixedPointResult(damped.r, out.iterations + damped.iterations, damped.residual, True)
        report += (f"; the damped iteration (beta {beta:g} -> {beta_end:g}) reached {damped.residual:.3g} "
                   f"after {damped.iterations}")
        if damped.residual < out.residual:
            out = FixedPointResult(damped.r, out.iterations + damped.iterations, damped.residual, False)
    if not raise_on_fail:
        return out
    raise ConvergenceError(
        f"{what}: no convergence to tol {tol:g}: {report}. The map may have no stable fixed point for "
        "this input (rates running away, or an oscillation: check max_eig_real with analyze()), or it "
        "converges slowly: raise max_iter, loosen tol, or start closer (r0).",
        residual=out.residual, iterations=out.iterations)


MAX_BACKWARD_CONDITION = 1e10  # beyond this, float64 implicit gradients lose most digits


def _ill_conditioned(J: torch.Tensor, cond: float) -> ConvergenceError:
    rho = float(torch.linalg.eigvals(J).abs().max())
    return ConvergenceError(
        f"implicit backward is ill-conditioned: cond(I - J^T) = {cond:.3g} (limit {MAX_BACKWARD_CONDITION:.0e}), "
        f"spectral radius of J = dg/dr at the equilibrium = {rho:.6g}"
        + (" (>= 1: the equilibrium is not an attractor, its gradient is undefined)" if rho >= 1 - 1e-9 else "")
        + ". Shrink the weights' spectral radius (balanced init, weight decay), or train with BPTT (unroll).",
        residual=cond)


Hook = Callable[[torch.Tensor | None], torch.Tensor | None]


def _direct_backward(jacobian: Callable[[torch.Tensor], torch.Tensor], r_star: torch.Tensor) -> Hook:
    """``dL/dr* -> v`` solving ``(I - J^T) v = dL/dr*`` directly with ``J = jacobian(r*)``."""
    def hook(grad: torch.Tensor | None) -> torch.Tensor | None:
        if grad is None:  # an undefined gradient stays undefined
            return None
        with torch.no_grad():
            J = jacobian(r_star)
            eye = torch.eye(J.shape[-1], dtype=J.dtype, device=J.device)
            A = eye - J.transpose(-1, -2)
            cond = float(torch.linalg.cond(A).max())
            if not math.isfinite(cond) or cond > MAX_BACKWARD_CONDITION:
                raise _ill_conditioned(J, cond)
            v = torch.linalg.solve(A, grad.unsqueeze(-1)).squeeze(-1)
            if not bool(torch.isfinite(v).all()):
                raise _ill_conditioned(J, cond)
            return v
    return hook


def _iterative_backward(g: Callable[[torch.Tensor], torch.Tensor], r_star: torch.Tensor, *, tol: float,
                        max_iter: int, m: int, fallback: bool, raise_on_fail: bool) -> Hook:
    """``dL/dr* -> v`` solving ``v = dL/dr* + J^T v`` by Anderson with vector-Jacobian products
    through one recorded application of ``g`` at ``r*`` (Jacobian-free)."""
    z0 = r_star.clone().requires_grad_(True)
    with torch.enable_grad():
        f0 = g(z0)

    def hook(grad: torch.Tensor | None) -> torch.Tensor | None:
        if grad is None:
            return None

        def lin(v: torch.Tensor) -> torch.Tensor:
            (jtv,) = torch.autograd.grad(f0, z0, v, retain_graph=True)
            return grad + jtv

        sol = solve_fixed_point(lin, grad.detach(), tol=tol, max_iter=max_iter, m=m, fallback=fallback,
                                raise_on_fail=raise_on_fail,
                                what="implicit gradient (I - J^T) v = dL/dr*: linear solve")
        if not bool(torch.isfinite(sol.r).all()):
            raise ConvergenceError("implicit backward produced NaN/inf: (I - J^T) is singular or nearly so "
                                   "at the equilibrium (J has an eigenvalue near 1); pass jacobian= for a "
                                   "diagnosis, shrink the weights' spectral radius, or train with BPTT (unroll)")
        return sol.r
    return hook


def implicit_fixed_point(g: Callable[[torch.Tensor], torch.Tensor], r0: torch.Tensor, *, tol: float = 1e-10,
                         max_iter: int = 500, m: int = 5, backward_tol: float | None = None,
                         backward_max_iter: int | None = None,
                         jacobian: Callable[[torch.Tensor], torch.Tensor] | None = None,
                         raise_on_fail: bool = True, fallback: bool = True) -> torch.Tensor:
    """Equilibrium layer: ``r* = g(r*)`` with gradients by implicit differentiation.

    The forward solve records no graph (:func:`solve_fixed_point`). The result is
    ``g(r*)`` evaluated once more with the graph attached, and a hook replaces
    the incoming gradient ``dL/dr*`` by ``v`` solving ``(I - J^T) v = dL/dr*``,
    ``J = dg/dr`` at ``r*``: then every parameter and input of ``g`` receives
    ``v^T dg/dtheta``, the exact gradient of the equilibrium (implicit function
    theorem), whatever the number of solver iterations. Memory: one step's graph.

    Parameters
    ----------
    g : the map (closing over its parameters and inputs), (batch, N) -> (batch, N)
    r0 : (batch, N) initial guess (no gradient flows to it)
    tol, max_iter, m : forward solver settings (:func:`solve_fixed_point`)
    backward_tol, backward_max_iter : of the linear solve (default: ``tol``, ``max_iter``)
    jacobian : optional ``r -> J`` (batch, N, N) of ``g`` for a direct solve (exact,
        memory ``batch N^2``); default: Anderson on ``v = dL/dr* + J^T v`` with
        vector-Jacobian products (Jacobian-free)
    raise_on_fail, fallback : see :func:`solve_fixed_point` (both solves)

    Returns
    -------
    torch.Tensor
        (batch, N) equilibrium, attached to the graph of ``g``'s parameters.

    Raises
    ------
    ConvergenceError
        Forward solve, or (during backward) the linear solve, did not converge.
    """
    with torch.no_grad():
        res = solve_fixed_point(g, r0.detach(), tol=tol, max_iter=max_iter, m=m, fallback=fallback,
                                raise_on_fail=raise_on_fail, what="equilibrium (forward)")
    r_star = res.r.detach()
    if not torch.is_grad_enabled():
        return r_star
    out = g(r_star)
    if not out.requires_grad:
        return out
    if jacobian is not None:
        hook = _direct_backward(jacobian, r_star)
    else:
        btol = tol if backward_tol is None else backward_tol
        biter = max_iter if backward_max_iter is None else backward_max_iter
        hook = _iterative_backward(g, r_star, tol=btol, max_iter=biter, m=m, fallback=fallback,
                                   raise_on_fail=raise_on_fail)
    out.register_hook(hook)
    return out
