"""Batched rate simulator (torch): ``T dr/dt = -r + phi(W r + B u(t) + b + eta(t))``.

Integrators are registered by name: fixed-step ``euler``, ``expeuler``
(exponential Euler) and ``rk4`` (ours; all three go through
:func:`euler_step` or the same right-hand side), and the adaptive solvers of
torchdiffeq (``dopri5``, ``bosh3``, ``adaptive_heun``, ``dopri8``) with error
control. ``eta`` is Ornstein-Uhlenbeck input noise (fixed-step methods only).

:func:`euler_step` *is* a residual block, ``r + alpha (-r + phi(W r + drive))``;
the bridge calls the very same function.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import xarray as xr

from cortex_resnet.model.circuit import Circuit
from cortex_resnet.errors import SpecError, UnknownNameError, UnstableCircuitError
from cortex_resnet.core.resources import check_memory
from cortex_resnet.model.spec import MAX_STEPS, StimulusSpec
from cortex_resnet.model.stimulus import Stimulus, make_stimulus

__all__ = [
    "euler_step", "RateSystem", "RateState", "RateRun", "integrate", "simulate",
    "known_integrators", "resolve_device", "resolve_dtype", "FIXED_STEP", "ADAPTIVE",
    "input_drive", "check_step", "StepSizeWarning", "STEP_LIMITS", "UnstableStateWarning",
    "final_state_stability",
]

FIXED_STEP = ("euler", "expeuler", "rk4")
ADAPTIVE = ("dopri5", "bosh3", "adaptive_heun", "dopri8")


def known_integrators() -> list[str]:
    """Names accepted by ``method``."""
    return list(FIXED_STEP + ADAPTIVE)


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


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32"``/``"float64"`` (or a torch dtype) to a torch float dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {"float32": torch.float32, "float64": torch.float64}
    if dtype not in table:
        raise UnknownNameError("dtype", dtype, list(table), field="dtype")
    return table[dtype]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise SpecError("device", device, "auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SpecError("device", device, "a device present here: no CUDA device is available (use cpu or auto)")
    return dev


class RateSystem:
    """A circuit's tensors on one device/dtype, with the recurrent operator and right-hand side."""

    def __init__(self, circuit: Circuit, dtype: torch.dtype = torch.float64,
                 device: torch.device | str = "cpu", recurrence: bool = True):
        self.circuit = circuit
        self.dtype, self.device = dtype, torch.device(device)
        as_t = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype, device=self.device)  # noqa: E731
        c = circuit if recurrence else circuit.without_recurrence()
        self.recurrence = recurrence
        self.B, self.b, self.tau = as_t(c.B), as_t(c.b), as_t(c.tau_ms)
        self.BT = self.B.T.contiguous()
        self.W = as_t(c.W)
        self.WT = self.W.T.contiguous()
        self._sparse = None
        density = float(c.mask.mean()) if c.mask.size else 1.0
        if c.spec.connectivity.kind == "sparse" and density < 0.2 and c.n_units >= 500:
            self._sparse = self.W.to_sparse_csr()
        self.step_WT = None
        if c.step_weights is not None:
            self.step_WT = [as_t(Wk).T.contiguous() for Wk in c.step_weights]
        self.phi = circuit.phi

    def recurrent_op(self, k: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
        """``r -> W r`` for step ``k`` (step-dependent weights for chain circuits)."""
        if not self.recurrence:
            return lambda r: torch.zeros_like(r)
        if self.step_WT is not None:
            WT = self.step_WT[min(k, len(self.step_WT) - 1)]
            return lambda r: r @ WT
        if self._sparse is not None:
            Wsp = self._sparse
            return lambda r: (Wsp @ r.T).T
        WT = self.WT
        return lambda r: r @ WT

    def recurrent_weights(self, k: int = 0) -> torch.Tensor | Callable[[torch.Tensor], torch.Tensor]:
        """What :func:`euler_step` takes as ``recurrent`` for step ``k``: the dense ``W^T``
        (fused into one ``addmm``) where the product is dense, else :meth:`recurrent_op`."""
        if self.recurrence and self.step_WT is None and self._sparse is None:
            return self.WT
        return self.recurrent_op(k)

    def drive(self, u: torch.Tensor, eta: torch.Tensor | None) -> torch.Tensor:
        """``B u + b (+ eta)``, (batch, N)."""
        d = input_drive(u, self.BT, self.b)
        return d if eta is None else d + eta

    def rhs(self, r: torch.Tensor, drive: torch.Tensor, k: int = 0) -> torch.Tensor:
        """``dr/dt = (-r + phi(W r + drive)) / tau`` in 1/ms."""
        rec = self.recurrent_weights(k)
        z = torch.addmm(drive, r, rec) if isinstance(rec, torch.Tensor) and r.ndim == 2 else None
        if z is None:
            z = self.recurrent_op(k)(r) + drive
        return (self.phi(z) - r) / self.tau


@dataclass
class RateState:
    """Everything needed to continue a run exactly: time, step, rates, noise and its generator."""

    t_ms: float
    step: int
    r: torch.Tensor
    eta: torch.Tensor | None = None
    generator: torch.Generator | None = None


@dataclass
class RateRun:
    """Output of :func:`integrate`: record times (ms), rates (T, batch, N), inputs (T, batch, n_in)."""

    times_ms: np.ndarray
    r: torch.Tensor
    u: torch.Tensor
    state: RateState


def _noise_init(system: RateSystem, batch: int, seed: int) -> tuple[torch.Tensor | None, torch.Generator | None]:
    ns = system.circuit.spec.noise
    if ns.sigma == 0:
        return None, None
    gen = torch.Generator(device=system.device)
    gen.manual_seed(int(seed) % (2**63))
    eta = ns.sigma * torch.randn(batch, system.circuit.n_units, generator=gen,
                                 dtype=system.dtype, device=system.device)
    return eta, gen


# ----------------------------------------------------------------- step-size check

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


# ----------------------------------------------------------------- fixed-step loop

def _stimulus_key(stimulus: Stimulus, t_ms: float) -> tuple:
    """A host-side value that changes whenever ``stimulus(t_ms)`` can change (no device sync):
    the held sample's index for arrays, else the envelope and baseline that ``u`` is made of."""
    arr = stimulus._array  # package-internal: the zero-order-hold samples of npy/array stimuli
    if arr is not None:
        k = min(int(math.floor(t_ms / stimulus.spec.dt_ms + 1e-9)), arr.shape[0] - 1)
        return ("sample", max(k, 0))
    s = stimulus.spec
    base = s.baseline if s.kind == "sinusoid" and t_ms >= s.onset_ms else 0.0
    return ("envelope", stimulus.envelope(t_ms), base)


class _Stepper:
    """Step ``i`` (1-based, from ``t0 + (i - 1) dt``) of a fixed-step run; the run and the replay
    that locates a failure call the same object, so both compute the same numbers."""

    def __init__(self, system: RateSystem, stimulus: Stimulus, method: str, dt_ms: float, t0: float, k0: int):
        self.system, self.stimulus, self.method, self.dt_ms = system, stimulus, method, dt_ms
        self.t0, self.k0 = t0, k0
        ns = system.circuit.spec.noise
        self.decay = math.exp(-dt_ms / ns.tau_ms)
        self.kick = ns.sigma * math.sqrt(1 - self.decay**2)
        self.alpha = -torch.expm1(-dt_ms / system.tau) if method == "expeuler" else dt_ms / system.tau
        self._key: tuple | None = None
        self._base: torch.Tensor | None = None

    def base_drive(self, t_ms: float) -> torch.Tensor:
        """``B u(t) + b``, recomputed only when the stimulus can have changed (decided on the host)."""
        key = _stimulus_key(self.stimulus, t_ms)
        if self._base is None or key != self._key:
            self._base, self._key = self.system.drive(self.stimulus(t_ms), None), key
        return self._base

    def __call__(self, i: int, r: torch.Tensor, eta: torch.Tensor | None,
                 gen: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        system, dt = self.system, self.dt_ms
        k, t = self.k0 + i - 1, self.t0 + (i - 1) * dt
        base = self.base_drive(t)
        drive = base if eta is None else base + eta
        if self.method == "rk4":
            rhs = system.rhs
            dm = system.drive(self.stimulus(t + 0.5 * dt), eta)
            d1 = system.drive(self.stimulus(t + dt), eta)
            k1 = rhs(r, drive, k)
            k2 = rhs(r + 0.5 * dt * k1, dm, k)
            k3 = rhs(r + 0.5 * dt * k2, dm, k)
            k4 = rhs(r + dt * k3, d1, k)
            r = r + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        else:
            r = euler_step(r, drive, system.recurrent_weights(k), self.alpha, system.phi)
        if eta is not None:
            eta = self.decay * eta + self.kick * torch.randn(eta.shape, generator=gen, dtype=eta.dtype,
                                                             device=eta.device)
        return r, eta, drive


def _run_fixed(step: _Stepper, state: RateState, n_steps: int, R: torch.Tensor, U: torch.Tensor,
               record_stride: int, max_rate: float, check_every: int, sync_every: int,
               progress: Callable[[int], None] | None) -> RateState:
    """The fixed-step loop: no host-device sync inside a chunk of ``sync_every`` steps.

    Every ``check_every`` steps ``max |r|`` is folded into a device-side running peak (NaN
    propagates through it); the host reads the peak once per chunk. When it is bad, the chunk
    is replayed from its saved start (rates, noise, generator state) to find the first bad step.
    """
    r, eta, gen = state.r, state.eta, state.generator
    t0, dt = step.t0, step.dt_ms
    peak = torch.zeros((), dtype=r.dtype, device=r.device)
    mark = (1, r, eta, gen.get_state() if gen is not None else None)
    for i in range(1, n_steps + 1):
        r, eta, _ = step(i, r, eta, gen)
        chunk_end = i % sync_every == 0 or i == n_steps
        if chunk_end or i % check_every == 0:
            peak = torch.maximum(peak, r.abs().amax())
        if i % record_stride == 0:
            R[i // record_stride] = r
            U[i // record_stride] = step.stimulus(t0 + i * dt)
        if chunk_end:
            if not float(peak) <= max_rate:  # the one sync per chunk (NaN fails the comparison)
                raise _locate_failure(step, mark, i, gen, max_rate)
            mark = (i + 1, r, eta, gen.get_state() if gen is not None else None)
        if progress and i % 100 == 0:
            progress(100)
    return RateState(t0 + n_steps * dt, step.k0 + n_steps, r, eta, gen)


def _locate_failure(step: _Stepper, mark: tuple, i_end: int, gen: torch.Generator | None,
                    max_rate: float) -> UnstableCircuitError:
    """Replay steps ``mark[0]..i_end`` checking every state; diagnose at the first bad one."""
    i0, r, eta, gen_state = mark
    if gen is not None:
        gen.set_state(gen_state)
    step._base = None
    for i in range(i0, i_end + 1):
        u = step.stimulus(step.t0 + (i - 1) * step.dt_ms)
        prev, eta_prev = r, eta
        r, eta, drive = step(i, r, eta, gen)
        bad = ~torch.isfinite(r) | (r.abs() > max_rate)
        if bool(bad.any()):
            break
    return _diagnose(step.system, step.method, step.dt_ms, prev, r, drive, u, eta_prev, bad,
                     step.k0 + i, step.t0 + i * step.dt_ms, max_rate)


# ----------------------------------------------------------------- diagnosis

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


def _diagnose(system: RateSystem, method: str, dt_ms: float, last_good: torch.Tensor, first_bad: torch.Tensor,
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


def integrate(system: RateSystem, stimulus: Stimulus, duration_ms: float, dt_ms: float, *,
              method: str = "euler", record_stride: int = 1, state: RateState | None = None,
              seed: int = 0, rtol: float = 1e-7, atol: float = 1e-9, max_rate: float = 1e4,
              check_every: int = 10, sync_every: int = 500,
              progress: Callable[[int], None] | None = None) -> RateRun:
    """Integrate from ``state`` (or ``r = 0`` at t = 0) for ``duration_ms``.

    Fixed-step methods take ``n = duration_ms / dt_ms`` steps (must be an
    integer) and record every ``record_stride``-th state, the initial one
    included; ``dt_ms`` is checked against the shortest time constant first
    (:func:`check_step`: refused where the method is unstable; :func:`simulate`
    also warns where it is inaccurate). Adaptive methods report at
    the same record times, choosing their own internal steps (``rtol``, ``atol``;
    torchdiffeq controls the RMS norm of each step's error over the whole batch,
    and record times come from its quartic interpolation: dopri5 stays within
    ~10 rtol of the exact solution, bosh3 and dopri8 only within ~100 rtol
    because their long steps make the interpolation error dominate). Returning
    ``state`` lets a later call continue exactly (chunked run = full run).

    The loop does not synchronise host and device per step: stimulus changes are
    decided on the host, and ``max |r|`` (every ``check_every`` steps) goes into a
    device-side peak read once every ``sync_every`` steps.

    Raises
    ------
    SpecError
        Bad arguments, or a fixed step at or above the method's stability limit.
    UnstableCircuitError
        Rates above ``max_rate`` or NaN/inf, diagnosed at the first bad state: non-finite
        inputs, an unstable step (integrator), runaway (circuit) or nonlinear growth, with the
        linearisation at the last finite state; ``err.cause`` names which.
    """
    if method not in FIXED_STEP + ADAPTIVE:
        raise UnknownNameError("integrator", method, known_integrators(), field="method")
    if not (dt_ms > 0 and math.isfinite(dt_ms)):
        raise SpecError("dt_ms", dt_ms, "a finite step > 0 ms")
    if not (duration_ms > 0 and math.isfinite(duration_ms)):
        raise SpecError("duration_ms", duration_ms, "a finite duration > 0 ms")
    for name, val in (("record_stride", record_stride), ("check_every", check_every), ("sync_every", sync_every)):
        if val < 1:
            raise SpecError(name, val, "an integer >= 1")
    if duration_ms / dt_ms > MAX_STEPS:  # before any size is computed from it
        raise SpecError("dt_ms", dt_ms, f"a step giving at most {MAX_STEPS:.0e} steps over duration_ms = "
                        f"{duration_ms:g} ms (this one gives {duration_ms / dt_ms:.2g} steps)")
    n_steps = int(round(duration_ms / dt_ms))
    if n_steps < 1 or abs(n_steps * dt_ms - duration_ms) > 1e-6 * max(duration_ms, 1.0):
        raise SpecError("dt_ms", dt_ms, f"a step that divides duration_ms = {duration_ms} into whole steps")
    c = system.circuit
    if method in ADAPTIVE and c.spec.noise.sigma > 0:
        raise SpecError("method", method, f"a fixed-step method ({', '.join(FIXED_STEP)}) when noise.sigma > 0")
    if method != "euler" and c.step_weights is not None:
        raise SpecError("method", method, "'euler' for a circuit with step-dependent weights")
    check_step(c, dt_ms, method)  # refuses unstable steps; simulate() also warns about inaccurate ones
    batch = stimulus.batch
    if state is None:
        r0 = torch.zeros(batch, c.n_units, dtype=system.dtype, device=system.device)
        eta, gen = _noise_init(system, batch, seed)
        state = RateState(0.0, 0, r0, eta, gen)
    elif state.r.shape != (batch, c.n_units):
        raise SpecError("state.r", f"shape {tuple(state.r.shape)}", f"shape ({batch}, {c.n_units})")
    n_rec = n_steps // record_stride + 1
    check_memory(n_rec * batch * (c.n_units + c.n_inputs) * system.dtype.itemsize,
                 "recorded trajectory", f"{n_rec} records x {batch} stimuli x {c.n_units} units; "
                 f"raise the record stride (now {record_stride}) or shorten the run", device=system.device)
    t0, k0 = state.t_ms, state.step
    times = t0 + dt_ms * record_stride * np.arange(n_rec)
    R = torch.empty(n_rec, batch, c.n_units, dtype=system.dtype, device=system.device)
    U = torch.empty(n_rec, batch, c.n_inputs, dtype=system.dtype, device=system.device)
    R[0], U[0] = state.r, stimulus(t0)
    if method in ADAPTIVE:
        r_final = _integrate_adaptive(system, stimulus, state, times, R, U, method, rtol, atol, max_rate)
        new_state = RateState(float(times[-1]), k0 + n_steps, r_final, None, None)
        if progress:
            progress(n_steps)
        return RateRun(times, R, U, new_state)
    step = _Stepper(system, stimulus, method, dt_ms, t0, k0)
    new_state = _run_fixed(step, state, n_steps, R, U, record_stride, max_rate, check_every, sync_every, progress)
    if progress:
        progress(n_steps % 100)
    return RateRun(times, R, U, new_state)


def _integrate_adaptive(system: RateSystem, stimulus: Stimulus, state: RateState, times: np.ndarray,
                        R: torch.Tensor, U: torch.Tensor, method: str, rtol: float, atol: float,
                        max_rate: float) -> torch.Tensor:
    from torchdiffeq import odeint

    def f(t: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return system.rhs(r, system.drive(stimulus(float(t)), None))

    t = torch.as_tensor(times, dtype=system.dtype, device=system.device)
    s = stimulus.spec
    jumps = [x for x in (s.onset_ms, s.offset_ms, s.onset_ms + s.width_ms if s.kind == "pulse" else None)
             if x is not None and times[0] < x < times[-1]]
    options = {"jump_t": torch.as_tensor(jumps, dtype=system.dtype)} if jumps and method in ("dopri5", "bosh3", "dopri8", "adaptive_heun") else {}
    try:
        sol = odeint(f, state.r, t, method=method, rtol=rtol, atol=atol, options=options)
    except AssertionError as err:  # torchdiffeq: "underflow in dt"
        raise UnstableCircuitError(f"adaptive solver '{method}' failed ({err}); the dynamics are likely "
                                   "running away: simulate with method='euler' to see where") from None
    R[:] = sol
    for i, ti in enumerate(times):
        U[i] = stimulus(float(ti))
    ok = (torch.isfinite(sol) & (sol.abs() <= max_rate)).flatten(1).all(dim=1)  # per record
    if not bool(ok.all()):
        j = int((~ok).nonzero()[0, 0])  # the first bad record; linearise at the one before it
        g = max(j - 1, 0)
        bad = ~torch.isfinite(sol[j]) | (sol[j].abs() > max_rate)
        dt_rec = float(times[1] - times[0]) if len(times) > 1 else 0.0
        raise _diagnose(system, method, dt_rec, sol[g], sol[j], system.drive(U[g], None), U[g], None, bad,
                        j, float(times[j]), max_rate)
    return sol[-1]


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
    from cortex_resnet.model.analysis import MARGINAL_TOL

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


def simulate(circuit: Circuit, stimulus: StimulusSpec | str | None = None, *,
             duration_ms: float | None = None, dt_ms: float | None = None, method: str | None = None,
             dtype: str | torch.dtype = "float64", device: str | torch.device = "auto",
             record_stride: int = 1, seed: int | None = None, decompose: bool = True,
             rtol: float = 1e-7, atol: float = 1e-9, max_rate: float = 1e4,
             progress: bool = False) -> xr.Dataset:
    """Simulate a circuit and decompose its response into ``x`` and ``F(x)``.

    Parameters
    ----------
    circuit : the circuit (:func:`~cortex_resnet.model.circuit.build_circuit`)
    stimulus : a :class:`StimulusSpec`, its CLI string, or None for the model file's default
    duration_ms, dt_ms : run length and step (ms); defaults from the model file
    method : integrator name (:func:`known_integrators`); default from the model file
    dtype : ``"float64"`` or ``"float32"``
    device : ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``
    record_stride : keep every n-th step (memory bound on long runs)
    seed : noise seed (default: the spec's seed); ``x`` uses the same noise
    decompose : also run the circuit with ``W = 0`` to get ``x`` and ``Fx = r - x``

    Returns
    -------
    xarray.Dataset
        Variables ``r``, ``x``, ``Fx`` (time, batch, unit) and ``u`` (time, batch, input);
        see :mod:`cortex_resnet.io.results`. Attr ``unstable``: 1 when the circuit is linearly unstable
        at the final state (it has not diverged yet; also an :class:`UnstableStateWarning`), 0 when
        stable, -1 when not checked (N > 1000); ``final_max_eig_real_per_ms`` the value (1/ms).
    """
    from cortex_resnet.io import results

    sim = circuit.spec.simulation
    duration_ms = sim.duration_ms if duration_ms is None else duration_ms
    dt_ms = sim.dt_ms if dt_ms is None else dt_ms
    method = sim.method if method is None else method
    seed = circuit.spec.seed if seed is None else seed
    dt = resolve_dtype(dtype)
    dev = resolve_device(device)
    stim = make_stimulus(sim.stimulus if stimulus is None else stimulus, circuit.n_inputs, dt, dev)
    note = check_step(circuit, dt_ms, method) if dt_ms > 0 and method in STEP_LIMITS else None
    if note is not None:
        warnings.warn(note, StepSizeWarning, stacklevel=2)
    n_steps = int(round(duration_ms / dt_ms)) if dt_ms > 0 else 0
    bar = None
    total = n_steps * (2 if decompose else 1)
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=f"rate {method}", unit="step", leave=False)
    tick = bar.update if bar is not None else None
    import time as _time

    start = _time.perf_counter()
    try:
        kw = dict(method=method, record_stride=record_stride, seed=seed, rtol=rtol, atol=atol,
                  max_rate=max_rate, progress=tick)
        run = integrate(RateSystem(circuit, dt, dev), stim, duration_ms, dt_ms, **kw)
        x = None
        if decompose:
            x = integrate(RateSystem(circuit, dt, dev, recurrence=False), stim, duration_ms, dt_ms, **kw).r
    finally:
        if bar is not None:
            bar.close()
    runtime = _time.perf_counter() - start
    final_re = final_state_stability(circuit, run.state.r, stim(run.state.t_ms))
    if final_re is not None and final_re > 0:
        warnings.warn(f"the run ended at t = {run.state.t_ms:g} ms in a linearly unstable state (max Re(eig) = "
                      f"{final_re:+.4g} /ms, growth time {1 / final_re:.3g} ms): the circuit has not diverged "
                      "yet; its final rates are not a steady state (dataset attr 'unstable' = 1). Run longer "
                      "to see where it goes, or stabilise the circuit (lower J_EE, raise inhibition)",
                      UnstableStateWarning, stacklevel=2)
    ds = results.trajectory_dataset(
        circuit, run.times_ms, run.r, x, run.u, backend="rate",
        attrs={"method": method, "dt_ms": dt_ms, "duration_ms": duration_ms, "seed": seed,
               "dtype": str(dt).removeprefix("torch."), "device": str(dev),
               "record_stride": record_stride, "stimulus": stim.spec.model_dump_json(),
               # 1: linearly unstable at the final state; -1: not checked (N > 1000)
               "unstable": -1 if final_re is None else int(final_re > 0),
               "final_max_eig_real_per_ms": math.nan if final_re is None else final_re})
    # wall time is not stored in the file (same seed -> byte-identical files); callers read it here
    ds.encoding["runtime_s"] = runtime
    return ds

