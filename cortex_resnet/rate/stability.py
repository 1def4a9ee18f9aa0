"""Why a rate run blew up, and whether its final state is stable.

:func:`diagnose` explains the first bad state of a run (non-finite inputs, an unstable step
of the integrator, runaway growth of the circuit, or nonlinear growth) from the linearisation
at the last finite state; :func:`final_state_stability` linearises a finished run's final
states (:class:`UnstableStateWarning` when a perturbation would grow).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cortex_resnet.errors import UnstableCircuitError
from cortex_resnet.model.analysis import MARGINAL_TOL
from cortex_resnet.model.circuit import Circuit
from cortex_resnet.rate.system import RateSystem

__all__ = ["UnstableStateWarning", "diagnose", "final_state_stability"]


def _nonfinite_source(system: RateSystem, drive: torch.Tensor, u: torch.Tensor,
                      eta: torch.Tensor | None) -> str | None:
    """What made the step's inputs non-finite, or None when they are all finite."""
    if bool(torch.isfinite(drive).all()) and bool(torch.isfinite(system.W).all()):
        return None
    for name, x in (("the input u(t) (the stimulus)", u), ("the input projection B (input.gain_E/gain_I)", system.B),
                    ("the bias b (bias.E/bias.I)", system.b), ("the recurrent weights W", system.W),
                    ("the input noise eta (noise.sigma)", eta)):
        if x is not None and not bool(torch.isfinite(x).all()):
            return name
    return "the feedforward drive B u + b"


def _linearise(system: RateSystem, method: str, dt_ms: float, r: torch.Tensor, drive: torch.Tensor,
               k: int) -> tuple[float, float, float]:
    """At the finite state ``r`` (N,): max Re(eig) of the circuit's Jacobian (1/ms), the spectral
    radius of one fixed step's map (NaN for adaptive methods) and Euler's largest stable dt_ms."""
    c = system.circuit
    if c.n_units > 4000:
        return math.nan, math.nan, math.nan
    W = (system.step_WT[min(k, len(system.step_WT) - 1)].T if system.step_WT is not None else system.W)
    W = W.detach().cpu().double().numpy()
    z = torch.as_tensor(W @ r.detach().cpu().double().numpy() + drive.detach().cpu().double().numpy())
    d = c.phi_derivative(z).numpy()
    J = (-np.eye(c.n_units) + d[:, None] * W) / c.tau_ms[:, None]
    mu = np.linalg.eigvals(J)
    max_re = float(np.max(mu.real))
    if method in ("euler", "expeuler"):
        a = (dt_ms / c.tau_ms) if method == "euler" else -np.expm1(-dt_ms / c.tau_ms)
        M = np.eye(c.n_units) + a[:, None] * (J * c.tau_ms[:, None])
    elif method == "rk4":
        Z = dt_ms * J
        M = np.eye(c.n_units) + Z @ (np.eye(c.n_units) + Z @ (np.eye(c.n_units) / 2 + Z @ (
            np.eye(c.n_units) / 6 + Z / 24)))
    else:
        return max_re, math.nan, math.nan
    rho = float(np.max(np.abs(np.linalg.eigvals(M))))
    neg = mu[mu.real < 0]
    dt_max = float(np.min(-2 * neg.real / np.abs(neg) ** 2)) if neg.size else math.inf
    return max_re, rho, dt_max


def diagnose(system: RateSystem, method: str, dt_ms: float, last_good: torch.Tensor, first_bad: torch.Tensor,
             drive: torch.Tensor, u: torch.Tensor, eta: torch.Tensor | None, bad: torch.Tensor, step: int,
             t_ms: float, max_rate: float) -> UnstableCircuitError:
    """Explain the first bad state ``first_bad`` (reached at ``t_ms``) from the step that produced it."""
    c = system.circuit
    b_i, unit = (int(x) for x in bad.nonzero()[0]) if bad.ndim == 2 else (0, int(bad.nonzero()[0, 0]))
    pop = str(c.population[unit])
    value = float(first_bad.reshape(-1, c.n_units)[b_i, unit])
    what = "became NaN/inf" if not math.isfinite(value) else f"exceeded max_rate = {max_rate:g}"
    head = f"rates {what} at t = {t_ms:.3f} ms (step {step}) in population {pop} (unit {unit}, stimulus {b_i}). "
    lg = last_good.reshape(-1, c.n_units)[b_i]
    source = _nonfinite_source(system, drive, u, eta)
    if source is None and not bool(torch.isfinite(lg).all()):
        source = "the initial state r0"
    if source is not None:
        err = UnstableCircuitError(
            head + f"Cause: {source} is NaN/inf, not the circuit's dynamics (max Re(eig) not computed): "
            "give finite values there.", step=step, time_ms=t_ms, population=pop, max_eig_real=None)
        err.cause = "nonfinite-input"
        return err
    max_re, rho, dt_max = _linearise(system, method, dt_ms, lg, drive.reshape(-1, c.n_units)[b_i],
                                     step - 1)
    rho_w = c.spectral_radius() if c.n_units <= 4000 else math.nan
    lin = (f"Linearised at the last finite state (t = {t_ms - dt_ms:.3f} ms) the circuit has max Re(eig) = "
           f"{max_re:+.4g} /ms ({'unstable' if max_re > 0 else 'stable'}; spectral radius of W = {rho_w:.4g})")
    if math.isfinite(rho) and rho > 1 and not max_re > 0:
        cause = "integrator"
        bound = f" below {0.9 * dt_max:.3g} ms" if method == "euler" and math.isfinite(dt_max) else ""
        text = (f"{lin}, but one '{method}' step of dt_ms = {dt_ms:g} ms amplifies it by {rho:.4g} > 1: the "
                f"step size, not the circuit, diverges (dt_ms / tau_min = {dt_ms / float(c.tau_ms.min()):.3g}). "
                f"Reduce dt_ms{bound}, or use method = 'expeuler' or 'dopri5'.")
    elif max_re > 0:
        cause = "runaway"
        text = (f"{lin}: runaway growth (time constant {1 / max_re:.3g} ms). Lower J_EE, raise J_EI/J_IE, "
                "lower the input, or use a saturating transfer function.")
    else:
        cause = "nonlinear" if math.isfinite(max_re) else "unknown"
        text = (f"{lin}{f' and the step map is stable (spectral radius {rho:.4g})' if math.isfinite(rho) else ''}"
                ": the growth is nonlinear (an expansive transfer function driven hard), beyond the "
                "linearisation. Lower the input or the gains, or raise max_rate if such rates are meant.")
    err = UnstableCircuitError(head + text, step=step, time_ms=t_ms, population=pop,
                               max_eig_real=max_re if math.isfinite(max_re) else None)
    err.cause = cause
    return err


class UnstableStateWarning(UserWarning):
    """The run ended at a state where the circuit is linearly unstable (it has not diverged yet)."""


def final_state_stability(circuit: Circuit, r: torch.Tensor, u: torch.Tensor, *, max_units: int = 1000,
                          max_stimuli: int = 8) -> float | None:
    """Largest real part (1/ms) of the Jacobian ``T^-1 (-I + D W)`` at the final states.

    Parameters
    ----------
    r : (batch, N) final rates; u : (batch, n_inputs) final inputs
    max_units : above this N (or for step-dependent weights) nothing is computed (None)
    max_stimuli : at most this many stimuli, evenly spread over the batch, are linearised (fewer
        for large N, down to one at N = 1000)

    Returns
    -------
    float or None
        The maximum over the checked stimuli (0 where zero to rounding, as in
        :func:`~cortex_resnet.model.analysis.analyze`); > 0 means a perturbation of the final state grows:
        the run stopped before an unstable circuit diverged (or on an unstable point), so the
        final state is not a steady state.
    """
    if circuit.n_units > max_units or circuit.step_weights is not None:
        return None
    rr = r.detach().cpu().double().numpy()
    uu = u.detach().cpu().double().numpy()
    if not np.all(np.isfinite(rr)):
        return None
    # eig costs ~N^3: about 2e8 flops' worth of stimuli (8 at N = 300, 1 at N = 1000)
    n_check = max(1, min(max_stimuli, rr.shape[0], int(2e8 / circuit.n_units**3)))
    pick = np.unique(np.linspace(0, rr.shape[0] - 1, n_check).round().astype(int))
    worst = -math.inf
    for i in pick:
        z = circuit.W @ rr[i] + circuit.B @ uu[i] + circuit.b
        d = circuit.phi_derivative(torch.as_tensor(z)).numpy()
        J = (-np.eye(circuit.n_units) + d[:, None] * circuit.W) / circuit.tau_ms[:, None]
        mu = np.linalg.eigvals(J)
        re = float(np.max(mu.real))
        worst = max(worst, 0.0 if abs(re) <= MARGINAL_TOL * float(np.max(np.abs(mu))) else re)
    return worst

