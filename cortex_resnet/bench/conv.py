"""``cortex-resnet bench conv``: convolutional recurrence against the dense matrices it replaces.

Three ways to run the same translation-invariant spatial E/I circuit, side by side in one
process, on the same input (float32, CPU unless a GPU is present):

* ``dense``: one learnable weight per connection (:class:`~cortex_resnet.bridge.dale.DaleMatrix`,
  an ``N x N`` matrix per step; what ``recurrence = "dense"`` allocates);
* ``gather``: shared kernels gathered into the dense ``W^T`` at every forward pass, then one
  ``addmm`` per step (the old ``recurrence = "conv"`` path);
* ``conv``: the shared kernels run as a real circular convolution on their compact window
  (:mod:`cortex_resnet.rate.conv`; the new path).

Cases: the CIFAR-10 circuit's map (8 x 8 sites, 16 E + 4 I channels, N = 1280, untied over
K = 18 steps as ``cifar10_circuit_untied18``, but translation invariant: ``weight_cv = 0``) and
the MNIST-1D ring (40 sites, 8 E + 2 I channels, N = 400, tied, K = 10). Measured: learnable
numbers allocated for the recurrence; memory = bytes of the recurrence's parameters and
buffers plus the bytes autograd saves for backward (each storage once); forward + backward
wall time (minimum over interleaved repetitions; medians in ``details``). Ratios are
``gather / conv`` (time, memory) and ``dense / conv`` (parameters).
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch

from cortex_resnet.bench import BenchResult
from cortex_resnet.bench.bridge import saved_tensor_bytes
from cortex_resnet.bridge import unroll
from cortex_resnet.bridge.unroll import UnrolledCircuit
from cortex_resnet.model.circuit import Circuit, build_circuit
from cortex_resnet.model.spec import parse_spec

__all__ = ["run", "conv_case", "recurrence_cost"]

CASES: dict[str, dict[str, Any]] = {
    "cifar10_8x8_untied": {"map": [8, 8], "E": 16, "I": 4, "sigma": 0.5, "steps": 18, "variant": "untied",
                           "batch": 128},
    "mnist1d_ring_tied": {"map": [40], "E": 8, "I": 2, "sigma": 1.5, "steps": 10, "variant": "tied", "batch": 100},
}


def conv_case(name: str) -> Circuit:
    """The translation-invariant spatial circuit of a bench case (:data:`CASES`)."""
    c = CASES[name]
    sites = 1
    for s in c["map"]:
        sites *= s
    spec = parse_spec({
        "name": name, "seed": 0,
        "populations": {"E": {"n": c["E"] * sites, "tau_ms": 10.0, "transfer": {"name": "relu"}},
                        "I": {"n": c["I"] * sites, "tau_ms": 5.0, "transfer": {"name": "relu"}}},
        "connectivity": {"kind": "spatial", "map_shape": c["map"], "sigma_E": c["sigma"], "sigma_I": c["sigma"],
                         "J_EE": 0.5, "J_EI": 1.0, "J_IE": 1.0, "J_II": 0.5, "weight_cv": 0.0},
        "input": {"n_inputs": sites, "projection": "topographic"},
        "bias": {"E": 0.1, "I": 0.0},
    })
    return build_circuit(spec)


def _nets(name: str, steps: int) -> dict[str, tuple[UnrolledCircuit, Callable[[torch.Tensor], torch.Tensor]]]:
    c, case = conv_case(name), CASES[name]
    kw = dict(variant=case["variant"], dtype=torch.float32)
    dense = unroll(c, steps, 1.0, **kw)
    shared = unroll(c, steps, 1.0, recurrence="conv", **kw)

    def gather(u: torch.Tensor) -> torch.Tensor:  # the old path: W^T gathered, one addmm per step
        WTs = shared.W.transposed().unbind(0)
        r, d = shared.initial_state(u), shared.drive(u)
        for k in range(steps):
            r = shared.step(r, d, k, WTs[min(k, len(WTs) - 1)])
        return r

    return {"dense": (dense, lambda u: dense(u)[-1]), "gather": (shared, gather),
            "conv": (shared, lambda u: shared(u)[-1])}


def _module_bytes(m: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in list(m.parameters()) + list(m.buffers()))


def recurrence_cost(name: str, quick: bool = False) -> dict[str, dict[str, float]]:
    """Parameters, memory (bytes) and fwd+bwd time (s) of each recurrence on one bench case."""
    case = CASES[name]
    steps = max(2, case["steps"] // 3) if quick else case["steps"]
    nets = _nets(name, steps)
    gen = torch.Generator().manual_seed(1)
    n_in = next(iter(nets.values()))[0].n_inputs
    u = torch.rand(case["batch"], n_in, generator=gen)
    out: dict[str, dict[str, float]] = {}
    fns = {}
    for key, (net, fn) in nets.items():
        saved, r = saved_tensor_bytes(lambda: fn(u))
        out[key] = {"params": float(sum(p.numel() for p in net.W.parameters())),
                    "params_effective": float(net.W.n_effective()),
                    "memory_bytes": float(_module_bytes(net.W) + saved), "final_mean_rate": float(r.detach().mean())}

        def fwd_bwd(net: UnrolledCircuit = net, fn: Callable = fn) -> None:
            net.zero_grad(set_to_none=True)
            fn(u).sum().backward()
        fns[key] = fwd_bwd
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(2 if quick else 5):
        for k, f in fns.items():  # interleaved: a load spike hits all three alike
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    for k, t in times.items():
        out[k].update({"time_s": min(t), "time_median_s": statistics.median(t), "steps": float(steps)})
    return out


def run(quick: bool = False) -> list[BenchResult]:
    """Side by side per case: parameter, memory and time ratios with their goals."""
    results = []
    for name in CASES:
        cost = recurrence_cost(name, quick)
        conv, gather, dense = cost["conv"], cost["gather"], cost["dense"]
        same = abs(conv["final_mean_rate"] - gather["final_mean_rate"]) <= 1e-5 * max(abs(gather["final_mean_rate"]),
                                                                                       1e-30)
        results += [
            BenchResult(f"{name}: parameters dense / conv", dense["params"] / conv["params"], "x", "informational",
                        None, {"dense": dense["params"], "conv": conv["params"],
                               "dense_effective": dense["params_effective"],
                               "conv_effective": conv["params_effective"]}),
            BenchResult(f"{name}: memory gather / conv", gather["memory_bytes"] / conv["memory_bytes"], "x", ">= 1",
                        gather["memory_bytes"] >= conv["memory_bytes"],
                        {k: v["memory_bytes"] for k, v in cost.items()}),
            BenchResult(f"{name}: fwd+bwd time gather / conv", gather["time_s"] / conv["time_s"], "x", ">= 1",
                        gather["time_s"] >= conv["time_s"],
                        {k: {"min_s": v["time_s"], "median_s": v["time_median_s"]} for k, v in cost.items()}
                        | {"steps": conv["steps"]}),
            BenchResult(f"{name}: fwd+bwd time dense / conv", dense["time_s"] / conv["time_s"], "x", "informational",
                        None, {}),
            BenchResult(f"{name}: conv and gather agree (float32 mean rate)", conv["final_mean_rate"], "rate",
                        "equal to gather within 1e-5 relative", same, {"gather": gather["final_mean_rate"]}),
        ]
    return results
