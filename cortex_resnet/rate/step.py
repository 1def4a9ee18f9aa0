"""The step of the rate dynamics and its drive, shared by the simulator and the bridge.

:func:`euler_step` *is* a residual block, ``r + alpha (-r + phi(W r + drive))``; the
unrolled net (:mod:`cortex_resnet.bridge.unroll`) calls the very same function, and
:func:`input_drive` computes ``B u + b`` for both. :func:`check_step` refuses a fixed step
that a method cannot take stably (:data:`STEP_LIMITS`) and describes an inaccurate one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from cortex_resnet.errors import SpecError
from cortex_resnet.model.circuit import Circuit

__all__ = ["STEP_LIMITS", "StepSizeWarning", "check_step", "euler_step", "input_drive"]


def euler_step(r: torch.Tensor, drive: torch.Tensor,
               recurrent: Callable[[torch.Tensor], torch.Tensor] | torch.Tensor,
               alpha: torch.Tensor | float, phi: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """One Euler step of the rate dynamics: a residual block.

    ``r_{k+1} = r_k + alpha * (-r_k + phi(recurrent(r_k) + drive))``

    computed as ``lerp(r_k, phi(z), alpha)`` (the same number up to one rounding;
    ``alpha = 1`` gives exactly ``phi(z)``), with ``z = r_k @ W^T + drive`` fused
    into one ``addmm`` when ``recurrent`` is the matrix ``W^T``: three passes over
    the state per step besides the product (autograd works through all of it).

    Parameters
    ----------
    r : (batch, N) rates at step k
    drive : (batch, N) feedforward drive ``B u_k + b`` (+ noise)
    recurrent : ``r -> W r`` (dense, sparse, learned, ...), (batch, N) -> (batch, N),
        or the dense transposed weights ``W^T`` (N, N) (pre x post) themselves
    alpha : ``dt / tau`` per unit (N,) or scalar; ``1 - exp(-dt/tau)`` gives exponential Euler;
        ``alpha = 1`` gives a plain (non-residual) net
    phi : transfer function
    """
    if isinstance(recurrent, torch.Tensor):
        z = torch.addmm(drive, r, recurrent) if r.ndim == 2 else r @ recurrent + drive
    else:
        z = recurrent(r) + drive
    out = phi(z)
    if isinstance(alpha, torch.Tensor) and alpha.dtype != out.dtype:
        return r + alpha * (-r + out)  # mixed precision: keep torch's type promotion
    return torch.lerp(r, out, alpha)


def input_drive(u: torch.Tensor, BT: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The feedforward drive ``B u + b``, shared by the simulator and the unrolled net.

    One ``addmm`` on ``(batch, n_inputs)`` with ``B^T`` (n_inputs, N) in contiguous layout
    (the same kernel, hence the same bits, in both callers); ``u`` with more axes
    (..., n_inputs) goes through a batched product instead.
    """
    BT = BT.contiguous()
    return torch.addmm(b, u.contiguous(), BT) if u.ndim == 2 else u @ BT + b


#: ``dt / tau_min`` limits per fixed-step method: (warn above, refuse at or above); see :func:`check_step`.
STEP_LIMITS: dict[str, tuple[float, float]] = {
    "euler": (0.1, 2.0),
    "rk4": (1.0, 2.785293563405282),  # end of RK4's stability interval on the negative real axis
    "expeuler": (1.0, math.inf),
}
_STEP_WHY = {
    "euler": "forward Euler multiplies the leak by 1 - dt/tau per step: unstable (growing, sign-alternating) "
             "for dt >= 2 tau, and already 5 % off exp(-t/tau) at t = tau for dt = 0.1 tau",
    "rk4": "RK4 is unstable on the leak for dt >= 2.785 tau and 2 % off exp(-t/tau) at t = tau for dt = tau",
    "expeuler": "exponential Euler integrates the leak exactly but holds the recurrent input fixed over a step, "
                "so the recurrent loop (time scale <= tau) is not resolved for dt > tau",
}


class StepSizeWarning(UserWarning):
    """``dt_ms`` is large for the circuit's time constants: the run is inaccurate (not unstable)."""


def check_step(circuit: Circuit, dt_ms: float, method: str) -> str | None:
    """Refuse a fixed step the integrator cannot take stably; describe an inaccurate one.

    The leak ``dr/dt = -r / tau`` alone sets the limits on ``a = dt_ms / tau_min``
    (:data:`STEP_LIMITS`): ``euler`` is refused at ``a >= 2`` (unstable) and warned about above
    ``a = 0.1`` (5 % error on ``exp(-t/tau)`` at ``t = tau``); ``rk4`` refused at ``a >= 2.785``,
    warned above 1 (2 %); ``expeuler`` (exact on the leak, stable for any step) warned above 1.
    Adaptive methods choose their own steps (``dt_ms`` only spaces the records): not checked.

    Returns
    -------
    str or None
        A warning text (dt_ms, tau, the cause and the fix) when ``a`` is above the warning limit.

    Raises
    ------
    SpecError
        ``dt_ms`` at or above the stability limit, naming tau, the limit and the fix.
    """
    if method not in STEP_LIMITS:
        return None
    unit = int(np.argmin(circuit.tau_ms))
    tau, pop = float(circuit.tau_ms[unit]), str(circuit.unit_population[unit])
    a = dt_ms / tau
    warn_at, refuse_at = STEP_LIMITS[method]
    where = (f"dt_ms / tau = {a:.3g} with tau = {tau:g} ms, the shortest time constant (population {pop}); "
             f"{_STEP_WHY[method]}")
    if a >= refuse_at:
        raise SpecError("dt_ms", dt_ms, f"a step below {refuse_at:.4g} tau = {refuse_at * tau:.4g} ms for method "
                        f"'{method}' ({where}). Use dt_ms <= {warn_at * tau:.3g} ms, or method = 'expeuler' "
                        "(stable for any step) or 'dopri5' (adaptive)")
    if a > warn_at:
        return (f"dt_ms = {dt_ms:g} ms is large for method '{method}': {where}. The run is inaccurate (the "
                "leak alone stays stable; should the coupled circuit diverge, that is diagnosed); use "
                f"dt_ms <= {warn_at * tau:.3g} ms for an accurate time course")
    return None
