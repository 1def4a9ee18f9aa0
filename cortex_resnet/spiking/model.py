"""``to_spiking``: run a (trained) rate circuit as LIF pools and read out E spike counts.

    net = to_spiking(circuit, pool_size=20, p_connect=0.5, u_operating=u_train.mean(0))
    counts = net.run(u_test, duration_ms=300, window_ms=(100, 300))   # u_test: (batch, n_inputs)
    predicted = readout(counts.rates_E)                                  # classify from E pools

Every rate unit becomes a pool of ``pool_size`` LIF neurons (E or I), the
weights are scaled by the LIF gain at the operating point, and the input is
Poisson-coded (see :mod:`cortex_resnet.spiking.mapping`). A batch of inputs runs
as independent replicas of the network in one simulation, in chunks that fit
the memory budget.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from cortex_resnet.core.resources import memory_budget_bytes
from cortex_resnet.errors import SpecError
from cortex_resnet.model.circuit import Circuit
from cortex_resnet.spiking.brian import brian2_global_state
from cortex_resnet.spiking.build import build_plan, estimate_bytes
from cortex_resnet.spiking.simulator import make_engine, simulate_spiking
from cortex_resnet.spiking.torch_engine import TorchEngine, check_engine

__all__ = ["SpikeCounts", "SpikingModel", "to_spiking"]


@dataclass(frozen=True)
class SpikeCounts:
    """Spike counts of every pool in a window, one row per input.

    Attributes
    ----------
    counts : (batch, n_units) spikes of each pool (all its neurons) in the window
    rates_hz : (batch, n_units) mean rate per neuron of each pool (Hz)
    r : (batch, n_units) the same in the rate model's units (Hz / rate_unit_hz)
    is_E : (n_units,) which pools are pyramidal (E)
    window_ms : (t0, t1)
    """

    counts: np.ndarray
    rates_hz: np.ndarray
    r: np.ndarray
    is_E: np.ndarray
    window_ms: tuple[float, float]

    @property
    def counts_E(self) -> np.ndarray:
        """(batch, n_E) spike counts of the E pools: the readout of the spiking circuit."""
        return self.counts[:, self.is_E]

    @property
    def rates_E(self) -> np.ndarray:
        """(batch, n_E) E pool rates (Hz)."""
        return self.rates_hz[:, self.is_E]

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return (f"SpikeCounts(counts {tuple(self.counts.shape)} in {self.window_ms[0]:g}-{self.window_ms[1]:g} ms, "
                f"mean {float(self.rates_hz.mean()):.3g} Hz)")


class SpikingModel:
    """A rate circuit realised as a spiking network (:func:`to_spiking`).

    Attributes
    ----------
    circuit : the circuit, its ``spec.spiking`` set as requested
    u_operating : (n_inputs,) operating input of the gain scaling ((samples, n_inputs): inputs to fit
        over, ``weight_scaling = "fit"``), or None until the first run
    """

    def __init__(self, circuit: Circuit, u_operating: np.ndarray | None = None):
        self.circuit = circuit
        self.u_operating = None if u_operating is None else np.asarray(u_operating, np.float64)
        u_op = self.u_operating
        if u_op is not None and (u_op.ndim > 2 or u_op.shape[-1:] != (circuit.n_inputs,) or u_op.size == 0):
            raise SpecError("u_operating", f"shape {u_op.shape}", f"shape ({circuit.n_inputs},) or (samples, {circuit.n_inputs})")

    def simulate(self, stimulus: Any = None, **kwargs: Any):
        """Full simulation (dataset with ``r``, ``x``, ``Fx``, spikes): :func:`~cortex_resnet.spiking.simulator.simulate_spiking`."""
        kwargs.setdefault("u_operating", self.u_operating)
        return simulate_spiking(self.circuit, stimulus, **kwargs)

    def run(self, u: np.ndarray, *, duration_ms: float = 300.0, window_ms: tuple[float, float] | None = None,
            seed: int = 0, standalone: bool = False, cache_dir: Any = None, batch_size: int | None = None,
            target: str = "cython", progress: bool = False, engine: str = "brian2",
            dtype: str = "float64") -> SpikeCounts:
        """Run the network on constant inputs and count spikes per pool in a window.

        Parameters
        ----------
        u : (batch, n_inputs) constant inputs, one network replica each
        duration_ms : run length per input (ms)
        window_ms : counting window ``(t0, t1)`` in ms; default the last two thirds
        seed : seed of initial potentials, input spikes and noise (chunk ``k`` uses ``seed + k`` for
            its spikes and noise); the graph is the circuit's (``circuit.spec.seed``)
        standalone : C++ standalone (cached per structure; all chunks have the same size)
        batch_size : replicas per simulation (default: what fits half the memory budget, at most 256;
            torch engine: 256, refused with a ResourceError naming the batch when it does not fit)
        engine, dtype : ``brian2`` or ``torch`` (:mod:`cortex_resnet.spiking.torch_engine`, ``float64``/``float32``)
        """
        check_engine(engine, standalone)
        c = self.circuit
        u, (t0, t1) = self._check_inputs(u, duration_ms, window_ms)
        if self.u_operating is None:
            self.u_operating = u.mean(axis=0)
        batch_size = self._batch_size(batch_size, engine, u.shape[0], duration_ms)
        counts = np.zeros((u.shape[0], c.n_units))
        bar = tqdm(total=u.shape[0], desc="spiking", unit="input", leave=False) if progress else None
        try:
            for k in range(math.ceil(u.shape[0] / batch_size)):
                part = u[k * batch_size:(k + 1) * batch_size]
                n_real = part.shape[0]
                if standalone and n_real < batch_size:  # same structure for every chunk: pad
                    part = np.concatenate([part, np.repeat(part[-1:], batch_size - n_real, 0)])
                plan = build_plan(c, part, duration_ms, u_operating=self.u_operating, seed=seed, engine=engine)
                with brian2_global_state():  # Brian2's excepthook/warning capture end with the run
                    if engine == "torch":
                        runner = TorchEngine(plan, dtype=dtype)
                    else:
                        runner = make_engine(plan, standalone=standalone, cache_dir=cache_dir, target=target)
                    raw = runner.run(True, seed + k)
                sel = (raw.spike_t_ms >= t0) & (raw.spike_t_ms < t1)
                g = raw.spike_i[sel]
                flat = (g // plan.n) * c.n_units + plan.unit_of[g % plan.n]
                chunk = np.bincount(flat, minlength=part.shape[0] * c.n_units).reshape(part.shape[0], c.n_units)
                counts[k * batch_size:k * batch_size + n_real] = chunk[:n_real]
                if bar is not None:
                    bar.update(n_real)
        finally:
            if bar is not None:
                bar.close()
        rates = counts / (c.spec.spiking.pool_size * (t1 - t0) * 1e-3)
        R = plan.mapping.R_unit
        return SpikeCounts(counts=counts.astype(np.int64), rates_hz=rates, r=rates / R,
                           is_E=c.is_E.copy(), window_ms=(float(t0), float(t1)))

    def _check_inputs(self, u: np.ndarray, duration_ms: float, window_ms: tuple[float, float] | None
                      ) -> tuple[np.ndarray, tuple[float, float]]:
        """``u`` as float64 (batch, n_inputs) and the counting window (ms), both checked."""
        u = np.asarray(u, dtype=np.float64)
        n_inputs = self.circuit.n_inputs
        if u.ndim != 2 or u.shape[1] != n_inputs or u.shape[0] < 1:
            raise SpecError("u", f"shape {u.shape}", f"(batch, {n_inputs})")
        t0, t1 = window_ms if window_ms is not None else (duration_ms / 3.0, duration_ms)
        if not (0 <= t0 < t1 <= duration_ms):
            raise SpecError("window_ms", (t0, t1), f"0 <= t0 < t1 <= duration_ms = {duration_ms}")
        return u, (t0, t1)

    def _batch_size(self, batch_size: int | None, engine: str, n_inputs: int, duration_ms: float) -> int:
        """Replicas per simulation: as asked, else 256 (torch) or what fits half the memory budget."""
        sspec = self.circuit.spec.spiking
        if batch_size is None and engine == "torch":
            batch_size = 256
        if batch_size is None:
            per = estimate_bytes(self.circuit, sspec, 1, duration_ms,
                                 int(duration_ms / sspec.input.stimulus_dt_ms) + 2)
            batch_size = int(max(1, min(256, 0.5 * memory_budget_bytes() // max(per, 1.0))))
        return int(min(batch_size, n_inputs))

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return f"SpikingModel({self.circuit.spec.name!r}: {self.circuit.n_units} units)"


def to_spiking(circuit: Circuit, *, pool_size: int | None = None, p_connect: float | None = None,
               input_mode: str | None = None, rate_unit_hz: float | None = None,
               u_operating: np.ndarray | None = None, **spiking: Any) -> SpikingModel:
    """A (trained) rate circuit as a spiking network of LIF pools.

    Parameters
    ----------
    circuit : the rate circuit (e.g. from ``bridge.to_circuit``); its weights are used as they are
    pool_size : LIF neurons per rate unit (default ``circuit.spec.spiking.pool_size``)
    p_connect : connection probability between neurons of connected pools
    input_mode : ``"poisson"`` (default) or ``"current"`` (which also drops a Poisson split
        ``spiking.input.dc_mV``: the current is the whole drive)
    rate_unit_hz : Hz per rate unit (transfers other than ``lif``)
    u_operating : (n_inputs,) operating input of the gain scaling (default: the mean input of
        the first :meth:`SpikingModel.run`)
    **spiking : further ``[spiking]`` fields, dotted: ``{"synapse.kind": "conductance"}``

    Returns
    -------
    SpikingModel
        ``.run(u)`` -> :class:`SpikeCounts`; ``.simulate(stimulus)`` -> dataset.
    """
    changes: dict[str, Any] = {f"spiking.{k}": v for k, v in spiking.items()}
    for key, value in (("pool_size", pool_size), ("synapse.p_connect", p_connect),
                       ("input.mode", input_mode), ("rate_unit_hz", rate_unit_hz)):
        if value is not None:
            changes[f"spiking.{key}"] = value
    if input_mode == "current" and circuit.spec.spiking.input.dc_mV and "input.dc_mV" not in spiking:
        changes["spiking.input.dc_mV"] = {}  # a current input carries the whole drive, its DC part included
    spec = circuit.spec
    if changes:
        try:
            spec = spec.replace(**changes)
        except (KeyError, TypeError):
            raise SpecError("spiking", ", ".join(changes), "existing [spiking] fields") from None
    return SpikingModel(dataclasses.replace(circuit, spec=spec), u_operating)
