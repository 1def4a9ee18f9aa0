"""Exactness check: an unrolled net against the rate simulator, step by step.

The reference is the simulator's own Euler integration
(:func:`cortex_resnet.rate.simulator.integrate`, the loop inside ``simulate``) of the
circuit the net stands for, with the same input: a constant or per-step ``u``
(held over each step) for sustained input; for pulse input the simulator
starts from ``x_0 = phi(B u + b)`` (computed by the simulator's own operators)
and runs with ``u = 0``. The unrolled net is deterministic, so the circuit's
input noise is switched off for the comparison.

Errors per step ``k``: ``abs_k = max_i |r_net - r_sim|`` and
``rel_k = abs_k / max_i |r_sim|`` (0 where both are 0). Tolerances
(:data:`TOLERANCE`): ``abs <= 1e-10`` in float64 and ``rel <= 1e-5`` in float32
at every step; both are rounding-level bounds (1e-10 leaves five orders of
magnitude above float64 rounding for ``K`` up to thousands of steps; float32
rounding is ~6e-8 per operation).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from cortex_resnet.model.circuit import Circuit
from cortex_resnet.errors import SpecError
from cortex_resnet.rate.simulator import integrate
from cortex_resnet.rate.system import RateState, RateSystem
from cortex_resnet.model.stimulus import Stimulus
from cortex_resnet.bridge.convert import circuit_of
from cortex_resnet.bridge.unroll import UnrolledCircuit, unroll

__all__ = ["TOLERANCE", "reference_circuit", "source_reference", "compare_with_simulator", "check_unroll"]

TOLERANCE = {"float64": {"abs": 1e-10}, "float32": {"rel": 1e-5}}


def reference_circuit(net: UnrolledCircuit) -> Circuit:
    """The circuit whose Euler dynamics the net computes (noise off).

    ``plain`` gives ``tau = dt``; ``projection`` and state-gated nets qualify only
    while their extra parameters are zero (as initialised).

    Raises
    ------
    SpecError
        Per-step normalisation, or a projection/state gate that has been trained.
    """
    if net.options.norm is not None:
        raise SpecError("norm", net.options.norm, "None: a normalised net has no circuit counterpart")
    if net.variant == "projection" and any(bool((q != 0).any()) for q in net.Q):
        raise SpecError("variant", "projection", "a projection net with P = diag(1 - alpha) (Q = 0, as initialised)")
    if net.options.state_gate and bool((net.W_gate != 0).any()):
        raise SpecError("state_gate", True, "a state gate with W_gate = 0 (as initialised)")
    return _noise_off(circuit_of(net))


def source_reference(net: UnrolledCircuit) -> Circuit:
    """The circuit the net was unrolled from (``tau = dt`` for ``plain``; noise off).

    Comparing an untrained net with it checks the unrolling itself, independently
    of the weights read back from the net.
    """
    c = net.circuit
    if net.variant == "plain":
        c = c.with_weights(tau_ms=np.full(c.n_units, net.dt_ms))
    return _noise_off(c)


def _noise_off(c: Circuit) -> Circuit:
    if c.spec.noise.sigma == 0:
        return c
    return dataclasses.replace(c, spec=c.spec.model_copy(
        update={"noise": c.spec.noise.model_copy(update={"sigma": 0.0})}))


def simulator_trajectory(circuit: Circuit, u: torch.Tensor, steps: int, dt_ms: float, input_mode: str,
                         dtype: torch.dtype) -> torch.Tensor:
    """The simulator's Euler trajectory (K + 1, batch, N) for the net's input convention."""
    system = RateSystem(circuit, dtype, "cpu")
    u = u.to(dtype=dtype, device="cpu")
    state = None
    if input_mode == "pulse":
        x0 = system.phi(system.drive(u, None))
        state = RateState(0.0, 0, x0)
        arr = torch.zeros(1, u.shape[0], circuit.n_inputs, dtype=dtype)
    elif u.ndim == 2:
        arr = u[None]
    else:
        arr = u.transpose(0, 1)
    stim = Stimulus.from_array(arr, dt_ms, dtype=dtype)
    run = integrate(system, stim, steps * dt_ms, dt_ms, method="euler", state=state)
    return run.r


def compare_with_simulator(net: UnrolledCircuit, u: torch.Tensor | np.ndarray,
                           circuit: Circuit | None = None) -> dict[str, Any]:
    """Run ``net(u)`` and the simulator on the reference circuit; errors per step.

    Parameters
    ----------
    net : the unrolled net (any dtype)
    u : (batch, n_inputs) or (batch, K, n_inputs) input
    circuit : the reference (default :func:`reference_circuit`)

    Returns
    -------
    dict
        ``max_abs_error``, ``max_rel_error`` (floats), ``abs_per_step``,
        ``rel_per_step`` (lists of K + 1 floats), ``dtype``.
    """
    u = torch.as_tensor(np.asarray(u) if not isinstance(u, torch.Tensor) else u).to(net.dtype)
    ref = reference_circuit(net) if circuit is None else circuit
    with torch.no_grad():
        r_net = net(u.to(net.B.device)).cpu()
    r_sim = simulator_trajectory(ref, u, net.steps, net.dt_ms, net.input_mode, net.dtype)
    diff = (r_net - r_sim).abs().flatten(1).max(dim=1).values.double()
    scale = r_sim.abs().flatten(1).max(dim=1).values.double()
    rel = torch.where(diff == 0, torch.zeros_like(diff), diff / scale.clamp_min(torch.finfo(net.dtype).tiny))
    return {"dtype": str(net.dtype).removeprefix("torch."), "max_abs_error": float(diff.max()),
            "max_rel_error": float(rel.max()), "abs_per_step": diff.tolist(), "rel_per_step": rel.tolist()}


def check_unroll(circuit: Circuit, steps: int, dt_ms: float | None, u: np.ndarray, *,
                 dtypes: tuple[str, ...] = ("float64", "float32"), **unroll_kwargs: Any) -> dict[str, Any]:
    """Unroll in each dtype, compare with the simulator on the source circuit, judge by :data:`TOLERANCE`.

    Returns
    -------
    dict
        ``max_abs_error`` and ``max_rel_error`` keyed by dtype, ``within_tolerance``
        (bool), ``tolerance``, ``params`` (effective learnable count).
    """
    out: dict[str, Any] = {"max_abs_error": {}, "max_rel_error": {}, "per_step": {}}
    ok = True
    params = None
    for name in dtypes:
        net = unroll(circuit, steps, dt_ms, dtype=name, **unroll_kwargs)
        params = net.param_count()
        res = compare_with_simulator(net, torch.as_tensor(u, dtype=net.dtype), source_reference(net))
        out["max_abs_error"][name] = res["max_abs_error"]
        out["max_rel_error"][name] = res["max_rel_error"]
        out["per_step"][name] = {"abs": res["abs_per_step"], "rel": res["rel_per_step"]}
        tol = TOLERANCE[name]
        ok &= all(res[f"max_{kind}_error"] <= bound for kind, bound in tol.items())
    out.update({"within_tolerance": bool(ok), "tolerance": TOLERANCE, "params": params})
    return out
