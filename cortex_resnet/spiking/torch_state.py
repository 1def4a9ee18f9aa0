"""The torch engine's network state for one batch: membrane potentials, synaptic currents,
refractory clocks and the recent spike lists that serve as the delay line (see
:mod:`cortex_resnet.spiking.torch_engine` for the equations and why the update looks as it does).
Potentials in mV, currents in pA (current-based) or conductances in nS, times in ms."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

from cortex_resnet.errors import SpecError, UnstableCircuitError
from cortex_resnet.spiking.delay_csr import DelayedDelivery
from cortex_resnet.spiking.delivery_kernel import load_kernel
from cortex_resnet.spiking.replica_weights import ReplicaDelayedDelivery

if TYPE_CHECKING:  # the engine owns the state; the type only, no import cycle
    from cortex_resnet.spiking.torch_engine import TorchEngine

__all__ = ["ell", "kernel_rows"]


class _State:
    """State of ``R`` copies of the batch (R, B, n) and the update of one step (module docstring).

    Refractoriness is sparse: a refractory neuron's ``v`` stays exactly ``v_reset`` (reset at its
    spike, not integrated, deliveries and input spikes masked), so instead of masking every
    dense update the neurons that spiked within the last ``t_ref`` are written back to
    ``v_reset`` (an index write of a few thousand entries) and ``v > v_th`` needs no
    refractory mask (``v_reset < v_th``, checked by the spec). Spikes are kept as flat indices
    into ``(R, B, n)`` per step: the record, the delay line (the spikes of step ``k - D`` are
    expanded and added at step ``k``: no dense ring) and the refractory sets.
    """

    def __init__(self, eng: TorchEngine, R: int):
        p, dev, dt = eng.plan, eng.device, eng.dtype
        self.eng, self.p, self.R = eng, p, R
        shape = (R, p.batch, p.n)
        self.v = eng._t(p.v0_mV).expand(shape).clone()  # a copy: as_tensor shares the plan's float64 array, and v is updated in place
        self.v_new = torch.empty_like(self.v)
        self.flat_n = R * p.batch * p.n
        self.last = torch.full((self.flat_n,), -(2**30), dtype=torch.int64, device=dev)  # step of the last spike
        syn = p.sspec.synapse
        self.kind = syn.kind
        self.tau = {"E": syn.tau_e_ms, "I": syn.tau_i_ms}
        self.syn = {pop: torch.zeros(shape, dtype=dt, device=dev) for pop in ("E", "I")
                    if syn.kind == "conductance" or self.tau[pop] > 0}
        self.delivery = self._delivery(eng, shape)
        self.method, self.dt = p.sspec.method, p.dt_ms
        self.decay = {pop: (math.exp(-self.dt / self.tau[pop]) if self.method == "exponential_euler"
                            else 1.0 - self.dt / self.tau[pop]) for pop in self.syn}
        self.spikes: list[torch.Tensor] = []  # flat indices of the spikes of step k
        self.ref = eng.ref_steps.to(torch.int64)
        self.max_ref = int(self.ref.max()) if self.ref.numel() else 0
        self.uniform_ref = bool((self.ref == self.max_ref).all())
        self.v_reset, self.v_th = eng.par["v_reset_mV"], eng.par["v_th_mV"]
        self.spikes_empty = torch.zeros(0, dtype=torch.int64, device=dev)
        cpu = dev.type == "cpu"
        self.th_np = self.v_th.numpy() if cpu else None
        self.above_buf = np.empty((R * p.batch, p.n), bool) if cpu else None
        # one delay for all, on the CPU: the compiled loop over the arriving spikes' rows (one pass)
        self.kernel = load_kernel() if (cpu and eng.csr and eng.pooled is None and self.flat_n < 2**31) else None
        self.rows = {pop: kernel_rows(*eng.csr[pop]) for pop in eng.csr} if self.kernel is not None else {}
        self.col0 = np.zeros(self.flat_n, np.int64) if self.kernel is not None else None
        # per-replica weights: a spike of copy c walks its condition's row, 2 (start, end) entries per row
        self.col_of_copy = None if self.kernel is None or eng.wrow is None else 2 * eng.wrow.numpy()
        vr = np.unique(p.neuron["v_reset_mV"])
        self.reset_value = float(vr[0]) if vr.size == 1 else None

    def _delivery(self, eng: TorchEngine, shape: tuple) -> DelayedDelivery | None:
        """Per-synapse delays: the delivery through the delay-sorted CSR, into ``v`` (delta
        synapses) or into ``E``/``I`` stacked in one tensor (``self.syn_flat``); else None."""
        if eng.graph is None:
            return None
        channels = 1 if self.p.synapse_kind == "delta" else 2
        if channels == 2:
            if len(self.syn) != 2:
                raise SpecError("spiking.synapse", "one delta and one exponential pathway",
                                "tau_e_ms and tau_i_ms both 0 or both > 0 with per-synapse delays")
            stack = torch.zeros((2,) + shape, dtype=eng.dtype, device=eng.device)
            self.syn, self.syn_flat = {"E": stack[0], "I": stack[1]}, stack.view(-1)
        if eng.replica is not None:  # each condition's own weights (spiking.replica_weights)
            return ReplicaDelayedDelivery(self.p, shape[0] * shape[1], channels, eng.dtype, eng.device)
        return DelayedDelivery(eng.graph, shape[0] * shape[1], channels, eng.dtype, eng.device)

    def _recent(self, k: int, lo: int, hi: int) -> torch.Tensor:
        """The spikes of steps ``k - hi .. k - lo`` (flat indices, concatenated)."""
        parts = self.spikes[max(k - hi, 0):max(k - lo + 1, 0)]
        return torch.cat(parts) if parts else self.spikes_empty

    def _clamp(self, idx: torch.Tensor) -> None:
        """``v = v_reset`` for the neurons ``idx`` (flat indices)."""
        if not idx.numel():
            return
        if self.reset_value is not None:  # one reset potential for all: no gather
            self.v.view(-1).index_fill_(0, idx, self.reset_value)
        else:
            self.v.view(-1)[idx] = self.v_reset[idx % self.p.n]

    def _refractory(self, k: int) -> torch.Tensor:
        """Neurons refractory at the *groups* slot of step ``k``: ``k - last < t_ref / dt`` (spiked before k)."""
        if self.max_ref <= 1:
            return self.spikes_empty
        c = self._recent(k, 1, self.max_ref - 1)
        if self.uniform_ref or not c.numel():
            return c
        return c[(k - self.last[c]) < self.ref[c % self.p.n]]

    def input(self, k: int, counts: torch.Tensor | None) -> None:
        """Slot *start*: Poisson input spikes (or nothing: a current is part of the drive)."""
        if counts is None:
            return
        jump = self.eng.par["w_in"] * counts  # (B, n), broadcast over the copies
        if "E" in self.syn:
            self.syn["E"] += jump
            return
        self.v += jump  # delta: masked for the refractory of the previous step (it spiked at k - 1 too)
        c = self._recent(k, 1, max(self.max_ref, 1))
        if c.numel() and not self.uniform_ref:
            c = c[((k - 1 - self.last[c]) < self.ref[c % self.p.n]) | (self.last[c] == k - 1)]
        self._clamp(c)

    def step(self, k: int, pre: torch.Tensor, n_rec: int) -> torch.Tensor:
        """Slots *groups*, *thresholds*, *synapses*, *resets*; returns the spikes (flat indices).

        ``pre``: the part of ``v_new`` that does not depend on the state (TorchEngine._draw)."""
        q, eng, v = self.eng.par, self.eng, self.v
        if self.kind == "conductance":
            ge, gi = self.syn["E"], self.syn["I"]
            E_e, E_i = self.p.sspec.synapse.E_e_mV, self.p.sspec.synapse.E_i_mV
            if self.method == "euler":  # pre = dt drive / tau_m + noise
                vn = torch.addcmul(pre, ge * (E_e - v) + gi * (E_i - v) - v, eng.dt_tau, out=self.v_new)
                vn += v
            else:  # pre = drive (no noise with this method)
                gtot = 1.0 + ge + gi
                v_inf = (pre + ge * E_e + gi * E_i) / gtot
                vn = torch.addcmul(v_inf, v - v_inf, torch.exp(-self.dt * gtot / q["tau_m_ms"]), out=self.v_new)
        else:  # v_new = a v + b (drive + I_E - I_I) + noise; pre = b drive + noise
            vn = torch.addcmul(pre, v, eng.a, out=self.v_new)
            for pop, sign in (("E", 1.0), ("I", -1.0)):
                if pop in self.syn:
                    vn.addcmul_(self.syn[pop], eng.b if sign > 0 else eng.neg_b)
        for pop, g in self.syn.items():  # after their use: the values at the step's start
            g.mul_(self.decay[pop])
        self.v, self.v_new = vn, v
        ref = self._refractory(k)
        self._clamp(ref)  # not integrated while refractory
        spk = self._above(vn)
        self.spikes.append(spk)
        self.last[spk] = k
        self._deliver(k, n_rec)
        if self.p.synapse_kind == "delta":  # the plan's kind: the spec says "current" for tau = 0 synapses
            self._clamp(ref)  # deliveries masked while refractory (Brian2: v_post += w*int(not_refractory_post))
        self._clamp(spk)  # resets
        return spk

    def _above(self, v: torch.Tensor) -> torch.Tensor:
        """Flat indices of ``v > v_th`` (on the CPU through NumPy: torch's bool compare and
        ``nonzero`` take ~4x longer there)."""
        if self.th_np is None:
            return (v > self.v_th).view(-1).nonzero().view(-1)
        np.greater(v.numpy().reshape(-1, self.p.n), self.th_np, out=self.above_buf)
        return torch.from_numpy(np.flatnonzero(self.above_buf))

    def _deliver(self, k: int, n_rec: int) -> None:
        """Slot *synapses*: the recurrent copies' spikes of step ``k - D`` arrive (index scatter)."""
        if self.delivery is not None:  # per-synapse delays: the spikes of steps k - d_max .. k - d_min
            dest = self.v.view(-1) if self.delivery.channels == 1 else self.syn_flat
            self.delivery.deliver(k, self.spikes, n_rec * self.p.batch * self.p.n, dest)
            return
        D = self.eng.D
        if k < D or not n_rec:
            return
        src = self.spikes[k - D]
        if n_rec < self.R:
            src = src[src < n_rec * self.p.batch * self.p.n]
        if not src.numel():
            return
        if self.eng.pooled is not None:  # pool-level delivery (spiking.torch_pooled)
            self.eng.pooled.deliver(self, src)
            return
        n = self.p.n
        if self.kernel is not None:  # the same additions in the same order as the index_add_ below
            s = src.numpy()
            col = self.col0[:s.size] if self.col_of_copy is None else self.col_of_copy[s // n]
            for pop, (dptr, key, w) in self.rows.items():
                dest = self.v if pop == "V" else self.syn[pop]
                self.kernel(dptr, key, w, s, col, n, 2, dest.view(-1).numpy())
            return
        row, j = src - src % n, src % n
        wj = j if self.eng.wrow is None else j + self.eng.wrow[src // n]  # per-replica weights: the condition's rows
        for pop, (post, w) in self.eng.csr.items():
            tgt = (row[:, None] + post[j]).view(-1)
            dest = self.v if pop == "V" else self.syn[pop]
            dest.view(-1).index_add_(0, tgt, w[wj].view(-1))

    def check_finite(self, k_end: int) -> None:
        """Stop as the Brian2 engine does (``spiking.check_finite``) when a potential became NaN/inf."""
        if math.isfinite(float(self.v.sum())):  # one reduction: NaN and inf propagate into the sum
            return
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
    neuron 0, with weight 0: adding 0 changes nothing) and weights; the order within a row is the synapses' order."""
    order = np.argsort(pre, kind="stable")
    deg = np.bincount(pre, minlength=n)
    width = max(1, int(deg.max()))
    col = np.arange(pre.size) - np.repeat(np.cumsum(deg) - deg, deg)
    targets = np.zeros((n, width), np.int64)
    weights = np.zeros((n, width), np.float64)
    targets[pre[order], col] = post[order]
    weights[pre[order], col] = w[order]
    return targets, weights


def kernel_rows(post: torch.Tensor, w: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ELL rows (:func:`ell`, as tensors) -> the compiled delivery's CSR (``delivery_kernel``):
    ``dptr`` (2 rows,) the start and end of each row, int32 targets, weights, in row order. The padding
    (weight 0) is left out: adding 0 changes nothing. Per-replica weights (``w`` (C n, width), one block
    per condition over the shared targets ``post`` (n, width)): C blocks of rows, condition-major."""
    wn, pn = w.cpu().numpy(), post.cpu().numpy()
    pn = np.tile(pn, (wn.shape[0] // pn.shape[0], 1))
    keep = wn != 0
    ends = np.cumsum(keep.sum(axis=1))
    dptr = np.stack([ends - keep.sum(axis=1), ends], axis=1).reshape(-1).astype(np.int64)
    return dptr, pn[keep].astype(np.int32), np.ascontiguousarray(wn[keep])
