"""``isn-paradox`` on circuits of named populations (E, PV, SOM; a cortical column's layers).

The driven populations (``params.inhibitory``) get ``extra_drive`` as extra bias on
their units: an extra input channel that projects onto exactly those units, so the
Newton steady states, the unit-level linear prediction ``(I - D W)^-1 D db`` and the
simulated step (Euler) all see the same drive. The ``control`` condition scales every
excitatory population's self-excitation ``connectivity.pathways.X.X.J`` by
``control_scale``; ``isn`` is the model as given.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cortex_resnet.errors import SimulationError, SpecError
from cortex_resnet.hypotheses._circuits import (bias_vector, check_named, circuit_for_seed, excitatory_names,
                                                linear_response, pop_mean, with_extra_channel)
from cortex_resnet.model.analysis import analyze as linear_analysis
from cortex_resnet.model.fixedpoint import steady_state
from cortex_resnet.model.spec import parse_spec
from cortex_resnet.rate.simulator import simulate

__all__ = ["prepare_named", "named_task"]


def prepare_named(params: Any, out: dict[str, Any]) -> dict[str, Any]:
    """Validate the driven populations and note the self-excitation fields the control scales."""
    spec = parse_spec(out["circuit_spec"])
    pops = spec.populations
    driven = list(params.inhibitory) if params.inhibitory is not None else \
        [k for k in pops.names if not pops.is_excitatory(k)]
    if not driven:
        raise SpecError("params.model", params.model, "a model with at least one inhibitory population")
    if len(set(driven)) != len(driven):
        raise SpecError("params.inhibitory", driven, "distinct population names")
    check_named(out, "inhibitory", driven, "inhibitory")
    if params.onset_ms >= params.duration_ms:
        raise SpecError("params.onset_ms", params.onset_ms, f"a time before duration_ms = {params.duration_ms}")
    if "spiking" in params.backends:
        raise SpecError("params.backends", params.backends, "['rate'] for a circuit of named populations")
    paths = spec.connectivity.pathways
    out["driven"] = driven
    out["ee_values"] = {f"connectivity.pathways.{k}.{k}.J": paths[k][k].J
                        for k in excitatory_names(out["circuit_spec"]) if k in paths.get(k, {})}
    return out


def named_task(prepared: dict[str, Any], condition: dict[str, Any], seed: int) -> dict[str, Any]:
    """One (condition, seed) of the named-population paradox test (module docstring)."""
    changes = {f: v * condition["ee_scale"] for f, v in prepared["ee_values"].items()}
    c = circuit_for_seed(prepared, seed, **changes)
    extra, driven = prepared["extra_drive"], prepared["driven"]
    c1 = with_extra_channel(c, bias_vector(c, driven, 1.0))  # channel n_inputs: the extra drive
    u0, du = np.zeros(c1.n_inputs), np.zeros(c1.n_inputs)
    du[-1] = extra
    r0 = steady_state(c1, u0).numpy()[0]
    r1 = steady_state(c1, u0 + du).numpy()[0]
    lin = linear_analysis(c1, u0, r_star=r0)
    if lin.condition in ("singular", "marginal"):
        raise SimulationError(f"seed {seed}, E self-excitation x {condition['ee_scale']:g}: the circuit is "
                              f"{lin.condition} at its fixed point (max Re(eig) {lin.max_eig_real:+.3g} /ms); the "
                              "ISN test needs a stable fixed point: change control_scale")
    pred = linear_response(c1, r0, u0, du)
    z0, z1 = c1.W @ r0 + c1.B @ u0 + c1.b, c1.W @ r1 + c1.B @ (u0 + du) + c1.b
    r, onset, trace_dt = step_response(c1, extra, c.n_inputs, prepared)
    d_units = np.zeros(c.n_units, bool)
    for name in driven:
        d_units |= c.select(name)
    dr = r1 - r0
    return {
        "delta_rI": float(dr[d_units].mean()), "delta_rE": pop_mean(dr, c, "E"),
        "rI0": float(r0[d_units].mean()), "rE0": pop_mean(r0, c, "E"),
        "pred_delta_rI": float(pred[d_units].mean()), "pop_pred_delta_rI": float("nan"),
        "frac_I_down": float(np.mean(dr[d_units] < 0)),
        "n_threshold_crossings": float(np.sum((z0 > 0) != (z1 > 0))),
        "isn": float(lin.inhibition_stabilized), "stable": float(lin.stable),
        "ee_loop_gain": lin.ee_loop_gain, "max_eig_real": lin.max_eig_real,
        "sim_delta_rI": float((r[-1] - r[onset - 1])[d_units].mean()),
        "rI_trace": r[:, d_units].mean(axis=1).tolist(), "rE_trace": r[:, c.is_E].mean(axis=1).tolist(),
        "trace_dt_ms": trace_dt,
        **{f"delta_{k}": pop_mean(dr, c, k) for k in c.population_names},
        **{f"isn_{k}": float(v) for k, v in lin.isn_by_population.items()},
    }


def step_response(circuit, amp: float, channel: int, prepared: dict[str, Any]) -> tuple[np.ndarray, int, float]:
    """Rates (time, N) of an Euler run with a step of ``amp`` on input ``channel`` at
    ``prepared["onset_ms"]``, the first recorded index at the onset, and the recording step (ms, ~2)."""
    stride = max(1, int(round(2.0 / prepared["dt_ms"])))
    ds = simulate(circuit, f"step:amp={amp},onset_ms={prepared['onset_ms']},channels=[{channel}]",
                  duration_ms=prepared["duration_ms"], dt_ms=prepared["dt_ms"], method="euler",
                  device="cpu", record_stride=stride, decompose=False)
    onset = int(np.searchsorted(ds["time"].values, prepared["onset_ms"]))
    return ds["r"].isel(batch=0).values, onset, float(prepared["dt_ms"] * stride)
