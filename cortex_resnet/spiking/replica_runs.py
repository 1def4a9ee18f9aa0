"""Several circuits that share their network structure (they differ in coupling strengths and drives) as
one torch batch, with one result Dataset per circuit -- the Dataset each gives run alone.

    dss = simulate_conditions([c_isn, c_control], [stim, stim], duration_ms=600, seed=3,
                              u_operating=[u_op, u_op], replica_seeds=[keys, keys])

Each circuit's plan is built alone (its own gain mapping at its own operating input, the same synapse
graph: drawn from the circuit's seed), the plans are merged into one batch with per-replica weights
(:mod:`cortex_resnet.spiking.replica_weights`; structure differences refused naming the field), run
once by the torch engine, and the run is split back per circuit: spikes, traces and the Dataset
(attributes, mapping, statistics) of that circuit's plan. Bit-identical to :func:`simulate_spiking`
of each circuit alone with the same replica seeds (tested). A runaway (NaN potential) in any circuit
stops the batch: :func:`simulate_conditions` raises it; callers that want the other circuits' results
run them one at a time (the same numbers).
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import xarray as xr

from cortex_resnet.model.circuit import Circuit
from cortex_resnet.spiking.build import build_plan
from cortex_resnet.spiking.initial_state import replica_seed
from cortex_resnet.spiking.replica_weights import merge_plans, split_raw
from cortex_resnet.spiking.simulator import check_finite, run_attrs, spiking_dataset, warn_stimulus
from cortex_resnet.spiking.torch_engine import TorchEngine

__all__ = ["simulate_conditions"]


def simulate_conditions(circuits: Sequence[Circuit], stimuli: Sequence[Any], *, duration_ms: float, seed: int,
                        u_operating: Sequence[np.ndarray | None], replica_seeds: Sequence[Sequence[int] | None],
                        decompose: bool = False, dtype: str = "float64", device: str = "cpu",
                        mean_field: bool = True, dt_ms: float | None = None) -> list[xr.Dataset]:
    """One Dataset per circuit (module docstring): circuit ``i`` with stimulus ``stimuli[i]`` (its batch),
    gain mapping at ``u_operating[i]`` and replica seeds ``replica_seeds[i]`` (None: ``replica_seed(seed,
    b)``), all in one torch batch. Durations in ms; rates in Hz (as :func:`simulate_spiking`)."""
    start = time.perf_counter()
    plans, notes, keys = [], [], []
    for c, stim, u_op, ks in zip(circuits, stimuli, u_operating, replica_seeds, strict=True):
        plan = build_plan(c, stim, float(duration_ms), dt_ms=dt_ms, u_operating=u_op, seed=int(seed),
                          engine="torch", replica_seeds=None if ks is None else list(ks))
        plans.append(plan)
        notes.append(warn_stimulus(stim, plan.u, float(duration_ms), c.spec.simulation.stimulus))
        keys += [replica_seed(int(seed), b) for b in range(plan.batch)] if ks is None else [int(k) for k in ks]
    merged = merge_plans(plans)
    eng = TorchEngine(merged, device=device, dtype=dtype, seeds=np.asarray(keys, np.int64))
    raw, raw_x = eng.run_pair(int(seed)) if decompose else (eng.run(True, int(seed)), None)
    n_tr = plans[0].trace_neurons.size
    out = []
    for c, (circuit, plan) in enumerate(zip(circuits, plans)):
        r = split_raw(raw, merged, c, n_tr)
        check_finite(r, circuit, "recurrent run")
        rx = None if raw_x is None else split_raw(raw_x, merged, c, n_tr)
        if rx is not None:
            check_finite(rx, circuit, "run without recurrence")
        ds = spiking_dataset(plan, r, rx, attrs=run_attrs(plan, r, eng.device_name, int(seed), notes[c], mean_field))
        ds.encoding.update(compile_s=0.0, runtime_s=eng.last_run_s, compiled=False,
                           total_s=time.perf_counter() - start, batch_conditions=len(plans))
        out.append(ds)
    return out
