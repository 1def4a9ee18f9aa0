"""The torch engine's fast paths give the same runs as the plain ones, bit for bit (float64).

* the compiled one-pass delivery of one-delay synapses (``_State.kernel``) against torch's
  ``index_add_`` of the expanded ELL rows (the path without a compiler), delta and exponential
  synapses, recurrent and x-run in one pass;
* the per-replica random draws on two worker threads against one thread (the streams are the
  replicas' own generators, so the thread count must not change a spike);
* the white noise: each replica's ``N(0, 1)`` numbers are ``torch.randn`` of its generator seeded
  with ``replica_seed(seed, b)`` in chunks of ``RANDOM_CHUNK_STEPS`` steps (the stream as defined
  before the buffer was batched), recomputed here independently of the engine.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cortex_resnet.spiking.torch_state as torch_state
from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.model.spec import parse_spec
from cortex_resnet.spiking.build import build_plan
from cortex_resnet.spiking.delivery_kernel import load_kernel
from cortex_resnet.spiking.torch_engine import RANDOM_CHUNK_STEPS, TorchEngine, replica_seed


def _plan(tau_ms: float, mode: str = "current", batch: int = 2):
    """8 E + 2 I rate units as pools of 10 LIF neurons, matched white noise, one delay (0.5 ms)."""
    spec = {"name": "tiny", "populations": {
        "E": {"n": 8, "tau_ms": 4.0, "transfer": {"name": "relu"}},
        "I": {"n": 2, "tau_ms": 2.0, "transfer": {"name": "relu"}}},
        "connectivity": {"J_EE": 0.5, "J_EI": 1.0, "J_IE": 1.0, "J_II": 0.5, "weight_cv": 0.5},
        "input": {"n_inputs": 4, "projection": "random", "gain_I": 0.5},
        "spiking": {"pool_size": 10, "background_noise": "match",
                    "synapse": {"tau_e_ms": tau_ms, "tau_i_ms": tau_ms, "delay_ms": 0.5, "p_connect": 0.5},
                    "input": {"mode": mode}, "monitor": {"n_traces": 0}}}
    u = np.random.default_rng(0).uniform(0.5, 1.5, size=(batch, 4))
    return build_plan(build_circuit(parse_spec(spec)), u, 25.0, seed=3, engine="torch")


def _same(a, b) -> None:
    for x, y in zip(a, b):
        assert x.spike_i.size > 50  # the networks fire: the comparison has something to compare
        assert np.array_equal(x.spike_i, y.spike_i) and np.array_equal(x.spike_t_ms, y.spike_t_ms)


@pytest.mark.parametrize("tau_ms", [0.0, 2.0])  # delta synapses (into v, signed weights) and exponential currents
def test_compiled_delivery_gives_the_same_spikes_as_index_add(monkeypatch, tau_ms):
    if load_kernel() is None:
        pytest.skip("no compiler here: the engine uses index_add_ only")
    plan = _plan(tau_ms)
    fast = TorchEngine(plan, dtype="float64").run_pair(seed=5)
    monkeypatch.setattr(torch_state, "load_kernel", lambda: None)
    plain = TorchEngine(plan, dtype="float64").run_pair(seed=5)
    _same(fast, plain)


@pytest.mark.parametrize("mode", ["current", "poisson"])
def test_two_draw_threads_give_the_same_spikes_as_one(mode):
    plan = _plan(2.0, mode)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = TorchEngine(plan, dtype="float64").run_pair(seed=7)
        torch.set_num_threads(2)
        two = TorchEngine(plan, dtype="float64").run_pair(seed=7)
    finally:
        torch.set_num_threads(threads)
    _same(one, two)


def test_the_noise_of_each_replica_is_its_own_randn_stream():
    plan = _plan(2.0, batch=2)
    eng = TorchEngine(plan, dtype="float64")
    gens = eng._generators(seed=9)
    with torch.inference_mode():
        eng._pre = torch.empty((RANDOM_CHUNK_STEPS, plan.batch, plan.n), dtype=torch.float64)
        eng._noise = torch.empty((plan.batch, RANDOM_CHUNK_STEPS, plan.n), dtype=torch.float64)
        pres = [eng._draw(gens, k0, RANDOM_CHUNK_STEPS)[1].clone() for k0 in (0, RANDOM_CHUNK_STEPS)]
    drive = eng._drive(0, 2 * RANDOM_CHUNK_STEPS).reshape(2 * RANDOM_CHUNK_STEPS, plan.batch, plan.n)
    for b in range(plan.batch):
        g = torch.Generator().manual_seed(replica_seed(9, b))
        xi = torch.cat([torch.randn((RANDOM_CHUNK_STEPS, plan.n), generator=g, dtype=torch.float64)
                        for _ in range(2)])
        expected = torch.addcmul(drive[:, b], xi, eng.noise_scale)  # the engine's scaling before the batched buffer
        got = torch.cat([pre[:, b] for pre in pres])
        assert torch.equal(got, expected)
    assert float(eng.noise_scale.min()) > 0  # matched noise is on: the check above compares noise
