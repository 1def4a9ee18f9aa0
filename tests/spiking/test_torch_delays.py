"""Per-synapse delays in the torch engine (PD14's delay spread) against the Brian2 engine.

Reference: the Brian2 engine (its own spike queue, numpy target, float64) on the same plan with
the same given input spike trains: identical spike steps over the chaos window (the levels and
tolerances of tests/spiking/test_spiking_torch.py), and the delay-sorted CSR against a plain
ring buffer written here (each spike of step k adds w to slot (k + d) mod L).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.model.spec import load_spec, parse_spec
from cortex_resnet.spiking.build import build_plan
from cortex_resnet.spiking.delay_csr import csr_from_synapses, delay_steps
from cortex_resnet.spiking.torch_engine import TorchEngine
from tests.spiking.test_spiking_torch import WINDOW_MS, _given_trains, separation_ms

MODELS = Path(__file__).resolve().parents[2] / "models"
SPREAD = {"spiking.synapse.delay_ms": 1.5, "spiking.synapse.delay_i_ms": 0.8, "spiking.synapse.delay_rel_sd": 0.5}


def _current_net() -> dict:
    """E (2 pools) and I (1 pool) neurons, 0.5 ms exponential current synapses (PD14's kind)."""
    pops = {"E": {"n": 2, "tau_ms": 10.0, "transfer": {"name": "relu", "gain": 1.0}},
            "I": {"n": 1, "type": "inhibitory", "tau_ms": 10.0, "transfer": {"name": "relu", "gain": 1.0}}}
    return {"name": "cur", "seed": 3, "populations": pops, "bias": {"E": 0.0, "I": 0.0},
            "input": {"n_inputs": 1, "gain_E": 1.0, "gain_I": 1.0},
            "connectivity": {"kind": "dense", "pathways": {"E": {"E": {"J": 0.3}, "I": {"J": 0.6}},
                                                           "I": {"E": {"J": 0.3}, "I": {"J": 0.6}}}},
            "spiking": {"pool_size": 40, "background_noise": "none", "weight_scaling": "identity",
                        "synapse": {"kind": "current", "tau_e_ms": 0.5, "tau_i_ms": 0.5, "p_connect": 0.2,
                                    "weight_rel_sd": 0.1},
                        "input": {"mode": "poisson", "weight_mV": 0.5}, "monitor": {"n_traces": 0}}}


@pytest.mark.brian2
@pytest.mark.parametrize("model,changes,rate", [
    ("lif_ei.toml", {"spiking.pool_size": 10, "spiking.background_noise": "none"}, 14000.0),
    ("vogels_abbott_coba.toml", {"spiking.pool_size": 20, "spiking.synapse.p_connect": 0.4}, 2000.0),
    ("current", {}, 5000.0)])
def test_spread_delays_give_the_brian2_spike_steps(model, changes, rate):
    """Delta (lif_ei), conductance (COBA) and 0.5 ms exponential current synapses with E/I delays
    1.5 / 0.8 ms and 50 % spread (0.1 to ~4 ms: 1 to ~40 steps), 2 replicas, float64, the same
    given input spikes: identical spike steps for at least WINDOW_MS (100 ms). Small networks (50-150
    neurons): Brian2's numpy spike queue with heterogeneous delays takes ~1-5 s for them."""
    spec = parse_spec(_current_net()) if model == "current" else load_spec(MODELS / model)
    c = build_circuit(spec.replace(**changes, **SPREAD))
    u_op = np.full(c.n_inputs, 25.0 if model == "lif_ei.toml" else 0.0)
    plan = build_plan(c, np.zeros((2, c.n_inputs)), 100.0, seed=3, u_operating=u_op, engine="torch")
    steps = {k: delay_steps(v, plan.dt_ms) for k, v in plan.delays_ms.items()}
    assert min(s.min() for s in steps.values()) <= 5 and max(s.max() for s in steps.values()) >= 25
    separated = separation_ms(plan, rate, min_spikes=100)
    assert separated >= WINDOW_MS, f"spikes separate at {separated} ms"


def _ring_reference(graph, spikes: list[np.ndarray], n: int) -> np.ndarray:
    """(steps, 2, n) arriving weight per step, channel (E, I) and target, by a plain ring buffer."""
    d = graph.delays()
    pre = np.repeat(np.arange(graph.n), graph.out_degree())
    L = graph.d_max + 1
    ring = np.zeros((L, 2, n))
    out = np.zeros((len(spikes), 2, n))
    for k, spk in enumerate(spikes):
        for j in spk:
            sel = pre == j
            np.add.at(ring, ((k + d[sel]) % L, int(j >= graph.n_exc), graph.post[sel]), graph.w[sel])
        out[k] = ring[k % L]
        ring[k % L] = 0.0
    return out


def test_delay_sorted_csr_delivers_as_a_ring_buffer():
    """Random spikes through DelayedDelivery (2 channels, 1 copy) equal a plain ring buffer to 1e-12."""
    import torch

    from cortex_resnet.spiking.delay_csr import DelayedDelivery

    rng = np.random.default_rng(0)
    n, n_exc, m = 40, 30, 600
    pre, post = rng.integers(0, n, m), rng.integers(0, n, m)
    w, dms = rng.random(m), rng.integers(1, 12, m) * 0.1
    syn = {"E": (pre[pre < n_exc], post[pre < n_exc], w[pre < n_exc]),
           "I": (pre[pre >= n_exc], post[pre >= n_exc], w[pre >= n_exc])}
    graph = csr_from_synapses(syn, {k: dms[(pre < n_exc) == (k == "E")] for k in syn}, 1.0, n, n_exc, 0.1)
    assert graph.nnz == m and np.all(np.diff(graph.dptr, axis=1) >= 0)
    spikes = [np.flatnonzero(rng.random(n) < 0.1) for _ in range(60)]
    ref = _ring_reference(graph, spikes, n)
    hist = [torch.as_tensor(spk, dtype=torch.int64) for spk in spikes]
    out = {}
    for path in ("kernel", "numpy"):
        deliv = DelayedDelivery(graph, 1, 2, torch.float64, torch.device("cpu"))
        if path == "numpy":
            deliv.kernel = None
        else:
            assert deliv.kernel is not None, "the compiled kernel should build here (Cython + C compiler)"
        out[path] = np.zeros_like(ref)
        for k in range(len(spikes)):
            dest = torch.zeros(2 * n, dtype=torch.float64)
            deliv.deliver(k, hist[:k + 1], n, dest)
            out[path][k] = dest.view(2, n).numpy()
        np.testing.assert_allclose(out[path], ref, atol=1e-12)
    np.testing.assert_array_equal(out["kernel"], out["numpy"])  # the same additions in the same order
    assert np.abs(ref).sum() > 10


def test_x_run_with_spread_delays_has_no_recurrence():
    """run_pair: the run without recurrence equals a plain run with recurrence off (same input)."""
    c = build_circuit(parse_spec(_current_net()).replace(**SPREAD))
    plan = build_plan(c, np.zeros((2, 1)), 40.0, seed=1, u_operating=np.zeros(1), engine="torch")
    given = _given_trains(plan, 4000.0, seed=2)
    r, x = TorchEngine(plan, input_spikes=given).run_pair(0)
    x_alone = TorchEngine(plan, input_spikes=given).run(False, 0)
    np.testing.assert_array_equal(x.spike_i, x_alone.spike_i)
    np.testing.assert_array_equal(x.spike_t_ms, x_alone.spike_t_ms)
    assert r.spike_i.size != x.spike_i.size or not np.array_equal(r.spike_i, x.spike_i)
