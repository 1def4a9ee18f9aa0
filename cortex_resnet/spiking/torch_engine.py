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
4. *synapses*: spikes of step ``k - D`` (``D = round(delay / dt)``, a ring
   buffer of ``D + 1`` slots) arrive: ``I/g += w`` or, delta synapses,
   ``v += w`` for neurons not refractory.
5. *resets*: ``v = v_reset`` for the neurons that spiked.

Connectivity is one CSR per pathway sorted by presynaptic neuron, shared by
all replicas; a step expands only the outgoing synapses of the neurons that
spiked (index scatter, never a dense N x N). Random numbers: one
``torch.Generator`` per stimulus replica, seeded from ``(seed, replica)``,
drawn in fixed chunks of :data:`RANDOM_CHUNK_STEPS` steps (Poisson counts,
then white noise), so a replica's input spikes do not depend on the batch it
runs in. The x-run (recurrence off) is a second copy of the state in the
same pass using the same random numbers: the same input spikes and noise.
Potentials in mV, times in ms, rates in Hz.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np
import torch

from cortex_resnet.errors import SpecError, UnstableCircuitError
from cortex_resnet.core.resources import check_memory
from cortex_resnet.spiking.brian import RawRun
from cortex_resnet.spiking.build import ASSUMED_RATE_HZ, SpikingPlan

__all__ = ["TorchEngine", "torch_bytes", "check_engine", "ENGINES", "RANDOM_CHUNK_STEPS", "replica_seed"]

ENGINES = ("brian2", "torch")
RANDOM_CHUNK_STEPS = 64  # part of the definition of the random streams: do not make it size-dependent
DTYPES = {"float64": torch.float64, "float32": torch.float32}


def replica_seed(seed: int, replica: int) -> int:
    """Seed of replica ``replica``'s random stream (64-bit, from ``numpy.random.SeedSequence``)."""
    return int(np.random.SeedSequence([int(seed) % 2**63, int(replica)]).generate_state(1, np.uint64)[0] >> 1)


def torch_bytes(plan: SpikingPlan, copies: int, itemsize: int) -> float:
    """Memory (bytes) a run of ``plan`` with ``copies`` state copies (2: r- and x-run) will need."""
    B, n = plan.batch, plan.n
    el = copies * B * n
    D = int(round(plan.sspec.synapse.delay_ms / plan.dt_ms))
    nnz = sum(int(s[0].size) for s in plan.synapses.values())
    state = el * (4 * itemsize + 4 + 3) + 2 * (D + 1) * el * itemsize
    chunk = RANDOM_CHUNK_STEPS * B * n * (3 * itemsize) + RANDOM_CHUNK_STEPS * el
    spikes = el * ASSUMED_RATE_HZ * plan.duration_ms * 1e-3 * 40  # nonzero() rows + RawRun arrays
    per_step = el * ASSUMED_RATE_HZ * plan.dt_ms * 1e-3 * (nnz / max(n, 1)) * 40  # event expansion
    return state + chunk + spikes + per_step + nnz * (16 + itemsize)


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
    """

    compiled = False

    def __init__(self, plan: SpikingPlan, *, device: str = "cpu", dtype: str = "float64",
                 seeds: np.ndarray | None = None, input_spikes: np.ndarray | None = None):
        if dtype not in DTYPES:
            raise SpecError("dtype", dtype, "float64 or float32")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device not in ("cpu", "cuda") or (device == "cuda" and not torch.cuda.is_available()):
            raise SpecError("device", device, "cpu, auto, or cuda on a machine with CUDA")
        self.plan, self.device, self.dtype = plan, torch.device(device), DTYPES[dtype]
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
        self.compile_s = 0.0
        self.last_run_s = 0.0
        t0 = time.perf_counter()
        self._prepare()
        self.build_s = time.perf_counter() - t0

    def _t(self, a: Any, dtype: Any = None) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a), dtype=dtype or self.dtype, device=self.device)

    def _prepare(self) -> None:
        p, nr = self.plan, self.plan.neuron
        self.D = int(round(p.sspec.synapse.delay_ms / p.dt_ms))
        self.ref_steps = self._t(np.floor((nr["t_ref_ms"] + 1e-3 * p.dt_ms) / p.dt_ms), torch.int32)
        self.par = {k: self._t(nr[k]) for k in ("tau_m_ms", "v_rest_mV", "v_th_mV", "v_reset_mV",
                                                 "mu_dc_mV", "sigma_mV", "w_in")}
        syn = p.synapses
        if p.synapse_kind == "delta":  # both pathways move v: one table with signed weights ("V")
            syn = {"V": tuple(np.concatenate([syn["E"][i], syn["I"][i] * (-1 if i == 2 else 1)]) for i in range(3))}
        self.noise_scale = self.par["sigma_mV"] * math.sqrt(p.dt_ms) / torch.sqrt(self.par["tau_m_ms"])
        self.csr = {}  # per pathway: (n, max out-degree) targets padded with the sink n, and weights
        for pop, (pre, post, w) in syn.items():
            if pre.size:
                self.csr[pop] = tuple(self._t(a, d) for a, d in zip(ell(pre, post, w, p.n), (torch.int64, None)))
        n_steps = int(round(p.duration_ms / p.dt_ms))
        self.n_steps = n_steps
        if p.input_values is not None:  # Brian2's TimedArray index of t = k dt (see brian2/input/timedarray.py)
            dt_s, sdt_s = p.dt_ms * 1e-3, p.stim_dt_ms * 1e-3
            K = max(int(2 ** np.ceil(np.log2(8 / dt_s * sdt_s))), 1)
            eps = sdt_s / K
            t_s = np.arange(n_steps) * dt_s
            idx = ((t_s / eps + 0.5) / K).astype(np.int64)
            self.stim_index = np.clip(idx, 0, p.input_values.shape[0] - 1)
            self.table = self._t(p.input_values.reshape(p.input_values.shape[0], p.batch, -1)[:, :, p.unit_of])

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

    def _draw(self, gens: list[torch.Generator], k0: int, steps: int) -> tuple[Any, Any]:
        """Poisson input counts and white noise (steps, batch, n) for steps ``k0 .. k0 + steps``."""
        p = self.plan
        poisson = noise = lam = None
        if self.given is not None:
            rows = self.given[(self.given[:, 0] >= k0) & (self.given[:, 0] < k0 + steps)]
            poisson = torch.zeros((steps, p.batch, p.n), dtype=self.dtype, device=self.device)
            ix = self._t(rows.T - np.array([[k0], [0], [0]]), torch.int64)
            poisson.index_put_(tuple(ix), torch.ones(len(rows), dtype=self.dtype, device=self.device), accumulate=True)
        elif p.input_values is not None and p.sspec.input.mode == "poisson":
            ix = torch.as_tensor(self.stim_index[k0:k0 + steps], device=self.device)
            lam = self.table[ix] * (p.dt_ms * 1e-3)  # (steps, batch, n) expected spikes per step
            poisson = torch.empty_like(lam)
        if p.has_noise:  # (batch, steps, n): each replica's block contiguous, filled in place
            noise = torch.empty((p.batch, steps, p.n), dtype=self.dtype, device=self.device)
        for b, g in enumerate(gens):
            if lam is not None:
                poisson[:, b] = torch.poisson(lam[:, b], generator=g)
            if noise is not None:
                torch.randn((steps, p.n), generator=g, dtype=self.dtype, device=self.device, out=noise[b])
        if noise is not None:  # sigma sqrt(dt / tau_m) xi, Brian2's Euler-Maruyama increment
            noise = (noise * self.noise_scale).transpose(0, 1)
        return poisson, noise

    def _simulate(self, recurrent: list[bool], seed: int, progress: Callable | None) -> list[RawRun]:
        p = self.plan
        R, B, n = len(recurrent), p.batch, p.n
        check_memory(torch_bytes(p, R, torch.finfo(self.dtype).bits // 8),
                     f"spiking engine 'torch', batch = {B}" + (" (x2: decomposition)" if R > 1 else ""),
                     f"lower the batch (a run of {B} x {n} neurons does not fit), spiking.pool_size or the duration")
        t0 = time.perf_counter()
        st = _State(self, R)
        gens = self._generators(seed)
        rec = torch.zeros((RANDOM_CHUNK_STEPS, R, B, n), dtype=torch.bool, device=self.device)
        spikes: list[torch.Tensor] = []
        traces: list[np.ndarray] = []
        stride = p.sspec.monitor.trace_stride
        n_rec = int(recurrent[0])  # copy 0 is the recurrent one (when there is one); callers keep that order
        for k0 in range(0, self.n_steps, RANDOM_CHUNK_STEPS):
            steps = min(RANDOM_CHUNK_STEPS, self.n_steps - k0)
            poisson, noise = self._draw(gens, k0, steps)
            for j in range(steps):
                k = k0 + j
                st.input(k, None if poisson is None else poisson[j])
                if p.trace_neurons.size and k % stride == 0:
                    traces.append(st.v[:, 0, p.trace_neurons].cpu().numpy().copy())
                rec[j] = st.step(k, None if noise is None else noise[j], n_rec)
            hit = rec[:steps].nonzero()
            hit[:, 0] += k0
            spikes.append(hit)
            st.check_finite(k0 + steps)
            if progress is not None:
                progress((k0 + steps) / self.n_steps)
        self.last_run_s = time.perf_counter() - t0
        return self._raw(spikes, traces, R)

    def _raw(self, spikes: list[torch.Tensor], traces: list[np.ndarray], R: int) -> list[RawRun]:
        p = self.plan
        hit = torch.cat(spikes).cpu().numpy() if spikes else np.zeros((0, 4), np.int64)
        t_tr = np.arange(0, self.n_steps, p.sspec.monitor.trace_stride) * p.dt_ms if traces else np.zeros(0)
        tr = np.stack(traces, 1) if traces else np.zeros((R, 0, 0))
        out = []
        for r in range(R):
            h = hit[hit[:, 1] == r]
            out.append(RawRun(h[:, 2] * p.n + h[:, 3], h[:, 0] * p.dt_ms, t_tr, tr[r] if traces else np.zeros((0, 0))))
        return out


class _State:
    """State of ``R`` copies of the batch (R, B, n) and the update of one step (module docstring)."""

    def __init__(self, eng: TorchEngine, R: int):
        p, dev, dt = eng.plan, eng.device, eng.dtype
        self.eng, self.p, self.R = eng, p, R
        shape = (R, p.batch, p.n)
        self.v = eng._t(p.v0_mV).expand(shape).clone()
        self.last = torch.full(shape, -(2**30), dtype=torch.int32, device=dev)  # step of the last spike
        self.nr = torch.ones(shape, dtype=torch.bool, device=dev)
        syn = p.sspec.synapse
        self.kind = syn.kind
        self.tau = {"E": syn.tau_e_ms, "I": syn.tau_i_ms}
        self.syn = {pop: torch.zeros(shape, dtype=dt, device=dev) for pop in ("E", "I")
                    if syn.kind == "conductance" or self.tau[pop] > 0}
        L = eng.D + 1
        # ring slot: (copies x replicas, n + 1), the last column the sink of the padded synapse rows
        self.ring = {pop: torch.zeros((L, R * p.batch, p.n + 1), dtype=dt, device=dev) for pop in eng.csr}
        self.method = p.sspec.method
        self.dt = p.dt_ms
        q = eng.par
        self.decay = {pop: (math.exp(-self.dt / self.tau[pop]) if self.method == "exponential_euler" else None)
                      for pop in self.syn}
        self.prop_m = torch.exp(-self.dt / q["tau_m_ms"])

    def input(self, k: int, counts: torch.Tensor | None) -> None:
        """Slot *start*: Poisson input spikes (or nothing: a current is read in :meth:`step`)."""
        if counts is None:
            return
        jump = self.eng.par["w_in"] * counts  # (B, n), broadcast over the copies
        if "E" in self.syn:
            self.syn["E"] += jump
        else:
            self.v += jump * self.nr

    def _current(self, k: int) -> torch.Tensor | float:
        p = self.p
        if p.input_values is None or p.sspec.input.mode != "current":
            return 0.0
        return self.eng.table[int(self.eng.stim_index[k])]

    def step(self, k: int, noise: torch.Tensor | None, n_rec: int) -> torch.Tensor:
        """Slots *groups*, *thresholds*, *synapses*, *resets*; returns the spikes (R, B, n)."""
        q, dt = self.eng.par, self.dt
        self.nr = (k - self.last) >= self.eng.ref_steps
        v = self.v
        drive = q["v_rest_mV"] + q["mu_dc_mV"] + self._current(k)
        if self.kind == "conductance":
            ge, gi = self.syn["E"], self.syn["I"]
            E_e, E_i = self.p.sspec.synapse.E_e_mV, self.p.sspec.synapse.E_i_mV
            if self.method == "euler":
                v_new = v + dt * (ge * (E_e - v) + gi * (E_i - v) + drive - v) / q["tau_m_ms"]
            else:
                gtot = 1.0 + ge + gi
                v_inf = (drive + ge * E_e + gi * E_i) / gtot
                v_new = v_inf + (v - v_inf) * torch.exp(-dt * gtot / q["tau_m_ms"])
        else:
            for pop, sign in (("E", 1.0), ("I", -1.0)):
                if pop in self.syn:
                    drive = drive + sign * self.syn[pop]
            if self.method == "euler":
                v_new = v + dt * (drive - v) / q["tau_m_ms"]
            else:
                v_new = drive + (v - drive) * self.prop_m
        if noise is not None:  # already scaled by sigma sqrt(dt / tau_m) (TorchEngine._draw)
            v_new = v_new + noise
        for pop, g in self.syn.items():  # uses the values at the step's start (updated above)
            if self.decay[pop] is None:
                g -= g * (dt / self.tau[pop])
            else:
                g *= self.decay[pop]
        self.v = v = torch.where(self.nr, v_new, v)
        spk = (v > q["v_th_mV"]) & self.nr
        self.last = torch.where(spk, k, self.last)
        self.nr = self.nr & ~spk
        self._synapses(k, spk, n_rec)
        self.v = torch.where(spk, q["v_reset_mV"].expand_as(v), self.v)
        return spk

    def _synapses(self, k: int, spk: torch.Tensor, n_rec: int) -> None:
        """Slot *synapses*: expand the recurrent copies' spikes into the ring, deliver slot ``k``."""
        L = self.eng.D + 1
        B, n = self.p.batch, self.p.n
        if n_rec:
            b, j = spk[:n_rec].reshape(-1, n).nonzero(as_tuple=True)  # copy r < n_rec: row r*B + b
        for pop, (post, w) in self.eng.csr.items():
            ring = self.ring[pop]
            if n_rec and j.numel():  # row r*B + b of the flat ring slot; column n is the sink of the padding
                tgt = (b[:, None] * (n + 1) + post[j]).view(-1)
                ring[(k + self.eng.D) % L].view(-1).index_add_(0, tgt, w[j].view(-1))
            arrived = ring[k % L, :, :n].view(self.v.shape)
            if pop == "V":  # delta synapses: v jumps, not while refractory
                self.v = self.v + arrived * self.nr
            else:
                self.syn[pop] += arrived
            ring[k % L].zero_()

    def check_finite(self, k_end: int) -> None:
        """Stop as the Brian2 engine does (``spiking.check_finite``) when a potential became NaN/inf."""
        bad = ~torch.isfinite(self.v)
        if bool(bad.any()):
            r, b, i = (int(x) for x in bad.nonzero()[0])
            t_ms = k_end * self.dt
            what = "recurrent run" if r == 0 else "run without recurrence"
            circuit = self.p.circuit
            raise UnstableCircuitError(
                f"spiking {what}: a membrane potential became NaN/inf at t <= {t_ms:.2f} ms (neuron {i} of "
                f"stimulus {b}): the integration blew up. Lower the synaptic weights or the input, or reduce "
                f"spiking.dt_ms; the rate model of {circuit.spec.name!r} (cortex-resnet simulate --backend rate) "
                "reports max Re(eig).", time_ms=t_ms)


def ell(pre: np.ndarray, post: np.ndarray, w: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Outgoing synapses of each presynaptic neuron as rows (n, max out-degree): targets (padding:
    the sink ``n``) and weights (padding: 0); the order within a row is the synapses' order."""
    order = np.argsort(pre, kind="stable")
    deg = np.bincount(pre, minlength=n)
    width = max(1, int(deg.max()))
    col = np.arange(pre.size) - np.repeat(np.cumsum(deg) - deg, deg)
    targets = np.full((n, width), n, np.int64)
    weights = np.zeros((n, width), np.float64)
    targets[pre[order], col] = post[order]
    weights[pre[order], col] = w[order]
    return targets, weights


def check_engine(engine: str, standalone: bool) -> None:
    """SpecError naming the field for an unknown engine or an option the torch engine does not have."""
    if engine not in ENGINES:
        raise SpecError("engine", engine, f"one of {', '.join(ENGINES)}")
    if engine == "torch" and standalone:
        raise SpecError("standalone", True, "False with engine = 'torch' (C++ standalone is a Brian2 device)")

