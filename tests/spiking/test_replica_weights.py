"""Per-replica weights (:mod:`cortex_resnet.spiking.replica_weights`): conditions with their own pathway
weights, DC and noise in one torch batch give, condition by condition, the spike trains of the condition
run alone (float64, bit-identical: the same values added in the same order), for current and
conductance synapses and the three deliveries (pooled, per-synapse ELL rows, delay-sorted CSR).

The reference is the engine's shared-weight path on each condition's own plan (weights scaled in the
plan, the DC / noise set there), itself checked against Brian2 (test_spiking_torch.py, test_torch_delays.py).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from cortex_resnet.errors import SpecError
from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.model.spec import load_spec
from cortex_resnet.spiking.build import build_plan
from cortex_resnet.spiking.replica_runs import simulate_conditions
from cortex_resnet.spiking.replica_weights import merge_plans, replica_bytes, scaled_plan, split_raw
from cortex_resnet.spiking.simulator import simulate_spiking
from cortex_resnet.spiking.torch_engine import TorchEngine, torch_bytes

pytestmark = pytest.mark.filterwarnings("ignore:population .*synaptic noise:UserWarning")
MODELS = Path(__file__).resolve().parents[2] / "models"
FAST = {"spiking.pool_size": 10, "spiking.background_noise": "none"}  # identity mapping: a build in ms
KINDS = {"current": {"spiking.synapse.tau_e_ms": 5.0, "spiking.synapse.tau_i_ms": 3.0},
         "conductance": {"spiking.synapse.kind": "conductance", "spiking.synapse.tau_e_ms": 5.0,
                         "spiking.synapse.tau_i_ms": 10.0}}
DELIVERIES = {"pooled": {"spiking.synapse.p_connect": 1.0, "spiking.synapse.fixed_indegree": False},
              "synapses": {},  # Bernoulli pairs: per-synapse ELL rows
              "delays": {"spiking.synapse.delay_i_ms": 0.8, "spiking.synapse.delay_rel_sd": 0.3}}  # delay CSR
SEEDS = np.array([11, 12])


def _circuit(**changes):
    """lif_ei (4 E + 1 I pools) with 10 neurons per pool."""
    return build_circuit(load_spec(MODELS / "lif_ei.toml").replace(**{**FAST, **changes}))


def _plan(c, duration_ms: float = 20.0):
    u = np.full((2, c.n_inputs), 30.0) * np.array([[0.9], [1.1]])
    return build_plan(c, u, duration_ms, seed=3, u_operating=np.full(c.n_inputs, 30.0), engine="torch")


def _condition(plan, scales: dict, dc_mV: float, sigma_mV: float):
    """A condition of its own: pathway scales, DC and white-noise amplitude set in the plan."""
    p = scaled_plan(plan, scales)
    return dataclasses.replace(p, neuron={**p.neuron, "mu_dc_mV": p.neuron["mu_dc_mV"] + dc_mV,
                                          "sigma_mV": np.full(p.n, sigma_mV)})


def _same(a, b) -> None:
    np.testing.assert_array_equal(a.spike_i, b.spike_i)
    np.testing.assert_array_equal(a.spike_t_ms, b.spike_t_ms)
    np.testing.assert_array_equal(a.trace_v_mV, b.trace_v_mV)


@pytest.mark.parametrize("delivery", sorted(DELIVERIES))
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_condition_in_the_batch_spikes_as_alone(kind, delivery):
    """Two conditions x two replicas, 100 neurons, 20 ms, recurrent run and run without recurrence."""
    base = _plan(_circuit(**KINDS[kind], **DELIVERIES[delivery]))
    plans = [_condition(base, {"E": 1.0, "I": 1.0}, 0.0, 1.0), _condition(base, {"E": 1.6, "I": 0.6}, 1.5, 2.0)]
    merged = merge_plans(plans)
    raw, raw_x = TorchEngine(merged, seeds=np.tile(SEEDS, 2)).run_pair(3)
    alone = [TorchEngine(p, seeds=SEEDS).run_pair(3) for p in plans]
    n_tr = base.trace_neurons.size
    for c, (a, ax) in enumerate(alone):
        _same(split_raw(raw, merged, c, n_tr), a)
        _same(split_raw(raw_x, merged, c, n_tr), ax)
        assert a.spike_i.size > 20, "the network must fire for the comparison to mean something"
    assert not np.array_equal(alone[0][0].spike_t_ms, alone[1][0].spike_t_ms), "the conditions differ"
    assert merged.info["delivery"].startswith("pooled" if delivery == "pooled" else "per synapse")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_per_replica_weights_take_the_compiled_delivery_with_the_same_spikes(monkeypatch, kind):
    """The one-pass compiled delivery walks each copy's condition rows: the same spikes as ``index_add_``."""
    from cortex_resnet.spiking import torch_state
    from cortex_resnet.spiking.delivery_kernel import load_kernel

    if load_kernel() is None:
        pytest.skip("no compiler here: the engine uses index_add_ only")
    base = _plan(_circuit(**KINDS[kind], **DELIVERIES["synapses"]))
    merged = merge_plans([_condition(base, {"E": 1.0, "I": 1.0}, 0.0, 1.0),
                          _condition(base, {"E": 1.6, "I": 0.6}, 1.5, 2.0)])
    eng = TorchEngine(merged, seeds=np.tile(SEEDS, 2))
    assert torch_state._State(eng, 2).kernel is not None, "per-replica weights now use the compiled delivery"
    fast = eng.run_pair(3)
    monkeypatch.setattr(torch_state, "load_kernel", lambda: None)
    plain = TorchEngine(merged, seeds=np.tile(SEEDS, 2)).run_pair(3)
    for a, b in zip(fast, plain):
        assert a.spike_i.size > 40
        _same(a, b)


@pytest.mark.slow  # 6.6 s on a busy machine: three pipelines (merged, two alone)
def test_circuits_that_differ_in_couplings_give_their_datasets_alone():
    """Whole pipeline: lif_ei at two (J_EE, J_IE) as one batch == simulate_spiking of each alone (every
    variable and attribute); the couplings change the weights of two pathways."""
    cs = [_circuit(**{"connectivity.J_EE": j, "connectivity.J_IE": k}) for j, k in ((0.5, 1.0), (1.2, 1.6))]
    u, u_op = np.array([[22.0], [28.0]]), np.array([25.0])
    opts = {"duration_ms": 40.0, "seed": 2, "decompose": True, "mean_field": False}
    dss = simulate_conditions(cs, [u, u], u_operating=[u_op, u_op], replica_seeds=[[5, 6], [5, 6]], **opts)
    for c, ds in zip(cs, dss):
        alone = simulate_spiking(c, u, u_operating=u_op, replica_seeds=[5, 6], engine="torch", **opts)
        assert ds.attrs == alone.attrs
        for var in ("spike_time_ms", "spike_neuron", "spike_batch", "r", "x", "v_trace"):
            np.testing.assert_array_equal(ds[var].values, alone[var].values, err_msg=var)
    assert dss[0]["spike_time_ms"].size > 20 and dss[0]["spike_time_ms"].size != dss[1]["spike_time_ms"].size


@pytest.mark.parametrize("changes, field", [
    ({"spiking.synapse.p_connect": 0.3}, "spiking.synapse.p_connect"),
    ({"spiking.pool_size": 12}, "spiking.pool_size"),
    ({"spiking.synapse.delay_ms": 2.0}, "spiking.synapse.delay_ms"),
    ({"connectivity.J_EE": 0.0}, "connectivity"),  # no E -> E pathway: another graph
    ({"seed": 1}, "connectivity"),  # another draw of the pairs
])
def test_conditions_that_differ_in_structure_are_refused_naming_the_field(changes, field):
    plans = [_plan(_circuit()), _plan(_circuit(**changes))]
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        merge_plans(plans)


def test_memory_estimate_covers_the_per_replica_tensors():
    base = _plan(_circuit())
    merged = merge_plans([base, scaled_plan(base, {"E": 2.0})])
    shared = dataclasses.replace(merged)  # the same batch without per-replica values
    extra = torch_bytes(merged, 2, 8) - torch_bytes(shared, 2, 8)
    stacked = sum(w.nbytes for w in merged.replica.weights.values())
    assert extra == replica_bytes(merged, 8) and extra >= stacked + 2 * merged.batch * merged.n * 8
