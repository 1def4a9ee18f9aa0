"""Batched rate simulator (torch): ``T dr/dt = -r + phi(W r + B u(t) + b + eta(t))``.

The public entry points: :func:`simulate` (a circuit and a stimulus to an
:class:`xarray.Dataset`, with the decomposition ``r = x + F(x)``) and :func:`integrate`
(one run of a :class:`RateSystem`, continued exactly from a :class:`RateState`).

Integrators are registered by name (:mod:`cortex_resnet.rate.integrators`): fixed-step
``euler``, ``expeuler`` (exponential Euler) and ``rk4`` (ours; all three go through
:func:`euler_step` or the same right-hand side), and the adaptive solvers of torchdiffeq
(``dopri5``, ``bosh3``, ``adaptive_heun``, ``dopri8``) with error control. ``eta`` is
Ornstein-Uhlenbeck input noise (fixed-step methods only).

:func:`euler_step` *is* a residual block, ``r + alpha (-r + phi(W r + drive))``;
the bridge calls the very same function (:mod:`cortex_resnet.rate.step`). The names of
:mod:`~cortex_resnet.rate.step`, :mod:`~cortex_resnet.rate.system`,
:mod:`~cortex_resnet.rate.integrators` and :mod:`~cortex_resnet.rate.stability` are
re-exported here.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from cortex_resnet.core.resources import check_memory
from cortex_resnet.errors import SpecError
from cortex_resnet.io import results
from cortex_resnet.model.circuit import Circuit
from cortex_resnet.model.spec import MAX_STEPS, StimulusSpec
from cortex_resnet.model.stimulus import Stimulus, make_stimulus
from cortex_resnet.rate.integrators import (
    ADAPTIVE,
    FIXED_STEP,
    LoopOptions,
    get_integrator,
    known_integrators,
)
from cortex_resnet.rate.stability import UnstableStateWarning, final_state_stability
from cortex_resnet.rate.step import (
    STEP_LIMITS,
    StepSizeWarning,
    check_step,
    euler_step,
    input_drive,
)
from cortex_resnet.rate.system import (
    RateRun,
    RateState,
    RateSystem,
    noise_init,
    resolve_device,
    resolve_dtype,
)

__all__ = [
    "ADAPTIVE",
    "FIXED_STEP",
    "STEP_LIMITS",
    "RateRun",
    "RateState",
    "RateSystem",
    "StepSizeWarning",
    "UnstableStateWarning",
    "check_step",
    "euler_step",
    "final_state_stability",
    "input_drive",
    "integrate",
    "known_integrators",
    "resolve_device",
    "resolve_dtype",
    "simulate",
]


def _check_run(system: RateSystem, duration_ms: float, dt_ms: float, method: str, record_stride: int,
               check_every: int, sync_every: int) -> int:
    """Validate a run's arguments (SpecError naming the field); the number of steps."""
    solver = get_integrator(method)
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
    if not solver.noise and c.spec.noise.sigma > 0:
        raise SpecError("method", method, f"a fixed-step method ({', '.join(FIXED_STEP)}) when noise.sigma > 0")
    if not solver.step_weights and c.step_weights is not None:
        raise SpecError("method", method, "'euler' for a circuit with step-dependent weights")
    check_step(c, dt_ms, method)  # refuses unstable steps; simulate() also warns about inaccurate ones
    return n_steps


def _start(system: RateSystem, batch: int, state: RateState | None, seed: int) -> RateState:
    """``state``, checked against the batch, or ``r = 0`` at t = 0 with fresh noise."""
    c = system.circuit
    if state is None:
        r0 = torch.zeros(batch, c.n_units, dtype=system.dtype, device=system.device)
        eta, gen = noise_init(system, batch, seed)
        return RateState(0.0, 0, r0, eta, gen)
    if state.r.shape != (batch, c.n_units):
        raise SpecError("state.r", f"shape {tuple(state.r.shape)}", f"shape ({batch}, {c.n_units})")
    return state


def _records(system: RateSystem, stimulus: Stimulus, state: RateState, n_steps: int, dt_ms: float,
             record_stride: int) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """Record times (ms) and empty rate/input records with the starting state in place."""
    c, batch = system.circuit, stimulus.batch
    n_rec = n_steps // record_stride + 1
    check_memory(n_rec * batch * (c.n_units + c.n_inputs) * system.dtype.itemsize,
                 "recorded trajectory", f"{n_rec} records x {batch} stimuli x {c.n_units} units; "
                 f"raise the record stride (now {record_stride}) or shorten the run", device=system.device)
    times = state.t_ms + dt_ms * record_stride * np.arange(n_rec)
    R = torch.empty(n_rec, batch, c.n_units, dtype=system.dtype, device=system.device)
    U = torch.empty(n_rec, batch, c.n_inputs, dtype=system.dtype, device=system.device)
    R[0], U[0] = state.r, stimulus(state.t_ms)
    return times, R, U


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
    n_steps = _check_run(system, duration_ms, dt_ms, method, record_stride, check_every, sync_every)
    state = _start(system, stimulus.batch, state, seed)
    times, R, U = _records(system, stimulus, state, n_steps, dt_ms, record_stride)
    solver = get_integrator(method)(system, stimulus, dt_ms, state.t_ms, state.step)
    opts = LoopOptions(record_stride, max_rate, check_every, sync_every, rtol, atol)
    new_state = solver.run(state, n_steps, times, R, U, opts, progress)
    return RateRun(times, R, U, new_state)


def _warn_if_unstable(final_re: float | None, t_ms: float) -> None:
    if final_re is not None and final_re > 0:
        warnings.warn(f"the run ended at t = {t_ms:g} ms in a linearly unstable state (max Re(eig) = "
                      f"{final_re:+.4g} /ms, growth time {1 / final_re:.3g} ms): the circuit has not diverged "
                      "yet; its final rates are not a steady state (dataset attr 'unstable' = 1). Run longer "
                      "to see where it goes, or stabilise the circuit (lower J_EE, raise inhibition)",
                      UnstableStateWarning, stacklevel=3)


def _run_pair(circuit: Circuit, stim: Stimulus, duration_ms: float, dt_ms: float, dtype: torch.dtype,
              dev: torch.device, decompose: bool, progress: bool, kw: dict,
              conv: bool = False) -> tuple[RateRun, torch.Tensor | None]:
    """The run with recurrence and (``decompose``) the one without, ``x``; a progress bar if asked."""
    n_steps = int(round(duration_ms / dt_ms)) if dt_ms > 0 else 0
    bar = None
    if progress:
        bar = tqdm(total=n_steps * (2 if decompose else 1), desc=f"rate {kw['method']}", unit="step", leave=False)
    kw = dict(kw, progress=bar.update if bar is not None else None)
    try:
        run = integrate(RateSystem(circuit, dtype, dev, conv=conv), stim, duration_ms, dt_ms, **kw)
        x = None
        if decompose:
            x = integrate(RateSystem(circuit, dtype, dev, recurrence=False), stim, duration_ms, dt_ms, **kw).r
    finally:
        if bar is not None:
            bar.close()
    return run, x


def simulate(circuit: Circuit, stimulus: StimulusSpec | str | None = None, *,
             duration_ms: float | None = None, dt_ms: float | None = None, method: str | None = None,
             dtype: str | torch.dtype = "float64", device: str | torch.device = "auto",
             record_stride: int = 1, seed: int | None = None, decompose: bool = True,
             rtol: float = 1e-7, atol: float = 1e-9, max_rate: float = 1e4,
             progress: bool = False, recurrence: str = "dense") -> xr.Dataset:
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
    recurrence : ``"dense"`` (``W r`` as a matrix product) or ``"conv"`` (a real circular convolution
        with the kernels of a translation-invariant spatial circuit, :mod:`~cortex_resnet.rate.conv`)

    Returns
    -------
    xarray.Dataset
        Variables ``r``, ``x``, ``Fx`` (time, batch, unit) and ``u`` (time, batch, input);
        see :mod:`cortex_resnet.io.results`. Attr ``unstable``: 1 when the circuit is linearly unstable
        at the final state (it has not diverged yet; also an :class:`UnstableStateWarning`), 0 when
        stable, -1 when not checked (N > 1000); ``final_max_eig_real_per_ms`` the value (1/ms).
    """
    sim = circuit.spec.simulation
    duration_ms = sim.duration_ms if duration_ms is None else duration_ms
    dt_ms = sim.dt_ms if dt_ms is None else dt_ms
    method = sim.method if method is None else method
    seed = circuit.spec.seed if seed is None else seed
    dt, dev = resolve_dtype(dtype), resolve_device(device)
    stim = make_stimulus(sim.stimulus if stimulus is None else stimulus, circuit.n_inputs, dt, dev)
    note = check_step(circuit, dt_ms, method) if dt_ms > 0 and method in STEP_LIMITS else None
    if note is not None:
        warnings.warn(note, StepSizeWarning, stacklevel=2)
    if recurrence not in ("dense", "conv"):
        raise SpecError("recurrence", recurrence, "dense or conv")
    start = time.perf_counter()
    kw = dict(method=method, record_stride=record_stride, seed=seed, rtol=rtol, atol=atol, max_rate=max_rate)
    run, x = _run_pair(circuit, stim, duration_ms, dt_ms, dt, dev, decompose, progress, kw, recurrence == "conv")
    runtime = time.perf_counter() - start
    final_re = final_state_stability(circuit, run.state.r, stim(run.state.t_ms))
    _warn_if_unstable(final_re, run.state.t_ms)
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
