"""Conditions that differ only in their input, run as the replicas of one torch-engine batch.

A spiking network realisation (its synapse graph, weights and gain mapping) is shared by every
replica of a torch batch (:mod:`cortex_resnet.spiking.torch_engine`); the replicas differ in
their input and in their random streams. So conditions of one realisation that differ only in a
stimulus' amplitude run as one batch: ``amp_batch(base, amps)`` is the base stimulus with one
amplitude per replica (a :class:`StimulusSpec` with an ``amp`` list makes a batch).

**Same as one at a time.** Replica ``c`` gets its own random streams ``keys[c]``
(initial potentials, input spikes, noise) and all replicas one gain mapping, at
:func:`operating_input` (the input at the end of the run, averaged over *all* conditions).
A replica does not depend on the batch it runs in, so :func:`run_amp_batch` of one condition
alone, with its key and the same operating input, gives the same spikes as in the batch (tested).
The Brian2 engine runs each condition alone with the same key and operating input.
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np

from cortex_resnet.errors import SpecError
from cortex_resnet.model.circuit import Circuit
from cortex_resnet.model.stimulus import StimulusWarning, make_stimulus
from cortex_resnet.model.stimulus_spec import StimulusSpec, parse_stimulus
from cortex_resnet.spiking.initial_state import replica_seed
from cortex_resnet.spiking.simulator import simulate_spiking

__all__ = ["amp_batch", "operating_input", "condition_keys", "run_amp_batch"]


def amp_batch(base: StimulusSpec | str, amps: Sequence[float]) -> StimulusSpec:
    """``base`` with one amplitude per replica (``amps``: model units, at least one)."""
    spec = parse_stimulus(base) if isinstance(base, str) else base
    if spec.kind == "npy":
        raise SpecError("stimulus.kind", "npy", "a stimulus with an amplitude (constant, step, pulse, ramp, "
                        "sinusoid) to batch over its amp")
    vals = [float(a) for a in amps]
    if not vals:
        raise SpecError("stimulus.amp", "[]", "at least one amplitude")
    return StimulusSpec.model_validate({**spec.model_dump(), "amp": vals})


def operating_input(circuit: Circuit, stimulus: StimulusSpec, duration_ms: float) -> np.ndarray:
    """(n_inputs,) the gain mapping's operating input of a batch: ``u(duration_ms)`` averaged over
    its replicas (model units)."""
    u = make_stimulus(stimulus, circuit.n_inputs)(float(duration_ms)).numpy()
    return np.asarray(u, np.float64).mean(axis=0)


def condition_keys(seed: int, n: int, *, shared: bool = False) -> list[int]:
    """Replica seeds of ``n`` conditions of ``seed``: ``replica_seed(seed, c)``, or (``shared``) all
    ``replica_seed(seed, 0)``: common random numbers, e.g. replicas that must be identical until a
    step in their input."""
    return [replica_seed(int(seed), 0 if shared else c) for c in range(n)]


def run_amp_batch(circuit: Circuit, base: StimulusSpec | str, amps: Sequence[float], keys: Sequence[int], *,
                  duration_ms: float, seed: int, u_operating: np.ndarray, decompose: bool,
                  engine: str = "torch", dtype: str = "float64", device: str = "cpu", mean_field: bool = True,
                  dt_ms: float | None = None) -> Any:
    """One run of ``base`` at the amplitudes ``amps`` (replica ``c``: ``amps[c]``, random streams
    ``keys[c]``, the shared ``u_operating``); one replica per amplitude, in one batch (torch) or,
    Brian2, one amplitude only (``len(amps) == 1``); ``mean_field``: False leaves out the mean-field
    rates (a solve per replica); ``dt_ms``: the step (default ``spiking.dt_ms``). Returns the spiking
    Dataset (Hz)."""
    if len(keys) != len(amps):
        raise SpecError("keys", f"{len(keys)} seeds", f"one per amplitude ({len(amps)})")
    if engine != "torch" and len(amps) != 1:
        raise SpecError("engine", engine, "torch to run several conditions as one batch")
    opts: dict[str, Any] = {"dtype": dtype, "device": device} if engine == "torch" else {}
    with warnings.catch_warnings():
        if not np.any(np.asarray(amps, np.float64)):  # a sham condition: zero extra input is the point
            warnings.simplefilter("ignore", StimulusWarning)
        return simulate_spiking(circuit, amp_batch(base, amps), duration_ms=duration_ms, dt_ms=dt_ms,
                                seed=int(seed), decompose=decompose, engine=engine,
                                u_operating=np.asarray(u_operating, np.float64),
                                replica_seeds=[int(k) for k in keys], mean_field=mean_field, **opts)
