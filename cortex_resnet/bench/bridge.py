"""``cortex-resnet bench bridge``: the unrolled circuit's cost against hand-written torch.

1. **Time.** Forward + backward of a tied and an untied unrolled net (N = 512,
   K = 20 steps, batch 256, float32, CPU) side by side, interleaved, with a
   hand-written residual MLP of the same shapes and the same arithmetic
   (``r + a (-r + relu(r W^T + d))`` with plain ``nn.Parameter`` weights, one or
   K matrices). Ratio = median time of ours / median of the reference; goal <= 1.1.
2. **Memory.** Training at equilibrium (the steady-state layer, implicit
   gradients) against backpropagation through K unrolled steps, K = 10, 50, 200
   (the solver is given K iterations forward and K backward, so both do work
   proportional to K). Two honest measures: the bytes autograd keeps for the
   backward pass (every tensor packed by ``saved_tensors_hooks``, counted once per
   storage), and the peak resident memory of a fresh process running one
   forward + backward (``VmHWM`` minus the resident size before the run;
   glibc is told to return freed blocks at once, so RSS follows live memory).

Timing ratios use the minimum wall time over interleaved repetitions (least
disturbed by other processes); medians and process-CPU ratios are in ``details``.
   Goal: flat for the steady-state layer (K = 200 within 1.2x of K = 10).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable

import numpy as np
import torch
from torch import nn

from cortex_resnet.bench import BenchResult
from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.model.spec import parse_spec
from cortex_resnet.bridge import unroll

__all__ = ["run", "ResidualMLP", "bench_circuit", "saved_tensor_bytes"]


def bench_circuit(n: int, seed: int = 0):
    """A dense E-I relu circuit with ``n`` units (3/4 E), canonical-microcircuit couplings."""
    n_E = (3 * n) // 4
    spec = parse_spec({
        "name": f"bench_{n}", "seed": seed,
        "populations": {"E": {"n": n_E, "tau_ms": 20.0, "transfer": {"name": "relu"}},
                        "I": {"n": n - n_E, "tau_ms": 10.0, "transfer": {"name": "relu"}}},
        "connectivity": {"kind": "dense", "J_EE": 2.0, "J_EI": 2.0, "J_IE": 1.2, "J_II": 1.0, "weight_cv": 0.1},
        "input": {"n_inputs": 16, "gain_E": 1.0, "gain_I": 0.5, "projection": "random"},
        "bias": {"E": 0.1, "I": 0.0},
    })
    return build_circuit(spec)


class ResidualMLP(nn.Module):
    """The reference: a hand-written residual MLP with the unrolled net's shapes and arithmetic."""

    def __init__(self, W: np.ndarray, B: np.ndarray, b: np.ndarray, alpha: np.ndarray, steps: int, tied: bool):
        super().__init__()
        as_t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
        self.Ws = nn.ParameterList([nn.Parameter(as_t(W).clone()) for _ in range(1 if tied else steps)])
        self.B, self.b = nn.Parameter(as_t(B)), nn.Parameter(as_t(b))
        self.register_buffer("alpha", as_t(alpha))
        self.steps = steps

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        d = u @ self.B.T + self.b
        r = torch.zeros(u.shape[0], self.b.shape[0])
        states = [r]
        for k in range(self.steps):
            W = self.Ws[min(k, len(self.Ws) - 1)]
            r = r + self.alpha * (-r + torch.relu(r @ W.T + d))
            states.append(r)
        return torch.stack(states)

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return f"ResidualMLP({self.steps} steps, {sum(p.numel() for p in self.parameters()):,} parameters)"


def _fwd_bwd(model: nn.Module, u: torch.Tensor) -> Callable[[], None]:
    def go() -> None:
        model.zero_grad(set_to_none=True)
        model(u).square().mean().backward()
    return go


def _interleaved(fns: dict[str, Callable[[], None]], reps: int) -> dict[str, dict[str, float]]:
    """Wall and process-CPU times (s) of each function: calls interleaved so drift hits all alike.

    Returns the minimum and the median wall time (the minimum is the least disturbed by
    other processes on a shared machine) and the median CPU time of this process.
    """
    for f in fns.values():
        f()  # warm-up
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            f()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    return {k: {"min_s": min(wall[k]), "median_s": statistics.median(wall[k]),
                "cpu_median_s": statistics.median(cpu[k])} for k in fns}


def time_results(n: int, steps: int, batch: int, reps: int) -> list[BenchResult]:
    c = bench_circuit(n)
    gen = torch.Generator().manual_seed(1)
    u = torch.rand(batch, c.n_inputs, generator=gen, dtype=torch.float32)
    dt = 0.5
    fns: dict[str, Callable[[], None]] = {}
    for variant in ("tied", "untied"):
        net = unroll(c, steps, dt, variant=variant, dtype=torch.float32)
        ref = ResidualMLP(c.W, c.B, c.b, dt / c.tau_ms, steps, tied=variant == "tied")
        with torch.no_grad():
            gap = float((net(u) - ref(u)).abs().max())
        if gap > 1e-4:
            raise RuntimeError(f"bench bridge: reference and unrolled net disagree ({gap:.3g}); not timing")
        fns[f"{variant}_unrolled"] = _fwd_bwd(net, u)
        fns[f"{variant}_reference"] = _fwd_bwd(ref, u)
    t = _interleaved(fns, reps)
    out = []
    for variant in ("tied", "untied"):
        ours, ref = t[f"{variant}_unrolled"], t[f"{variant}_reference"]
        ratio = ours["min_s"] / ref["min_s"]
        out.append(BenchResult(
            name=f"{variant} fwd+bwd time / hand-written residual MLP (N={n}, K={steps}, batch {batch}, float32, CPU)",
            value=ratio, unit="ratio (min wall time)", goal="<= 1.1", met=ratio <= 1.1,
            details={"unrolled": ours, "reference": ref, "reps": reps,
                     "median_ratio": ours["median_s"] / ref["median_s"],
                     "cpu_ratio": ours["cpu_median_s"] / ref["cpu_median_s"],
                     "torch_threads": torch.get_num_threads()}))
    return out


# ------------------------------------------------------------------------------ memory

def saved_tensor_bytes(fn: Callable[[], torch.Tensor]) -> tuple[int, torch.Tensor]:
    """Bytes autograd saves for backward while ``fn`` runs (each storage counted once)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(seen.values()), out


def _memory_case(method: str, steps: int, n: int, batch: int) -> Callable[[], torch.Tensor]:
    c = bench_circuit(n)
    gen = torch.Generator().manual_seed(2)
    u = torch.rand(batch, c.n_inputs, generator=gen, dtype=torch.float32)
    net = unroll(c, steps, 0.5, dtype=torch.float32)
    if method == "bptt":
        return lambda: net(u)[-1]
    return lambda: net.steady_state(u, tol=0.0, max_iter=steps, backward_max_iter=steps, backward_tol=0.0,
                                    raise_on_fail=False, fallback=False)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def peak_worker(method: str, steps: int, n: int, batch: int, threads: int) -> None:
    """Run in a fresh process: print the peak resident memory added by one forward + backward."""
    torch.set_num_threads(threads)
    fn = _memory_case(method, steps, n, batch)
    base = _rss_bytes()
    fn().square().mean().backward()
    print(json.dumps({"peak_bytes": max(_hwm_bytes() - base, 0)}))


def _hwm_bytes() -> int:
    """Peak resident size of this process image (VmHWM; unlike ru_maxrss it is not inherited
    from the parent across fork + exec)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _peak_subprocess(method: str, steps: int, n: int, batch: int) -> float | None:
    code = (f"from cortex_resnet.bench.bridge import peak_worker; "
            f"peak_worker({method!r}, {steps}, {n}, {batch}, {torch.get_num_threads()})")
    # fixed mmap threshold and one arena: freed tensors go back to the OS at once, so the
    # resident size follows the live memory instead of glibc's cached heap
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_ARENA_MAX": "1"}
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                              check=True, env=env)
        return float(json.loads(proc.stdout.strip().splitlines()[-1])["peak_bytes"])
    except (subprocess.SubprocessError, ValueError, KeyError, IndexError):
        return None


def memory_results(ks: tuple[int, ...], n: int, batch: int, peak: bool) -> list[BenchResult]:
    saved: dict[str, dict[int, float]] = {"bptt": {}, "steady": {}}
    rss: dict[str, dict[int, float | None]] = {"bptt": {}, "steady": {}}
    for method in ("bptt", "steady"):
        for k in ks:
            nbytes, out = saved_tensor_bytes(_memory_case(method, k, n, batch))
            out.square().mean().backward()
            saved[method][k] = float(nbytes)
            rss[method][k] = _peak_subprocess(method, k, n, batch) if peak else None
    lo, hi = ks[0], ks[-1]
    mib = 2.0 ** 20
    results = []
    for k in ks:
        results.append(BenchResult(
            name=f"saved-for-backward memory, steady-state layer / BPTT at K={k} (N={n}, batch {batch})",
            value=saved["steady"][k] / saved["bptt"][k], unit="ratio", goal="info", met=None,
            details={"steady_MiB": saved["steady"][k] / mib, "bptt_MiB": saved["bptt"][k] / mib,
                     "steady_peak_rss_MiB": None if rss["steady"][k] is None else rss["steady"][k] / mib,
                     "bptt_peak_rss_MiB": None if rss["bptt"][k] is None else rss["bptt"][k] / mib}))
    flat = saved["steady"][hi] / saved["steady"][lo]
    results.append(BenchResult(
        name=f"steady-state layer saved memory K={hi} / K={lo} (flat)", value=flat, unit="ratio",
        goal="<= 1.2", met=flat <= 1.2, details={"bptt_ratio": saved["bptt"][hi] / saved["bptt"][lo]}))
    if peak and all(rss[m][k] for m in rss for k in (lo, hi)):
        flat_rss = rss["steady"][hi] / rss["steady"][lo]
        results.append(BenchResult(
            name=f"steady-state layer peak RSS K={hi} / K={lo} (flat)", value=flat_rss, unit="ratio",
            goal="<= 1.2", met=flat_rss <= 1.2,
            details={"bptt_ratio": rss["bptt"][hi] / rss["bptt"][lo],
                     "steady_MiB": {k: rss["steady"][k] / mib for k in ks},
                     "bptt_MiB": {k: rss["bptt"][k] / mib for k in ks}}))
    return results


def run(quick: bool = False) -> list[BenchResult]:
    """All bridge measurements; ``quick`` uses small sizes and skips the subprocess RSS runs."""
    if quick:
        return time_results(n=128, steps=5, batch=32, reps=3) + memory_results((10, 50), n=64, batch=16, peak=False)
    return (time_results(n=512, steps=20, batch=256, reps=15)
            + memory_results((10, 50, 200), n=512, batch=256, peak=True))
