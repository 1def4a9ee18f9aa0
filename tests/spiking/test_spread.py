"""Per-synapse delays and weight spread (PD14 / NEST's redraw rules), and their use in the plan.

Reference: the moments of a normal truncated (redrawn) at a bound, in closed form
(scipy.stats.truncnorm), and the bounds themselves.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import truncnorm

from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.model.spec import parse_spec
from cortex_resnet.model.spiking_spec import SynapseSpec
from cortex_resnet.spiking.build import build_plan
from cortex_resnet.spiking.spread import spread_weights, synapse_delays, uniform_delay


def test_delays_are_redrawn_normals_on_the_step_grid():
    """PD14 excitatory delays: N(1.5, 0.75) ms redrawn below dt/2, rounded to dt = 0.1 ms.
    The mean of the redrawn normal is scipy's truncnorm mean (rounding adds < dt^2/12 variance
    and no bias); 200,000 draws: standard error 0.0016 ms, tolerance 0.01 ms."""
    syn = SynapseSpec(delay_ms=1.5, delay_i_ms=0.75, delay_rel_sd=0.5)
    rng = np.random.default_rng(1)
    d = synapse_delays(syn, "E", 200_000, 0.1, rng)
    assert d.min() >= 0.1 - 1e-12
    np.testing.assert_allclose(d / 0.1, np.rint(d / 0.1), atol=1e-9)
    a = (0.05 - 1.5) / 0.75
    assert d.mean() == pytest.approx(truncnorm.mean(a, np.inf, loc=1.5, scale=0.75), abs=0.01)
    di = synapse_delays(syn, "I", 200_000, 0.1, rng)
    ai = (0.05 - 0.75) / 0.375
    assert di.mean() == pytest.approx(truncnorm.mean(ai, np.inf, loc=0.75, scale=0.375), abs=0.01)
    assert not uniform_delay(syn) and uniform_delay(SynapseSpec(delay_ms=1.0))


def test_weights_keep_their_sign_and_spread():
    rng = np.random.default_rng(2)
    w = np.concatenate([np.full(100_000, 0.2), np.full(100_000, -0.8)])
    out = spread_weights(w, 0.1, rng)
    assert np.all(out[:100_000] > 0) and np.all(out[100_000:] < 0)
    # 10 % sd: 10 sd from 0, the redraw never acts; sd of the sample within 2 %
    assert out[:100_000].std() == pytest.approx(0.02, rel=0.02)
    assert out[100_000:].mean() == pytest.approx(-0.8, abs=0.002)
    wide = spread_weights(np.full(50_000, 1.0), 1.0, rng)  # redraw matters: truncnorm at 0
    assert wide.min() > 0
    assert wide.mean() == pytest.approx(truncnorm.mean(-1.0, np.inf, loc=1.0, scale=1.0), abs=0.01)


def _two_pop(extra: dict) -> dict:
    pops = {"E": {"n": 2, "tau_ms": 10.0, "transfer": {"name": "relu", "gain": 1.0}},
            "I": {"n": 1, "type": "inhibitory", "tau_ms": 10.0, "transfer": {"name": "relu", "gain": 1.0}}}
    return {"name": "t", "seed": 3, "populations": pops, "bias": {"E": 1.0, "I": 1.0},
            "connectivity": {"kind": "dense", "pathways": {"E": {"E": {"J": 0.5}, "I": {"J": 1.0}},
                                                           "I": {"E": {"J": 0.5}, "I": {"J": 1.0}}}},
            "spiking": {"pool_size": 50, "synapse": {"kind": "current", "tau_e_ms": 0.5, "tau_i_ms": 0.5,
                                                     "p_connect": 0.2, **extra}}}


def test_plan_carries_per_synapse_delays_and_weights_and_hashes_them():
    plain = build_plan(build_circuit(parse_spec(_two_pop({}))), "constant:amp=1.0", 50.0)
    spread = build_plan(build_circuit(parse_spec(_two_pop({"delay_ms": 1.5, "delay_i_ms": 0.75,
                                                           "delay_rel_sd": 0.5, "weight_rel_sd": 0.1}))),
                        "constant:amp=1.0", 50.0)
    assert plain.delays_ms is None
    for pop in ("E", "I"):  # the same graph: the spread is drawn after it
        np.testing.assert_array_equal(plain.synapses[pop][0], spread.synapses[pop][0])
        w0, w1 = plain.synapses[pop][2], spread.synapses[pop][2]
        assert np.all(np.sign(w0) == np.sign(w1)) and not np.allclose(w0, w1)
        assert spread.delays_ms[pop].shape == w1.shape
    assert spread.delays_ms["I"].mean() < spread.delays_ms["E"].mean()
    assert plain.structure_hash() != spread.structure_hash()


def test_torch_and_brian2_plans_draw_the_same_delays_and_weights():
    """The torch engine takes per-synapse delays (tests/spiking/test_torch_delays.py): its plan has
    the same graph, weights and delays as the Brian2 engine's."""
    c = build_circuit(parse_spec(_two_pop({"delay_i_ms": 0.75, "delay_rel_sd": 0.5})))
    a, b = (build_plan(c, "constant:amp=1.0", 50.0, engine=e) for e in ("brian2", "torch"))
    for pop in ("E", "I"):
        np.testing.assert_array_equal(a.delays_ms[pop], b.delays_ms[pop])
        for x, y in zip(a.synapses[pop], b.synapses[pop]):
            np.testing.assert_array_equal(x, y)


@pytest.mark.brian2
def test_brian2_delivers_each_spike_after_its_own_delay():
    """Brian2 runtime with per-synapse delays: a recurrent network runs and the objects hold
    the plan's delays (ms -> s)."""
    from cortex_resnet.spiking.brian import RuntimeEngine

    plan = build_plan(build_circuit(parse_spec(_two_pop({"delay_i_ms": 0.7, "delay_rel_sd": 0.3}))),
                      "constant:amp=1.0", 20.0)
    eng = RuntimeEngine(plan, target="numpy")
    got = np.asarray(eng.objs["syn_I"].delay_[:]) * 1e3
    np.testing.assert_allclose(got, plan.delays_ms["I"], atol=1e-9)
    eng.run()
