"""Pool-level delivery (:mod:`cortex_resnet.spiking.torch_pooled`) against per-synapse delivery.

The reference is the torch engine's own per-synapse (ELL index-scatter) delivery, itself checked
spike step by spike step against Brian2 (tests/spiking/test_spiking_torch.py). Both run the same
plan values with the same random streams in float64; the only difference is the order of the
floating-point sums (per synapse ``v + w_1 + w_2``, pooled ``v + (w_1 + w_2)``: a few ulp), so the
spike trains must be identical over the whole run (a spike could move only if a potential landed
within ~1e-14 mV of threshold) and the recorded potentials agree to 1e-12 mV (measured: 0 for
delta and current synapses, 7e-15 mV for conductances, 200 ms).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cortex_resnet.bridge import to_circuit, unroll
from cortex_resnet.errors import SpecError
from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.model.spec import load_spec
from cortex_resnet.spiking import build as build_mod
from cortex_resnet.spiking import torch_pooled
from cortex_resnet.spiking.build import build_plan
from cortex_resnet.spiking.chain import chain_circuit
from cortex_resnet.spiking.simulator import to_spiking
from cortex_resnet.spiking.torch_engine import TorchEngine, torch_bytes
from cortex_resnet.spiking.torch_pooled import PoolSynapses
from tests.bridge_cases import case_spec

pytestmark = pytest.mark.filterwarnings("ignore:population .*synaptic noise:UserWarning")
MODELS = Path(__file__).resolve().parents[2] / "models"
ALL_TO_ALL = {"spiking.pool_size": 20, "spiking.synapse.p_connect": 1.0, "spiking.synapse.fixed_indegree": False}
KINDS = {
    "delta": {},
    "current": {"spiking.synapse.tau_e_ms": 5.0, "spiking.synapse.tau_i_ms": 3.0},
    "conductance": {"spiking.synapse.kind": "conductance", "spiking.synapse.tau_e_ms": 5.0,
                    "spiking.synapse.tau_i_ms": 10.0},
}


def _circuit(**changes):
    """lif_ei (4 E + 1 I units, delay 1.5 ms, white background noise) with all-to-all pools."""
    return build_circuit(load_spec(MODELS / "lif_ei.toml").replace(**{**ALL_TO_ALL, **changes}))


def _plan(c, delivery: str = "auto", duration_ms: float = 120.0, engine: str = "torch"):
    """3 replicas at 0.8, 1 and 1.2 x the operating input."""
    u = np.full((3, c.n_inputs), 25.0) * np.array([[0.8], [1.0], [1.2]])
    return build_plan(c, u, duration_ms, seed=3, u_operating=np.full(c.n_inputs, 25.0), engine=engine,
                      delivery=delivery)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_pooled_delivery_gives_the_per_synapse_spike_trains(kind):
    """Recurrent run and run without recurrence, 3 replicas x 100 neurons x 120 ms, float64."""
    c = _circuit(**KINDS[kind])
    per, pooled = _plan(c, "synapses"), _plan(c)
    assert isinstance(pooled.synapses, PoolSynapses) and not isinstance(per.synapses, PoolSynapses)
    assert pooled.info["delivery"].startswith("pooled") and per.info["delivery"].startswith("per synapse")
    eng = TorchEngine(pooled)
    assert eng.pooled is not None and not eng.csr
    ref, got = TorchEngine(per).run_pair(7), eng.run_pair(7)
    assert ref[0].spike_i.size > 100, "the recurrent network must be active for the comparison to mean something"
    for a, b in zip(ref, got):
        np.testing.assert_array_equal(a.spike_i, b.spike_i)
        np.testing.assert_array_equal(a.spike_t_ms, b.spike_t_ms)
        np.testing.assert_allclose(b.trace_v_mV, a.trace_v_mV, rtol=0, atol=1e-12)


def _refuse_draws(monkeypatch) -> None:
    def refuse(*a, **k):
        raise AssertionError("synapses drawn")
    monkeypatch.setattr(build_mod, "draw_synapses", refuse)
    monkeypatch.setattr(torch_pooled, "draw_synapses", refuse)


def test_a_pooled_plan_and_run_never_draw_synapses_but_expand_to_the_drawn_ones_on_access(monkeypatch):
    """Building, sizing, hashing, printing and running a pooled plan draw nothing; ``plan.synapses[pop]``
    draws exactly the per-synapse plan's arrays (a complete graph uses no random numbers)."""
    c = _circuit()
    per = _plan(c, "synapses", 20.0)
    with monkeypatch.context() as m:
        _refuse_draws(m)
        plan = _plan(c, "auto", 20.0)
        assert plan.n_synapses == per.n_synapses == 3 * (5 * 5 * 20 * 20)  # lif_ei: dense 5 x 5 units
        assert plan.structure()["pathways"] == per.structure()["pathways"]
        assert plan.structure_hash() != per.structure_hash()  # pooled plans hash the pool pairs
        assert [plan.shared_weight(p) for p in "EI"] == [per.shared_weight(p) for p in "EI"]
        assert f"{per.n_synapses // 3:,}" in repr(plan) and "synapses as 5x5 tables" in repr(plan.synapses)
        assert torch_bytes(plan, 2, 8) < torch_bytes(per, 2, 8)
        TorchEngine(plan).run(True, 0)
    for pop in "EI":
        for a, b in zip(plan.synapses[pop], per.synapses[pop]):
            np.testing.assert_array_equal(a, b)
    assert dict(plan.synapses).keys() == {"E", "I"}


@pytest.mark.parametrize("changes,engine,why", [
    ({"spiking.synapse.p_connect": 0.5}, "torch", "p_connect = 0.5 < 1"),
    ({"spiking.synapse.p_connect": 0.5, "spiking.synapse.fixed_indegree": True}, "torch", "fixed_indegree"),
    ({"spiking.synapse.fixed_total_number": True}, "torch", "fixed_total_number"),  # p = 1, yet drawn ends
    ({"spiking.synapse.weight_rel_sd": 0.1}, "torch", "weight_rel_sd = 0.1"),
    ({"spiking.pathways": {"I": {"E": 0.3}}}, "torch", "p_connect = 0.3 < 1"),
    ({}, "brian2", "engine 'brian2'"),
])
def test_pooled_delivery_is_not_chosen_where_it_would_not_be_exact(changes, engine, why):
    """Random pairs, a partial fixed in-degree, weight spread, the Brian2 engine: per synapse, with the
    reason in ``info["delivery"]``; ``delivery = "pooled"`` is refused naming it."""
    c = _circuit(**changes)
    plan = _plan(c, "auto", 10.0, engine)
    assert not isinstance(plan.synapses, PoolSynapses)
    assert why in plan.info["delivery"]
    with pytest.raises(SpecError, match="delivery") as e:
        _plan(c, "pooled", 10.0, engine)
    assert why in str(e.value)


def test_a_complete_fixed_indegree_is_pooled_and_a_bad_delivery_is_refused():
    """``fixed_indegree`` with ``round(p M) = M`` draws every pair: pooled; an unknown delivery names the field."""
    c = _circuit(**{"spiking.synapse.fixed_indegree": True, "spiking.synapse.p_connect": 0.99})
    plan = _plan(c, "auto", 10.0)
    assert isinstance(plan.synapses, PoolSynapses)
    np.testing.assert_array_equal(plan.synapses["E"][0], _plan(c, "synapses", 10.0).synapses["E"][0])
    with pytest.raises(SpecError, match="delivery.*one of auto, pooled, synapses"):
        _plan(c, "dense", 10.0)


def test_an_untied_nets_stage_chain_is_pooled_and_spikes_as_per_synapse():
    """The spiking twin of an untied net (:mod:`cortex_resnet.spiking.chain`, 3 stages of a 32-unit net):
    pooled automatically with the torch engine, the same synapse count and the same spike trains (float64)."""
    net = unroll(build_circuit(case_spec("dense_relu")), 3, 1.0, variant="untied", input_mode="sustained",
                 dtype=torch.float64)
    c = to_circuit(net)
    chain = chain_circuit(c.with_weights(step_weights=c.step_weights * np.array([0.7, 1.0, 1.3])[:, None, None]))
    u = np.random.default_rng(0).uniform(0.5, 1.5, (2, c.n_inputs))
    model = to_spiking(chain.circuit, pool_size=6, input_mode="current", u_operating=u.mean(0))
    per, pooled = (build_plan(model.circuit, u, 40.0, u_operating=u.mean(0), engine="torch", delivery=d, seed=1)
                   for d in ("synapses", "auto"))
    assert isinstance(pooled.synapses, PoolSynapses)
    assert pooled.n_synapses == per.n_synapses == 2 * 36 * np.count_nonzero(chain.circuit.W)
    a, b = TorchEngine(per).run(True, 2), TorchEngine(pooled).run(True, 2)
    assert a.spike_i.size > 100
    np.testing.assert_array_equal(a.spike_i, b.spike_i)
    np.testing.assert_array_equal(a.spike_t_ms, b.spike_t_ms)
