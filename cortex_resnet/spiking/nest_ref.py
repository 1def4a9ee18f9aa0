"""The Potjans & Diesmann (2014) microcircuit in NEST: the reference our engines are compared to.

A package module (not a test helper) because ``cortex-resnet bench pd14`` runs it side by side
with our engines; NEST (``pip install nest-simulator``, the ``validate`` extra) is imported only
when a run is asked for. The network is built from :func:`cortex_resnet.model.pd14.pd14`, the
parameters ported from NEST's own example (``pynest/examples/Potjans_2014``), written here
independently of its code:

* ``iaf_psc_exp`` neurons (C 250 pF, tau_m 10 ms, tau_syn 0.5 ms, t_ref 2 ms, E_L = V_reset
  = -65 mV, V_th -50 mV), the DC compensation of the downscaling as ``I_e``;
  initial potentials normal, mean -58 mV, sd 10 mV (the example's ``V0_type = "original"``);
* ``fixed_total_number`` connections ``round(K N_post)`` per pathway (autapses and multapses
  allowed: NEST's defaults), weights normal with 10 % sd redrawn across 0, delays normal
  (1.5 / 0.75 ms, 50 % sd) redrawn below half a step;
* background: one Poisson generator per population at ``8 Hz * K_ext`` (scaled in-degree),
  weight ``w_ext``, delay 1.5 ms (the example's ``delay_poisson``);
* one ``spike_recorder`` per population.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from cortex_resnet.model import pd14 as P

__all__ = ["PopulationSpikes", "build_nest", "import_nest", "nest_available", "run_nest"]

V0_MEAN_MV, V0_SD_MV = -58.0, 10.0  # NEST example, V0_type "original"
DELAY_POISSON_MS = 1.5              # NEST example, delay_poisson


@dataclass
class PopulationSpikes:
    """Spikes of one run, per population: ``spikes[name] = (neuron index within the population,
    time in ms)``; ``sizes[name]`` neurons; ``timing`` in seconds (``build_s``, ``sim_s``)."""

    sizes: dict[str, int]
    spikes: dict[str, tuple[np.ndarray, np.ndarray]]
    duration_ms: float
    timing: dict[str, float] = field(default_factory=dict)
    engine: str = ""

    def __repr__(self) -> str:
        """One line: engine, populations, neurons, spikes and duration (ms)."""
        n_spikes = sum(int(t.size) for _, t in self.spikes.values())
        return (f"PopulationSpikes({self.engine or 'engine ?'}, {len(self.sizes)} populations, "
                f"{sum(self.sizes.values())} neurons, {n_spikes} spikes in {self.duration_ms:g} ms)")


def nest_available() -> bool:
    """Whether NEST can be imported (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("nest") is not None


def import_nest():
    """The ``nest`` module (quiet); ImportError when NEST is not installed."""
    os.environ.setdefault("PYNEST_QUIET", "1")
    import nest  # deferred: optional reference simulator (validate extra), slow to import

    return nest


def _connect(nest, pops: list, net: P.PD14, dt_ms: float, rule: str = "fixed_total_number") -> None:
    """The recurrent pathways: fixed total numbers (or, ``pairwise_bernoulli``, our engines' draws
    with ``p = K / N_pre``), normal weights and delays, redrawn."""
    for i, target in enumerate(pops):
        for j, source in enumerate(pops):
            n_syn = int(round(net.K[i, j] * net.N[i]))
            if n_syn == 0:
                continue
            w = float(net.psc_pA[i, j])
            lo, hi = (0.0, np.inf) if w >= 0 else (-np.inf, 0.0)
            d = P.DELAY_EXC_MS if j % 2 == 0 else P.DELAY_INH_MS
            syn = {"synapse_model": "static_synapse",
                   "weight": nest.math.redraw(nest.random.normal(mean=w, std=abs(w) * P.WEIGHT_REL_SD), min=lo, max=hi),
                   "delay": nest.math.redraw(nest.random.normal(mean=d, std=d * P.DELAY_REL_SD),
                                             min=0.5 * dt_ms, max=np.inf)}
            conn = {"rule": "fixed_total_number", "N": n_syn} if rule == "fixed_total_number" else \
                {"rule": "pairwise_bernoulli", "p": float(net.K[i, j] / net.N[j])}
            nest.Connect(source, target, conn, syn)


def build_nest(nest, net: P.PD14, *, seed: int = 1, threads: int = 1, dt_ms: float = 0.1,
               rule: str = "fixed_total_number") -> tuple[list, list]:
    """Reset NEST's kernel and create ``net`` in it: returns the 8 populations and their recorders."""
    nest.ResetKernel()
    if hasattr(nest, "VerbosityLevel"):
        nest.verbosity = nest.VerbosityLevel.ERROR
    else:  # NEST < 3.9
        nest.set_verbosity("M_ERROR")
    nest.SetKernelStatus({"resolution": dt_ms, "local_num_threads": int(threads), "rng_seed": int(seed),
                          "print_time": False})
    params = {"C_m": P.C_M_PF, "tau_m": P.TAU_M_MS, "tau_syn_ex": P.TAU_SYN_MS, "tau_syn_in": P.TAU_SYN_MS,
              "t_ref": P.T_REF_MS, "E_L": P.E_L_MV, "V_th": P.V_TH_MV, "V_reset": P.V_RESET_MV}
    pops = []
    for i, n in enumerate(net.N):
        pop = nest.Create("iaf_psc_exp", int(n), params=dict(params, I_e=float(net.dc_pA[i])))
        pop.V_m = nest.random.normal(mean=V0_MEAN_MV, std=V0_SD_MV)
        pops.append(pop)
    # Devices are created after all neurons and connected last, as in NEST's example: a recorder
    # created between populations made the recurrent Connect calls 4-5x slower here (scale 0.3:
    # 44 s instead of 9 s; scale 1 did not finish connecting in 11 min).
    recs = [nest.Create("spike_recorder") for _ in pops]
    _connect(nest, pops, net, dt_ms, rule)
    for pop, rec in zip(pops, recs):
        nest.Connect(pop, rec)
    if net.background == "poisson":
        for i, pop in enumerate(pops):
            gen = nest.Create("poisson_generator", params={"rate": P.BG_RATE_HZ * float(net.K_ext[i])})
            nest.Connect(gen, pop, "all_to_all", {"weight": net.psc_ext_pA, "delay": DELAY_POISSON_MS})
    return pops, recs


def run_nest(scale: float, duration_ms: float, *, seed: int = 1, threads: int = 1, dt_ms: float = 0.1,
             background: str = "poisson", rule: str = "fixed_total_number") -> PopulationSpikes:
    """Build and simulate the microcircuit at ``scale`` in NEST for ``duration_ms`` (ms).

    ``seed``: NEST's ``rng_seed`` (>= 1; graph, weights, delays, initial potentials, input);
    ``threads``: ``local_num_threads``; ``rule``: ``fixed_total_number`` (PD14) or
    ``pairwise_bernoulli`` (as our engines draw). ``timing``: ``build_s``, ``sim_s`` (wall) and
    ``sim_cpu_s`` (CPU time of all threads). Raises ImportError when NEST is not installed.
    """
    nest = import_nest()
    net = P.pd14(scale, background)
    t0 = time.perf_counter()
    pops, recs = build_nest(nest, net, seed=seed, threads=threads, dt_ms=dt_ms, rule=rule)
    nest.Prepare()
    t1, c1 = time.perf_counter(), time.process_time()
    nest.Run(duration_ms)
    t2, c2 = time.perf_counter(), time.process_time()
    nest.Cleanup()
    spikes = {}
    for name, pop, rec in zip(P.POPULATIONS, pops, recs):
        ev = rec.get("events")
        first = int(pop[0].global_id)
        spikes[name] = (np.asarray(ev["senders"], np.int64) - first, np.asarray(ev["times"], np.float64))
    return PopulationSpikes(sizes={k: int(n) for k, n in zip(P.POPULATIONS, net.N)}, spikes=spikes,
                            duration_ms=float(duration_ms), timing={"build_s": t1 - t0, "sim_s": t2 - t1,
                                                                               "sim_cpu_s": c2 - c1},
                            engine=f"nest {nest.__version__} ({threads} threads)")
