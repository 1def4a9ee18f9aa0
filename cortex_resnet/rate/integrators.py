"""Integrators registered by name, in the torchdiffeq style: the base owns the loop.

:class:`FixedStep` owns the one fixed-step loop with its guards (a device-side running peak
of ``|r|``, NaN/inf and ``max_rate`` checks, the replay that finds the first bad step and
:func:`~cortex_resnet.rate.stability.diagnose`), the drive ``B u(t) + b + eta`` and the
Ornstein-Uhlenbeck noise; a method only returns its increment (:meth:`FixedStep.increment`).
Euler and exponential Euler are the one exception in form, not in substance: their update is
the residual block :func:`~cortex_resnet.rate.step.euler_step` itself (one fused ``lerp``,
shared bit for bit with the unrolled net), so they override :meth:`FixedStep.advance`.
:class:`Adaptive` hands the loop to torchdiffeq (``dopri5``, ``bosh3``, ``adaptive_heun``,
``dopri8``: error control, no noise) and applies the same guards to its records.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from cortex_resnet.errors import UnknownNameError, UnstableCircuitError
from cortex_resnet.model.stimulus import Stimulus
from cortex_resnet.rate.stability import diagnose
from cortex_resnet.rate.step import euler_step
from cortex_resnet.rate.system import RateState, RateSystem

__all__ = [
    "ADAPTIVE",
    "FIXED_STEP",
    "INTEGRATORS",
    "RK4",
    "Adaptive",
    "Euler",
    "ExpEuler",
    "FixedStep",
    "Integrator",
    "LoopOptions",
    "get_integrator",
    "known_integrators",
    "register",
]

#: name -> integrator class; :func:`register` adds one.
INTEGRATORS: dict[str, type[Integrator]] = {}


def register(cls: type[Integrator]) -> type[Integrator]:
    """Class decorator: make ``cls`` available as ``method = cls.name``."""
    INTEGRATORS[cls.name] = cls
    return cls


def known_integrators() -> list[str]:
    """Names accepted by ``method``."""
    return list(INTEGRATORS)


def get_integrator(name: str) -> type[Integrator]:
    """The integrator class registered as ``name``; an unknown name lists the known ones."""
    if name not in INTEGRATORS:
        raise UnknownNameError("integrator", name, known_integrators(), field="method")
    return INTEGRATORS[name]


@dataclass(frozen=True)
class LoopOptions:
    """How a run records and guards its states.

    record_stride : keep every n-th step; max_rate : a rate above this (or NaN/inf) stops the run;
    check_every, sync_every : fold ``max |r|`` into the device-side peak every ``check_every``
    steps, read it on the host every ``sync_every`` steps; rtol, atol : adaptive error control.
    """

    record_stride: int = 1
    max_rate: float = 1e4
    check_every: int = 10
    sync_every: int = 500
    rtol: float = 1e-7
    atol: float = 1e-9


class Integrator(abc.ABC):
    """An integrator of a :class:`RateSystem` driven by a stimulus, from time ``t0`` (ms), step ``k0``."""

    name: ClassVar[str]
    #: can integrate the OU input noise / step-dependent weights (chain circuits)
    noise: ClassVar[bool] = True
    step_weights: ClassVar[bool] = False

    def __init__(self, system: RateSystem, stimulus: Stimulus, dt_ms: float, t0: float, k0: int):
        self.system, self.stimulus, self.dt_ms = system, stimulus, dt_ms
        self.t0, self.k0 = t0, k0

    @abc.abstractmethod
    def run(self, state: RateState, n_steps: int, times: np.ndarray, R: torch.Tensor, U: torch.Tensor,
            opts: LoopOptions, progress: Callable[[int], None] | None) -> RateState:
        """Fill the records ``R`` (rates) and ``U`` (inputs) after ``R[0], U[0]``; the final state."""

    def __repr__(self) -> str:
        """One line: the method, its step (ms) and the circuit."""
        return f"{type(self).__name__}({self.name!r}, dt_ms={self.dt_ms:g}, circuit {self.system.circuit.spec.name!r})"


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


class FixedStep(Integrator):
    """The fixed-step loop; a subclass returns the increment of step ``k`` (:meth:`increment`).

    Step ``i`` (1-based) starts at ``t0 + (i - 1) dt``; the run and the replay that locates a
    failure call the same :meth:`__call__`, so both compute the same numbers.
    """

    def __init__(self, system: RateSystem, stimulus: Stimulus, dt_ms: float, t0: float, k0: int):
        super().__init__(system, stimulus, dt_ms, t0, k0)
        ns = system.circuit.spec.noise
        self.decay = math.exp(-dt_ms / ns.tau_ms)
        self.kick = ns.sigma * math.sqrt(1 - self.decay**2)
        self._key: tuple | None = None
        self._base: torch.Tensor | None = None

    @abc.abstractmethod
    def increment(self, r: torch.Tensor, k: int, t: float, drive: torch.Tensor,
                  eta: torch.Tensor | None) -> torch.Tensor:
        """``r_{k+1} - r_k`` for the step from ``t`` (ms) with feedforward drive ``drive`` (batch, N)."""

    def advance(self, r: torch.Tensor, k: int, t: float, drive: torch.Tensor,
                eta: torch.Tensor | None) -> torch.Tensor:
        """``r_{k+1} = r_k +`` :meth:`increment` (a subclass with a fused update overrides both)."""
        return r + self.increment(r, k, t, drive, eta)

    def base_drive(self, t_ms: float) -> torch.Tensor:
        """``B u(t) + b``, recomputed only when the stimulus can have changed (decided on the host)."""
        key = _stimulus_key(self.stimulus, t_ms)
        if self._base is None or key != self._key:
            self._base, self._key = self.system.drive(self.stimulus(t_ms), None), key
        return self._base

    def __call__(self, i: int, r: torch.Tensor, eta: torch.Tensor | None,
                 gen: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Step ``i``: the new rates, the new noise and the drive the step used."""
        k, t = self.k0 + i - 1, self.t0 + (i - 1) * self.dt_ms
        base = self.base_drive(t)
        drive = base if eta is None else base + eta
        r = self.advance(r, k, t, drive, eta)
        if eta is not None:
            eta = self.decay * eta + self.kick * torch.randn(eta.shape, generator=gen, dtype=eta.dtype,
                                                             device=eta.device)
        return r, eta, drive

    def run(self, state: RateState, n_steps: int, times: np.ndarray, R: torch.Tensor, U: torch.Tensor,
            opts: LoopOptions, progress: Callable[[int], None] | None) -> RateState:
        """The loop: no host-device sync inside a chunk of ``opts.sync_every`` steps.

        Every ``check_every`` steps ``max |r|`` is folded into a device-side running peak (NaN
        propagates through it); the host reads the peak once per chunk. When it is bad, the chunk
        is replayed from its saved start (rates, noise, generator state) to find the first bad step.
        """
        r, eta, gen = state.r, state.eta, state.generator
        stride = opts.record_stride
        peak = torch.zeros((), dtype=r.dtype, device=r.device)
        mark = (1, r, eta, gen.get_state() if gen is not None else None)
        for i in range(1, n_steps + 1):
            r, eta, _ = self(i, r, eta, gen)
            chunk_end = i % opts.sync_every == 0 or i == n_steps
            if chunk_end or i % opts.check_every == 0:
                peak = torch.maximum(peak, r.abs().amax())
            if i % stride == 0:
                R[i // stride] = r
                U[i // stride] = self.stimulus(self.t0 + i * self.dt_ms)
            if chunk_end:
                if not float(peak) <= opts.max_rate:  # the one sync per chunk (NaN fails the comparison)
                    raise self._locate_failure(mark, i, gen, opts.max_rate)
                mark = (i + 1, r, eta, gen.get_state() if gen is not None else None)
            if progress and i % 100 == 0:
                progress(100)
        if progress:
            progress(n_steps % 100)
        return RateState(self.t0 + n_steps * self.dt_ms, self.k0 + n_steps, r, eta, gen)

    def _locate_failure(self, mark: tuple, i_end: int, gen: torch.Generator | None,
                        max_rate: float) -> UnstableCircuitError:
        """Replay steps ``mark[0]..i_end`` checking every state; diagnose at the first bad one."""
        i0, r, eta, gen_state = mark
        if gen is not None:
            gen.set_state(gen_state)
        self._base = None
        for i in range(i0, i_end + 1):
            u = self.stimulus(self.t0 + (i - 1) * self.dt_ms)
            prev, eta_prev = r, eta
            r, eta, drive = self(i, r, eta, gen)
            bad = ~torch.isfinite(r) | (r.abs() > max_rate)
            if bool(bad.any()):
                break
        return diagnose(self.system, self.name, self.dt_ms, prev, r, drive, u, eta_prev, bad,
                        self.k0 + i, self.t0 + i * self.dt_ms, max_rate)


@register
class Euler(FixedStep):
    """Forward Euler, ``alpha = dt / tau``: the residual block :func:`euler_step` (one fused ``lerp``)."""

    name = "euler"
    step_weights = True

    def __init__(self, system: RateSystem, stimulus: Stimulus, dt_ms: float, t0: float, k0: int):
        super().__init__(system, stimulus, dt_ms, t0, k0)
        self.alpha = self._alpha(dt_ms, system.tau)

    @staticmethod
    def _alpha(dt_ms: float, tau: torch.Tensor) -> torch.Tensor:
        return dt_ms / tau

    def advance(self, r: torch.Tensor, k: int, t: float, drive: torch.Tensor,
                eta: torch.Tensor | None) -> torch.Tensor:
        """:func:`euler_step` (not ``r + increment``: the fused form is the bridge's, bit for bit)."""
        return euler_step(r, drive, self.system.recurrent_weights(k), self.alpha, self.system.phi)

    def increment(self, r: torch.Tensor, k: int, t: float, drive: torch.Tensor,
                  eta: torch.Tensor | None) -> torch.Tensor:
        """``alpha (phi(W r + drive) - r)``, computed as :meth:`advance` minus ``r`` (the loop uses
        :meth:`advance`, whose rounding is the bridge's)."""
        return self.advance(r, k, t, drive, eta) - r


@register
class ExpEuler(Euler):
    """Exponential Euler: the leak integrated exactly over a step, ``alpha = 1 - exp(-dt / tau)``."""

    name = "expeuler"
    step_weights = False

    @staticmethod
    def _alpha(dt_ms: float, tau: torch.Tensor) -> torch.Tensor:
        return -torch.expm1(-dt_ms / tau)


@register
class RK4(FixedStep):
    """Classical fourth-order Runge-Kutta; the stimulus at ``t``, ``t + dt/2``, ``t + dt``, noise held."""

    name = "rk4"

    def increment(self, r: torch.Tensor, k: int, t: float, drive: torch.Tensor,
                  eta: torch.Tensor | None) -> torch.Tensor:
        system, dt = self.system, self.dt_ms
        rhs = system.rhs
        dm = system.drive(self.stimulus(t + 0.5 * dt), eta)
        d1 = system.drive(self.stimulus(t + dt), eta)
        k1 = rhs(r, drive, k)
        k2 = rhs(r + 0.5 * dt * k1, dm, k)
        k3 = rhs(r + 0.5 * dt * k2, dm, k)
        k4 = rhs(r + dt * k3, d1, k)
        return dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)


class Adaptive(Integrator):
    """A torchdiffeq solver with error control (``rtol``, ``atol``); records at the fixed record times."""

    noise = False

    def run(self, state: RateState, n_steps: int, times: np.ndarray, R: torch.Tensor, U: torch.Tensor,
            opts: LoopOptions, progress: Callable[[int], None] | None) -> RateState:
        """Solve over ``times`` (ms), then check every record as the fixed-step loop checks its states."""
        sol = self._solve(state.r, times, opts)
        R[:] = sol
        for i, ti in enumerate(times):
            U[i] = self.stimulus(float(ti))
        self._check(sol, times, U, opts.max_rate)
        if progress:
            progress(n_steps)
        return RateState(float(times[-1]), self.k0 + n_steps, sol[-1], None, None)

    def _solve(self, r0: torch.Tensor, times: np.ndarray, opts: LoopOptions) -> torch.Tensor:
        # deferred: torchdiffeq imports scipy.integrate (~2 s at start-up); only adaptive runs need it
        from torchdiffeq import odeint

        system, stimulus = self.system, self.stimulus

        def f(t: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
            return system.rhs(r, system.drive(stimulus(float(t)), None))

        t = torch.as_tensor(times, dtype=system.dtype, device=system.device)
        s = stimulus.spec
        jumps = [x for x in (s.onset_ms, s.offset_ms, s.onset_ms + s.width_ms if s.kind == "pulse" else None)
                 if x is not None and times[0] < x < times[-1]]
        options = {"jump_t": torch.as_tensor(jumps, dtype=system.dtype)} if jumps else {}
        try:
            return odeint(f, r0, t, method=self.name, rtol=opts.rtol, atol=opts.atol, options=options)
        except AssertionError as err:  # torchdiffeq: "underflow in dt"
            raise UnstableCircuitError(f"adaptive solver '{self.name}' failed ({err}); the dynamics are likely "
                                       "running away: simulate with method='euler' to see where") from None

    def _check(self, sol: torch.Tensor, times: np.ndarray, U: torch.Tensor, max_rate: float) -> None:
        ok = (torch.isfinite(sol) & (sol.abs() <= max_rate)).flatten(1).all(dim=1)  # per record
        if bool(ok.all()):
            return
        j = int((~ok).nonzero()[0, 0])  # the first bad record; linearise at the one before it
        g = max(j - 1, 0)
        bad = ~torch.isfinite(sol[j]) | (sol[j].abs() > max_rate)
        dt_rec = float(times[1] - times[0]) if len(times) > 1 else 0.0
        raise diagnose(self.system, self.name, dt_rec, sol[g], sol[j], self.system.drive(U[g], None), U[g], None,
                       bad, j, float(times[j]), max_rate)


@register
class Dopri5(Adaptive):
    """Dormand-Prince 5(4)."""

    name = "dopri5"


@register
class Bosh3(Adaptive):
    """Bogacki-Shampine 3(2)."""

    name = "bosh3"


@register
class AdaptiveHeun(Adaptive):
    """Heun-Euler 2(1)."""

    name = "adaptive_heun"


@register
class Dopri8(Adaptive):
    """Dormand-Prince 8(7)."""

    name = "dopri8"


FIXED_STEP = tuple(n for n, c in INTEGRATORS.items() if issubclass(c, FixedStep))
ADAPTIVE = tuple(n for n, c in INTEGRATORS.items() if issubclass(c, Adaptive))
