"""Batched spiking engine in torch: the Brian2 engine's network, many stimuli and seeds at once.

    ds = simulate_spiking(circuit, u_batch, engine="torch")          # same Dataset as engine="brian2"
    raw, raw_x = TorchEngine(plan, dtype="float32").run_pair(seed)  # r-run and x-run in one pass

It consumes the same :class:`~cortex_resnet.spiking.build.SpikingPlan` as
:mod:`cortex_resnet.spiking.brian` and returns the same :class:`RawRun`, so
binning, statistics and the xarray layout are shared.

**Why our own update and not snnTorch/Norse/SpikingJelly.** Their LIF cells
are written for training (surrogate gradients, dimensionless state, a reset
by subtraction or by the next step's decay, no absolute refractory clamp, no
transmission delays, dense ``Linear`` weights, one global random stream);
none reproduces Brian2's time step (below), so matching Brian2's spike steps
exactly would need changes to every piece. The update here is ~40 lines.

**One time step ``k`` (t = k dt), in Brian2's schedule order**:

1. *start*: Poisson input ``poisson(rate(t) dt)`` per neuron (rate looked up
   in the stimulus table exactly as Brian2's ``TimedArray`` indexes it) is added
   to ``I_e`` / ``g_e`` / ``v`` (delta synapses: only if not refractory, with
   the refractoriness of the previous step); traces are recorded.
2. *groups*: ``not_refractory = k - k_last >= floor(t_ref / dt + 1e-3)``; the
   state updater of ``spiking.method``, the same expressions as Brian2 generates:
   ``euler`` (``I <- I - dt I / tau``; ``v <- v + dt f(v) / tau_m +
   sigma sqrt(dt / tau_m) xi``) or ``exponential_euler`` (exact propagators of
   the linear subthreshold dynamics given the synaptic state at the step's
   start); ``v`` is written only when not refractory.
3. *thresholds*: ``v > v_th`` and not refractory -> spike at ``t``.
4. *synapses*: spikes of step ``k - D`` (``D = round(delay / dt)``; the spike
   list of every step is kept anyway, so the delay line is a look-up, no ring
   buffer) arrive: ``I/g += w`` or, delta synapses, ``v += w`` for neurons not
   refractory. Per-synapse delays (``plan.delays_ms``, PD14's spread): each synapse
   ``j -> i`` with ``d`` steps (Brian2's rounding) delivers the spike of step ``k - d``
   (:mod:`cortex_resnet.spiking.delay_csr`).
5. *resets*: ``v = v_reset`` for the neurons that spiked.

Connectivity is one padded CSR (ELL) per pathway, rows = presynaptic neurons, shared by
all replicas; a step expands only the outgoing synapses of the neurons that
spiked (index scatter, never a dense N x N). A merged plan (conditions that differ only in coupling
strengths: :mod:`cortex_resnet.spiking.replica_weights`) stacks one weight block per condition and a
spike gathers its row at ``condition * rows + row`` (``self.wrow``); DC and noise are then (batch, n).

**Speed** (float32 at batch 256 is the scoring case): the state-independent part of
``v_new`` (scaled drive + noise) is prepared per chunk of steps into one reused
buffer (each replica's N(0, 1) numbers into a (batch, steps, n) buffer, then one
``addcmul`` for the whole chunk), so a step is one fused ``addcmul`` over the state, a threshold
compare, and sparse index writes (refractory clamp, resets, deliveries: see
:class:`~cortex_resnet.spiking.torch_state._State`; on the CPU one delay's deliveries are one
compiled pass, :mod:`~cortex_resnet.spiking.delivery_kernel`); the drive of a current input is stored
per rate unit (the neurons of a pool share it). Runs under ``torch.inference_mode``. Random numbers: one
``torch.Generator`` per stimulus replica, seeded from ``(seed, replica)``,
drawn in fixed chunks of :data:`RANDOM_CHUNK_STEPS` steps (Poisson counts,
then white noise), so a replica's input spikes do not depend on the batch it
runs in; with ``torch.set_num_threads(T > 1)`` on the CPU, T worker threads draw blocks of
replicas (the same streams: the thread count changes no number). The x-run (recurrence off) is a second copy of the state in the
same pass using the same random numbers: the same input spikes and noise.
Potentials in mV, times in ms, rates in Hz.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from cortex_resnet.core.resources import check_memory, release_freed_memory
from cortex_resnet.errors import SpecError
from cortex_resnet.spiking.brian import RawRun
from cortex_resnet.spiking.build import ASSUMED_RATE_HZ, SpikingPlan
from cortex_resnet.spiking.delay_csr import DelayCSR, csr_from_synapses
from cortex_resnet.spiking.delivery_kernel import MAX_INVERSION_LAMBDA, poisson_inversion
from cortex_resnet.spiking.initial_state import replica_seed
from cortex_resnet.spiking.replica_weights import condition_rows, condition_synapses, replica_bytes
from cortex_resnet.spiking.torch_pooled import PooledDelivery, PoolSynapses, pooled_bytes, synapse_count
from cortex_resnet.spiking.torch_state import _State, ell

__all__ = ["ENGINES", "RANDOM_CHUNK_STEPS", "TorchEngine", "check_engine", "replica_seed", "torch_bytes"]

ENGINES = ("brian2", "torch")
TRIM_EVERY_CHUNKS = 16  # chunks (of 16 steps) between handing freed memory back to the OS
RANDOM_CHUNK_STEPS = 16  # part of the definition of the random streams: do not make it size-dependent
DTYPES = {"float64": torch.float64, "float32": torch.float32}


def torch_bytes(plan: SpikingPlan, copies: int, itemsize: int) -> float:
    """Memory (bytes) a run of ``plan`` with ``copies`` state copies (2: r- and x-run) will need."""
    B, n = plan.batch, plan.n
    el = copies * B * n
    graph = getattr(plan, "graph", None)
    if isinstance(plan.synapses, PoolSynapses):
        nnz = 0
    else:
        nnz = sum(synapse_count(plan.synapses, k) for k in plan.synapses) if graph is None else graph.nnz
    state = el * (4 * itemsize + 8) + n * 8 * itemsize  # v, v_new, two synaptic variables, last spike step
    chunk = 3 * RANDOM_CHUNK_STEPS * B * n * itemsize  # pre (drive + noise), noise, Poisson counts
    table = 0 if plan.input_values is None else plan.input_values.shape[0] * B * n * itemsize
    spikes = el * ASSUMED_RATE_HZ * plan.duration_ms * 1e-3 * 40  # flat indices + RawRun arrays
    per_step = el * ASSUMED_RATE_HZ * plan.dt_ms * 1e-3 * (nnz / max(n, 1)) * 40  # event expansion
    if isinstance(plan.synapses, PoolSynapses):  # pool tables instead of synapses (spiking.torch_pooled)
        per_step += pooled_bytes(plan.synapses, el * ASSUMED_RATE_HZ * plan.dt_ms * 1e-3, el // n, itemsize)
    return state + chunk + table + spikes + per_step + nnz * (16 + itemsize) + replica_bytes(plan, itemsize)


class TorchEngine:
    """Runs a :class:`SpikingPlan` in torch (module docstring); interface of ``RuntimeEngine``.

    Parameters
    ----------
    plan : the network (the Brian2 engine's plan)
    device : ``cpu``, ``cuda`` or ``auto``
    dtype : ``float64`` or ``float32`` (state and weights)
    seeds : optional (batch,) seed per replica (a batch over seeds); default ``(seed, replica)``
    input_spikes : optional (K, 3) integer rows ``(step, replica, neuron)``: given input spike trains
        instead of the Poisson input (each row one spike of weight ``w_in`` at the *start* of the step)
    poisson : how Poisson input counts are drawn from a replica's generator: ``torch``
        (``torch.poisson``, the default stream) or ``inversion`` (one uniform per neuron and step,
        the inverse CDF, compiled: ~5x faster, for the full-scale microcircuit's 77,000 inputs per
        step; another stream with the same distribution; CPU, <= 30 expected spikes per step)
    """

    compiled = False
    _pool: ThreadPoolExecutor | None = None

    def __init__(self, plan: SpikingPlan, *, device: str = "cpu", dtype: str = "float64",
                 seeds: np.ndarray | None = None, input_spikes: np.ndarray | None = None, poisson: str = "torch"):
        if dtype not in DTYPES:
            raise SpecError("dtype", dtype, "float64 or float32")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device not in ("cpu", "cuda") or (device == "cuda" and not torch.cuda.is_available()):
            raise SpecError("device", device, "cpu, auto, or cuda on a machine with CUDA")
        self.plan, self.device, self.dtype = plan, torch.device(device), DTYPES[dtype]
        rep = getattr(plan, "replica", None)  # traces: the first replica of each condition
        self.trace_rows = [0] if rep is None else [int(b) for b in rep.starts[:-1]]
        self.device_name = f"torch-{device}-{dtype}"
        if plan.has_noise and plan.sspec.method == "exponential_euler":
            raise SpecError("spiking.method", "exponential_euler", "euler for a network with white noise "
                            "(spiking.background_noise = 'match'): Brian2 has no exponential Euler for it either")
        self.seeds = None if seeds is None else np.asarray(seeds, np.int64).reshape(-1)
        if self.seeds is not None and self.seeds.shape != (plan.batch,):
            raise SpecError("seeds", f"shape {self.seeds.shape}", f"one seed per replica, shape ({plan.batch},)")
        self.given = None if input_spikes is None else np.asarray(input_spikes, np.int64).reshape(-1, 3)
        if self.given is not None and self.given.size and (
                self.given.min(0) < 0).any() | (self.given.max(0) >= [10**12, plan.batch, plan.n]).any():
            raise SpecError("input_spikes", "out-of-range rows", f"(step >= 0, replica < {plan.batch}, neuron < {plan.n})")
        if poisson not in ("torch", "inversion") or (poisson == "inversion" and device != "cpu"):
            raise SpecError("poisson", poisson, "torch, or inversion on the CPU")
        self.poisson, self.compile_s, self.last_run_s = poisson, 0.0, 0.0
        t0 = time.perf_counter()
        self._prepare()
        if poisson == "inversion" and self.table is not None and plan.sspec.input.mode == "poisson" \
                and float(self.table.max()) * plan.dt_ms * 1e-3 > MAX_INVERSION_LAMBDA:
            raise SpecError("poisson", "inversion", f"torch for inputs above {MAX_INVERSION_LAMBDA:g} spikes per step")
        self.build_s = time.perf_counter() - t0

    def _t(self, a: Any, dtype: Any = None) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a), dtype=dtype or self.dtype, device=self.device)

    def _prepare(self) -> None:
        p, nr = self.plan, self.plan.neuron
        self.D = int(round(p.sspec.synapse.delay_ms / p.dt_ms))
        self.ref_steps = self._t(np.floor((nr["t_ref_ms"] + 1e-3 * p.dt_ms) / p.dt_ms), torch.int32)
        self.par = {k: self._t(nr[k]) for k in ("tau_m_ms", "v_rest_mV", "v_th_mV", "v_reset_mV",
                                                 "mu_dc_mV", "sigma_mV", "w_in")}
        self.replica = getattr(p, "replica", None)  # per-replica weights, DC, noise (spiking.replica_weights)
        sigma = nr["sigma_mV"] if self.replica is None else self.replica.sigma_mV
        self.noise_scale = self._t(sigma) * math.sqrt(p.dt_ms) / torch.sqrt(self.par["tau_m_ms"])
        self.pools = None
        self._synapses()
        self.n_steps = n_steps = int(round(p.duration_ms / p.dt_ms))
        # v_new = a v + b (drive + I_E - I_I) + noise (current and delta synapses; module docstring)
        dt_tau = p.dt_ms / nr["tau_m_ms"]
        a = np.exp(-dt_tau) if p.sspec.method == "exponential_euler" else 1.0 - dt_tau
        self.a, self.b, self.neg_b, self.dt_tau = self._t(a), self._t(1.0 - a), self._t(a - 1.0), self._t(dt_tau)
        coef = 1.0 - a  # of the drive in ``pre`` (_draw); conductance: dt/tau_m (euler), 1 (exact)
        if p.synapse_kind == "conductance":
            coef = dt_tau if p.sspec.method == "euler" else np.ones_like(dt_tau)
        base = nr["v_rest_mV"] + (nr["mu_dc_mV"] if self.replica is None else self.replica.mu_dc_mV)
        self.base = self._t(coef * base)  # (n,) or, per-replica DC, (batch, n): the constant part of ``pre``
        self.table = None
        if p.input_values is not None:  # Brian2's TimedArray index of t = k dt (see brian2/input/timedarray.py)
            dt_s, sdt_s = p.dt_ms * 1e-3, p.stim_dt_ms * 1e-3
            K = max(int(2 ** np.ceil(np.log2(8 / dt_s * sdt_s))), 1)
            eps = sdt_s / K
            t_s = np.arange(n_steps) * dt_s
            idx = ((t_s / eps + 0.5) / K).astype(np.int64)
            self.stim_index = np.clip(idx, 0, p.input_values.shape[0] - 1)
            tab = p.input_values.reshape(p.input_values.shape[0], p.batch, -1)
            U = tab.shape[2]
            pools = (p.n % U == 0 and np.array_equal(p.unit_of, np.repeat(np.arange(U), p.n // U))
                     and all(np.ptp(a.reshape(-1, p.n // U), axis=1).max() == 0 for a in (coef, base)))
            self.pools = (U, p.n // U) if pools else None
            if p.sspec.input.mode == "current" and pools:  # per unit: the neurons of a pool share their drive
                self.table = self._t(coef[::p.n // U] * (base[..., ::p.n // U] + tab))
            elif p.sspec.input.mode == "current":  # the whole drive, scaled: one table look-up per step
                self.table = self._t(coef * (base + tab[:, :, p.unit_of]))
            else:
                self.table = self._t(tab[:, :, p.unit_of])  # Poisson rates (Hz)

    def _synapses(self) -> None:
        """Delivery tables: pooled (spiking.torch_pooled), else per pathway the ELL rows ``self.csr``: (n, max
        out-degree) targets padded with 0 (weight 0) and weights ((C n, width): one block per condition with
        per-replica weights, row offsets ``self.wrow``), or the delay-sorted CSR ``self.graph``."""
        p = self.plan
        syn = p.synapses
        self.pooled = PooledDelivery(self, syn) if isinstance(syn, PoolSynapses) else None
        self.csr, self.wrow = {}, None
        self.graph = _delay_graph(p)  # per-synapse delays: delay-sorted CSR (spiking.delay_csr); else None
        if self.pooled is not None or self.graph is not None:
            return
        sets = [syn] if self.replica is None else [condition_synapses(p, c) for c in range(self.replica.n_conditions)]
        if p.synapse_kind == "delta":  # both pathways move v: one table with signed weights ("V")
            sets = [{"V": tuple(np.concatenate([s["E"][i], s["I"][i] * (-1 if i == 2 else 1)]) for i in range(3))}
                    for s in sets]
        for pop, (pre, post, _) in sets[0].items():
            if pre.size:  # one delay for all: padded rows, the spikes of step k - D
                rows = [ell(pre, post, s[pop][2], p.n) for s in sets]
                self.csr[pop] = (self._t(rows[0][0], torch.int64), self._t(np.concatenate([r[1] for r in rows])))
        rows_of = condition_rows(p, 2, p.n)
        self.wrow = None if rows_of is None else self._t(rows_of, torch.int64)

    def run(self, recurrent: bool = True, seed: int = 0, progress: Callable | None = None) -> RawRun:
        """One run from the plan's initial state; ``recurrent=False``: synapses off, same input spikes."""
        return self._simulate([bool(recurrent)], seed, progress)[0]

    def run_pair(self, seed: int = 0, progress: Callable | None = None) -> tuple[RawRun, RawRun]:
        """The recurrent run and the run without recurrence, in one pass with shared random numbers."""
        raw, raw_x = self._simulate([True, False], seed, progress)
        return raw, raw_x

    def _generators(self, seed: int) -> list[torch.Generator]:
        seeds = self.seeds if self.seeds is not None else [replica_seed(seed, b) for b in range(self.plan.batch)]
        gens = []
        for s in seeds:
            g = torch.Generator(device=self.device)
            g.manual_seed(int(s))
            gens.append(g)
        return gens

    def _draw(self, gens: list[torch.Generator], k0: int, steps: int) -> tuple[Any, torch.Tensor]:
        """Poisson input counts (steps, batch, n) or None, and ``pre`` (steps, batch, n): the part of
        ``v_new`` that does not depend on the state (the scaled drive plus the white noise)."""
        p = self.plan
        poisson = lam = None
        current = self.table is not None and p.sspec.input.mode == "current"
        if self.given is not None:
            rows = self.given[(self.given[:, 0] >= k0) & (self.given[:, 0] < k0 + steps)]
            poisson = torch.zeros((steps, p.batch, p.n), dtype=self.dtype, device=self.device)
            ix = self._t(rows.T - np.array([[k0], [0], [0]]), torch.int64)
            poisson.index_put_(tuple(ix), torch.ones(len(rows), dtype=self.dtype, device=self.device), accumulate=True)
        elif self.table is not None and not current:
            ix = torch.as_tensor(self.stim_index[k0:k0 + steps], device=self.device)
            lam = self.table[ix] * (p.dt_ms * 1e-3)  # (steps, batch, n) expected spikes per step
            poisson = torch.empty_like(lam)
        pre = self._pre[:steps]  # reused: a fresh chunk each time costs more in page faults than it computes
        drive = self._drive(k0, steps) if current else self.base.expand((steps, p.batch, p.n))
        if not p.has_noise and current:
            pre.view(drive.shape).copy_(drive)
        elif not p.has_noise:
            pre = drive
        noise = self._noise[:, :steps] if p.has_noise else None  # (batch, steps, n)
        if lam is not None or noise is not None:
            self._draw_all(gens, lam, poisson, noise)
        if noise is not None:  # sigma sqrt(dt / tau_m) xi, Brian2's Euler-Maruyama increment: one pass
            shape = drive.shape  # (steps, batch, n) or (steps, batch, units, pool_size)
            scale = self.noise_scale.view(shape[2:] if self.noise_scale.dim() == 1 else shape[1:])  # (B, n): per replica
            torch.addcmul(drive, noise.transpose(0, 1).view(shape), scale, out=pre.view(shape))
        return poisson, pre

    def _draw_all(self, gens: list[torch.Generator], lam: torch.Tensor | None, poisson: torch.Tensor | None,
                  noise: torch.Tensor | None) -> None:
        """Each replica's Poisson counts, then its white noise, from its own generator; with workers,
        each draws a block of replicas (the streams are independent; torch drops the GIL)."""
        if self._pool is None:
            self._draw_replicas(range(self.plan.batch), gens, lam, poisson, noise)
            return
        blocks = np.array_split(np.arange(self.plan.batch), self._pool._max_workers)
        list(self._pool.map(lambda r: self._draw_replicas(r, gens, lam, poisson, noise), blocks))

    def _draw_replicas(self, replicas: Any, gens: list[torch.Generator], lam: torch.Tensor | None,
                       poisson: torch.Tensor | None, noise: torch.Tensor | None) -> None:
        """The Poisson counts into ``poisson[:, b]`` and N(0, 1) numbers into ``noise[b]`` (steps, n)."""
        with torch.inference_mode():  # thread-local: a worker thread must enter it too
            for b in replicas:
                if lam is not None:
                    poisson[:, b] = self._poisson(lam[:, b], gens[b])
                if noise is not None:  # torch.randn's stream: randn is empty().normal_()
                    noise[b].normal_(generator=gens[b])

    def _poisson(self, lam: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Poisson counts with means ``lam`` from generator ``g`` (``self.poisson``: the sampler)."""
        if self.poisson == "torch":
            return torch.poisson(lam, generator=g)
        u = torch.rand(lam.shape, generator=g, dtype=torch.float64)
        out = torch.empty(lam.shape, dtype=lam.dtype)
        poisson_inversion(u.numpy().reshape(-1), lam.contiguous().numpy().reshape(-1), out.numpy().reshape(-1))
        return out

    def _drive(self, k0: int, steps: int) -> torch.Tensor:
        """The scaled current drive of steps ``k0 ..``: (steps, batch, n), or (steps, batch, units,
        pool_size) as a broadcast view when the neurons of a pool share it (``self.pools``)."""
        rows = self.table[torch.as_tensor(self.stim_index[k0:k0 + steps], device=self.device)]
        if self.pools is None:
            return rows
        return rows[..., None].expand(rows.shape + (self.pools[1],))

    def _simulate(self, recurrent: list[bool], seed: int, progress: Callable | None) -> list[RawRun]:
        p = self.plan
        R, B, n = len(recurrent), p.batch, p.n
        check_memory(torch_bytes(p, R, torch.finfo(self.dtype).bits // 8),
                     f"spiking engine 'torch', batch = {B}" + (" (x2: decomposition)" if R > 1 else ""),
                     f"lower the batch (a run of {B} x {n} neurons does not fit), spiking.pool_size or the duration")
        t0 = time.perf_counter()
        gens = self._generators(seed)
        traces: list[np.ndarray] = []
        n_rec = int(recurrent[0])  # copy 0 is the recurrent one (when there is one); callers keep that order
        # draws of the replicas' generators on torch's intra-op thread count (the streams do not depend on it)
        workers = min(torch.get_num_threads(), B) if self.device.type == "cpu" else 1
        with torch.inference_mode():
            st = _State(self, R)
            self._pre = torch.empty((RANDOM_CHUNK_STEPS, B, n), dtype=self.dtype, device=self.device)
            self._noise = torch.empty((B, RANDOM_CHUNK_STEPS, n), dtype=self.dtype, device=self.device)
            self._pool = ThreadPoolExecutor(workers) if workers > 1 else None
            try:
                self._steps(st, gens, traces, n_rec, progress)
            finally:
                if self._pool is not None:
                    self._pool.shutdown()
                self._pool = self._pre = self._noise = None
            lens = torch.tensor([s.numel() for s in st.spikes], dtype=torch.int64)
            flat = torch.cat(st.spikes).cpu() if st.spikes else torch.zeros(0, dtype=torch.int64)
        step = torch.repeat_interleave(torch.arange(len(st.spikes)), lens)
        hit = torch.stack([step, flat // (B * n), (flat // n) % B, flat % n], 1)
        self.last_run_s = time.perf_counter() - t0
        return self._raw(hit.numpy(), traces, R)

    def _steps(self, st: _State, gens: list[torch.Generator], traces: list[np.ndarray], n_rec: int,
               progress: Callable | None) -> None:
        """All time steps, a chunk of random numbers at a time."""
        p, stride = self.plan, self.plan.sspec.monitor.trace_stride
        for k0 in range(0, self.n_steps, RANDOM_CHUNK_STEPS):
            steps = min(RANDOM_CHUNK_STEPS, self.n_steps - k0)
            poisson, pre = self._draw(gens, k0, steps)
            for j in range(steps):
                k = k0 + j
                st.input(k, None if poisson is None else poisson[j])
                if p.trace_neurons.size and k % stride == 0:
                    traces.append(st.v[:, self.trace_rows][..., p.trace_neurons].reshape(len(st.v), -1).cpu().numpy())
                st.step(k, pre[j], n_rec)
            st.check_finite(k0 + steps)
            if (k0 // RANDOM_CHUNK_STEPS) % TRIM_EVERY_CHUNKS == TRIM_EVERY_CHUNKS - 1:
                release_freed_memory()  # else freed step temporaries pile up in glibc's heap (5 GB at PD14 scale 1)
            if progress is not None:
                progress((k0 + steps) / self.n_steps)

    def _raw(self, hit: np.ndarray, traces: list[np.ndarray], R: int) -> list[RawRun]:
        """Rows ``(step, copy, replica, neuron)`` -> one :class:`RawRun` per copy."""
        p = self.plan
        t_tr = np.arange(0, self.n_steps, p.sspec.monitor.trace_stride) * p.dt_ms if traces else np.zeros(0)
        tr = np.stack(traces, 1) if traces else np.zeros((R, 0, 0))
        out = []
        for r in range(R):
            h = hit[hit[:, 1] == r]
            out.append(RawRun(h[:, 2] * p.n + h[:, 3], h[:, 0] * p.dt_ms, t_tr, tr[r] if traces else np.zeros((0, 0))))
        return out

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return f"TorchEngine({self.plan.n} neurons x batch {self.plan.batch}, {self.dtype} on {self.device})"


def _delay_graph(plan: SpikingPlan) -> DelayCSR | None:
    """The plan's synapses as a delay-sorted CSR when they have per-synapse delays, else None."""
    graph = getattr(plan, "graph", None)
    if graph is not None or plan.delays_ms is None:
        return graph
    return csr_from_synapses(plan.synapses, plan.delays_ms, plan.sspec.synapse.delay_ms, plan.n,
                             int(plan.is_E.sum()), plan.dt_ms)


def check_engine(engine: str, standalone: bool) -> None:
    """SpecError naming the field for an unknown engine or an option the torch engine does not have."""
    if engine not in ENGINES:
        raise SpecError("engine", engine, f"one of {', '.join(ENGINES)}")
    if engine == "torch" and standalone:
        raise SpecError("standalone", True, "False with engine = 'torch' (C++ standalone is a Brian2 device)")

