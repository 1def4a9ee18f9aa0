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
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import xarray as xr

from .circuit import Circuit
from .errors import SpecError, UnknownNameError, UnstableCircuitError
from .resources import check_memory
from .spec import StimulusSpec
from .stimulus import Stimulus, make_stimulus

__all__ = [
    "euler_step", "RateSystem", "RateState", "RateRun", "integrate", "simulate",
    "known_integrators", "resolve_device", "resolve_dtype", "FIXED_STEP", "ADAPTIVE",
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
        d = torch.addmm(self.b, u, self.BT) if u.ndim == 2 else u @ self.BT + self.b
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


def _diagnose(system: RateSystem, r: torch.Tensor, drive: torch.Tensor, step: int, t_ms: float,
              bad: torch.Tensor, max_rate: float) -> UnstableCircuitError:
    c = system.circuit
    finite = torch.isfinite(r)
    nan = bool((~finite).any())
    unit = int(bad.nonzero()[0, -1]) if bad.any() else 0
    pop = str(c.population[unit])
    rr = torch.nan_to_num(r[0], nan=0.0, posinf=max_rate, neginf=-max_rate)
    z = rr @ system.WT + drive[0] if system.recurrence else drive[0]
    d = c.phi_derivative(torch.nan_to_num(z, nan=0.0)).detach().cpu().double().numpy()
    J = (-np.eye(c.n_units) + d[:, None] * c.W) / c.tau_ms[:, None]
    max_re = float(np.max(np.linalg.eigvals(J).real)) if c.n_units <= 4000 else float("nan")
    rho = c.spectral_radius() if c.n_units <= 4000 else float("nan")
    what = "became NaN/inf" if nan else f"exceeded {max_rate:g} (runaway)"
    return UnstableCircuitError(
        f"rates {what} at t = {t_ms:.3f} ms (step {step}) in population {pop} (unit {unit}). "
        f"Linearised at the last state the circuit has max Re(eig) = {max_re:+.4g} /ms "
        f"({'unstable' if max_re > 0 else 'stable'}); spectral radius of W = {rho:.4g}. "
        "Runaway excitation: lower J_EE, raise J_EI/J_IE, lower the input, or use a saturating "
        "transfer function; for NaN with a stable circuit reduce dt_ms.",
        step=step, time_ms=t_ms, population=pop, max_eig_real=max_re)


def integrate(system: RateSystem, stimulus: Stimulus, duration_ms: float, dt_ms: float, *,
              method: str = "euler", record_stride: int = 1, state: RateState | None = None,
              seed: int = 0, rtol: float = 1e-7, atol: float = 1e-9, max_rate: float = 1e4,
              check_every: int = 10, progress: Callable[[int], None] | None = None) -> RateRun:
    """Integrate from ``state`` (or ``r = 0`` at t = 0) for ``duration_ms``.

    Fixed-step methods take ``n = duration_ms / dt_ms`` steps (must be an
    integer) and record every ``record_stride``-th state, the initial one
    included. Adaptive methods report at the same record times, choosing their
    own internal steps (``rtol``, ``atol``; torchdiffeq controls the RMS norm of
    each step's error over the whole batch, and record times come from its
    quartic interpolation: dopri5 stays within ~10 rtol of the exact solution,
    bosh3 and dopri8 only within ~100 rtol because their long steps make the
    interpolation error dominate). Returning ``state`` lets a later
    call continue exactly (chunked run = full run).

    Raises
    ------
    UnstableCircuitError
        Rates above ``max_rate`` or NaN/inf, with the eigen-diagnosis.
    """
    if method not in FIXED_STEP + ADAPTIVE:
        raise UnknownNameError("integrator", method, known_integrators(), field="method")
    if not (dt_ms > 0 and math.isfinite(dt_ms)):
        raise SpecError("dt_ms", dt_ms, "a finite step > 0 ms")
    if not (duration_ms > 0 and math.isfinite(duration_ms)):
        raise SpecError("duration_ms", duration_ms, "a finite duration > 0 ms")
    if record_stride < 1:
        raise SpecError("record_stride", record_stride, "an integer >= 1")
    n_steps = int(round(duration_ms / dt_ms))
    if n_steps < 1 or abs(n_steps * dt_ms - duration_ms) > 1e-6 * max(duration_ms, 1.0):
        raise SpecError("dt_ms", dt_ms, f"a step that divides duration_ms = {duration_ms} into whole steps")
    c = system.circuit
    if method in ADAPTIVE and c.spec.noise.sigma > 0:
        raise SpecError("method", method, f"a fixed-step method ({', '.join(FIXED_STEP)}) when noise.sigma > 0")
    if method in ADAPTIVE and c.step_weights is not None:
        raise SpecError("method", method, "'euler' for a circuit with step-dependent weights")
    if method != "euler" and c.step_weights is not None:
        raise SpecError("method", method, "'euler' for a circuit with step-dependent weights")
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
    r, eta, gen = state.r, state.eta, state.generator
    ns = c.spec.noise
    decay = math.exp(-dt_ms / ns.tau_ms)
    kick = ns.sigma * math.sqrt(1 - decay**2)
    if method == "expeuler":
        alpha = -torch.expm1(-dt_ms / system.tau)
    else:
        alpha = dt_ms / system.tau
    last_good = r
    u_prev, drive = None, None
    for i in range(1, n_steps + 1):
        k = k0 + i - 1
        t = t0 + (i - 1) * dt_ms
        u = stimulus(t)
        if eta is not None or u_prev is None or not torch.equal(u, u_prev):
            drive = system.drive(u, eta)  # else: same input, same drive (piecewise-constant stimuli)
            u_prev = u
        if method == "rk4":
            rec = system.rhs
            dm = system.drive(stimulus(t + 0.5 * dt_ms), eta)
            d1 = system.drive(stimulus(t + dt_ms), eta)
            k1 = rec(r, drive, k)
            k2 = rec(r + 0.5 * dt_ms * k1, dm, k)
            k3 = rec(r + 0.5 * dt_ms * k2, dm, k)
            k4 = rec(r + dt_ms * k3, d1, k)
            r = r + dt_ms / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        else:
            r = euler_step(r, drive, system.recurrent_weights(k), alpha, system.phi)
        if eta is not None:
            eta = decay * eta + kick * torch.randn(eta.shape, generator=gen, dtype=eta.dtype, device=eta.device)
        if i % check_every == 0 or i == n_steps:
            # one reduction and one device sync per check; NaN propagates through amax
            if not float(r.abs().amax()) <= max_rate:
                bad = ~torch.isfinite(r) | (r.abs() > max_rate)
                raise _diagnose(system, last_good, drive, k0 + i, t0 + i * dt_ms, bad, max_rate)
            last_good = r
        if i % record_stride == 0:
            R[i // record_stride] = r
            U[i // record_stride] = stimulus(t0 + i * dt_ms)
        if progress and i % 100 == 0:
            progress(100)
    if progress:
        progress(n_steps % 100)
    return RateRun(times, R, U, RateState(t0 + n_steps * dt_ms, k0 + n_steps, r, eta, gen))


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
    bad = ~torch.isfinite(sol[-1]) | (sol[-1].abs() > max_rate)
    if bool(bad.any()) or not bool(torch.isfinite(sol).all()):
        raise _diagnose(system, sol[0], system.drive(U[-1], None), len(times) - 1, float(times[-1]),
                        bad, max_rate)
    return sol[-1]


def simulate(circuit: Circuit, stimulus: StimulusSpec | str | None = None, *,
             duration_ms: float | None = None, dt_ms: float | None = None, method: str | None = None,
             dtype: str | torch.dtype = "float64", device: str | torch.device = "auto",
             record_stride: int = 1, seed: int | None = None, decompose: bool = True,
             rtol: float = 1e-7, atol: float = 1e-9, max_rate: float = 1e4,
             progress: bool = False) -> xr.Dataset:
    """Simulate a circuit and decompose its response into ``x`` and ``F(x)``.

    Parameters
    ----------
    circuit : the circuit (:func:`~cortex_resnet.circuit.build_circuit`)
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
        see :mod:`cortex_resnet.results`.
    """
    from . import results

    sim = circuit.spec.simulation
    duration_ms = sim.duration_ms if duration_ms is None else duration_ms
    dt_ms = sim.dt_ms if dt_ms is None else dt_ms
    method = sim.method if method is None else method
    seed = circuit.spec.seed if seed is None else seed
    dt = resolve_dtype(dtype)
    dev = resolve_device(device)
    stim = make_stimulus(sim.stimulus if stimulus is None else stimulus, circuit.n_inputs, dt, dev)
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
    ds = results.trajectory_dataset(
        circuit, run.times_ms, run.r, x, run.u, backend="rate",
        attrs={"method": method, "dt_ms": dt_ms, "duration_ms": duration_ms, "seed": seed,
               "dtype": str(dt).removeprefix("torch."), "device": str(dev),
               "record_stride": record_stride, "stimulus": stim.spec.model_dump_json()})
    # wall time is not stored in the file (same seed -> byte-identical files); callers read it here
    ds.encoding["runtime_s"] = runtime
    return ds

