"""``cortex-resnet bench pd14``: the Potjans-Diesmann microcircuit in our engines and in NEST, one run.

Each engine runs the same network (:mod:`cortex_resnet.spiking.pd14_file` /
:mod:`cortex_resnet.spiking.nest_ref`: delays and weights with their spread, Poisson background,
DC compensation) in a fresh process, one after the other, so that each one's peak memory
(resident set, the standalone binary included) is its own:

* NEST 3.10 on 1 and 2 threads (``local_num_threads``),
* Brian2 runtime (Cython), Brian2 C++ standalone (cached build: the build is timed apart; a
  second run of the cached binary is the measured one) on 1 thread and with OpenMP on 2,
* the torch engine: not run -- it has one delay line and refuses per-synapse delays.

Reported per engine: ``rtf`` = simulation wall time / biological time (the simulation loop:
NEST ``Run``, Brian2's ``Network.run``, the standalone binary's whole run), the build (network
construction and, standalone, the compiled project on a cold cache), peak RSS (MB) and the
per-population rates (Hz). The goal (issue 15): our best RTF no slower than NEST's best on the
same cores. Default scale 0.05 for 1 s (``quick``: scale 0.02, 0.2 s); ``scale=1`` is the full
network (NEST: ~14 GB; Brian2 is refused by its memory estimate above ~scale 0.9 in 24 GB).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import resource
import sys
import tempfile

import numpy as np

from cortex_resnet.bench import BenchResult
from cortex_resnet.model import pd14 as P
from cortex_resnet.spiking.nest_ref import nest_available, run_nest
from cortex_resnet.spiking.pd14_compare import run_brian2

__all__ = ["run", "measure"]

T0_MS = 200.0  # start transient left out of the rates


def _log(msg: str) -> None:
    print(f"[bench pd14] {msg}", file=sys.stderr, flush=True)


def measure(engine: str, scale: float, duration_ms: float, seed: int = 1, cache_dir: str | None = None) -> dict:
    """One engine's run in this process: timings (s), rates (Hz), peak RSS (MB, self and children)."""
    if engine.startswith("nest"):
        out = run_nest(scale, duration_ms, seed=seed, threads=int(engine[-1]))
    elif engine == "brian2-runtime":
        out = run_brian2(scale, duration_ms, seed=seed)
    else:  # brian2-standalone-N: build (cold or cached), then the measured second run
        threads = int(engine[-1])
        run_brian2(scale, duration_ms, seed=seed, standalone=True, threads=threads, cache_dir=cache_dir)
        # the same seed: the same synapse graph, so the cached build (the seed also draws the graph)
        out = run_brian2(scale, duration_ms, seed=seed, standalone=True, threads=threads, cache_dir=cache_dir)
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    rates = {k: float(np.count_nonzero(t >= T0_MS) / out.sizes[k] / ((duration_ms - T0_MS) * 1e-3))
             for k, (_, t) in out.spikes.items()}
    return {"engine": out.engine, "timing": out.timing, "rates_hz": rates, "peak_rss_mb": rss / 1024.0,
            "neurons": int(sum(out.sizes.values()))}


def _isolated(engine: str, scale: float, duration_ms: float, cache_dir: str) -> dict:
    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(measure, engine, scale, duration_ms, 1, cache_dir).result()


def run(quick: bool = False, scale: float | None = None) -> list[BenchResult]:
    """The bench (see module docstring); ``scale`` overrides the default 0.05 (quick: 0.02)."""
    scale = (0.02 if quick else 0.05) if scale is None else float(scale)
    duration_ms = 400.0 if quick else 1000.0
    engines = ["brian2-runtime", "brian2-standalone-1", "brian2-standalone-2"]
    if nest_available():
        engines = ["nest-1", "nest-2"] + engines
    out: dict[str, dict] = {}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-pd14-") as cache_dir:
        for eng in engines:
            _log(f"{eng}: scale {scale}, {duration_ms:g} ms")
            out[eng] = _isolated(eng, scale, duration_ms, cache_dir)
            _log(f"{eng}: {out[eng]['timing']}, {out[eng]['peak_rss_mb']:.0f} MB")
    bio_s = duration_ms * 1e-3
    results = []
    for eng, m in out.items():
        rtf = m["timing"]["sim_s"] / bio_s
        results.append(BenchResult(f"rtf_{eng.replace('-', '_')}", rtf, "x real time", "information", None,
                                   {**m, "scale": scale, "duration_ms": duration_ms, "load_1min": load,
                                    "published_full_scale_rates_hz": dict(zip(P.POPULATIONS,
                                                                               P.NEST_FULL_SCALE_RATES_HZ.tolist()))}))
    ours = min(out[e]["timing"]["sim_s"] for e in out if e.startswith("brian2"))
    if any(e.startswith("nest") for e in out):
        nest = min(out[e]["timing"]["sim_s"] for e in out if e.startswith("nest"))
        results.append(BenchResult("ours_best_over_nest_best_rtf", ours / nest, "ratio", "<= 1.0", ours <= nest,
                                   {"ours_sim_s": ours, "nest_sim_s": nest, "torch": "not run: per-synapse delays"}))
    return results
