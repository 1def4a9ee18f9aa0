"""A circuit as a spiking network (:mod:`cortex_resnet.spiking.build`, :mod:`cortex_resnet.spiking.mapping`):
weights, connectivity, the structure hash, memory checks. No Brian2 run needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.errors import ResourceError, SpecError
from cortex_resnet.spiking.meanfield import solve
from cortex_resnet.model.spec import load_spec
from cortex_resnet.spiking.build import build_plan
from cortex_resnet.spiking.mapping import operating_rates

MODELS = Path(__file__).resolve().parents[2] / "models"


def _plan(name, duration=100.0, stimulus=None, specialize=True, **changes):
    spec = load_spec(MODELS / name)
    if changes:
        spec = spec.replace(**changes)
    c = build_circuit(spec)
    return build_plan(c, stimulus or spec.simulation.stimulus, duration, specialize=specialize)


def test_coba_conductance_jumps_are_6_and_67_nS_for_a_10_nS_leak():
    plan = _plan("vogels_abbott_coba.toml")
    np.testing.assert_allclose(plan.synapses["E"][2], 0.6, rtol=1e-12)
    np.testing.assert_allclose(plan.synapses["I"][2], 6.7, rtol=1e-12)


def test_coba_in_degree_is_binomial_with_p_002():
    plan = _plan("vogels_abbott_coba.toml")
    for pop, n_pre in (("E", 3200), ("I", 800)):
        post = plan.synapses[pop][1]
        k = np.bincount(post, minlength=plan.n)
        mean, sd = 0.02 * n_pre, np.sqrt(n_pre * 0.02 * 0.98)
        # the mean of 4000 in-degrees is within 5 standard errors of p N
        assert abs(k.mean() - mean) < 5 * sd / np.sqrt(plan.n)
        assert k.std() == pytest.approx(sd, rel=0.1)


def test_brunel_fixed_in_degree_and_weights():
    # reduced: pools of 500 with p = 0.5 keep C_E = 1000, C_I = 250 exactly
    plan = _plan("brunel_2000.toml", **{"spiking.pool_size": 500, "spiking.synapse.p_connect": 0.5})
    for pop, C, J in (("E", 1000, 0.1), ("I", 250, 0.5)):
        pre, post, w = plan.synapses[pop]
        assert np.all(np.bincount(post, minlength=plan.n) == C)
        np.testing.assert_allclose(w, J * 1e0, rtol=1e-12)  # mV: J and g J
        assert np.unique(np.stack([pre, post]), axis=1).shape[1] == pre.size  # no multapses
    # external input: J = 0.1 mV at C_E nu_ext = 20 kHz for u = 40 mV
    np.testing.assert_allclose(plan.neuron["w_in"], 0.1)
    np.testing.assert_allclose(plan.input_values, 20000.0)


@pytest.mark.filterwarnings("ignore:population")
def test_structure_hash_ignores_values_and_tracks_structure():
    """Values (weights, neuron parameters, stimulus, run seed) are run-time arguments of the
    standalone build; sizes, the graph (the circuit's seed), delays and which values are
    shared (E and I parameters, a pathway's weights) are structure."""
    plan = lambda stim=None, **ch: _plan("lif_ei.toml", stimulus=stim, **{"spiking.pool_size": 20, **ch})  # noqa: E731
    base = plan()
    # J_EI = J_II: the I pathway keeps one shared weight
    other_values = plan("step:amp=15,onset_ms=20", **{
        "connectivity.J_EE": 0.7, "connectivity.J_EI": 1.3, "connectivity.J_II": 1.3})
    assert other_values.structure_hash() == base.structure_hash()
    assert not np.allclose(other_values.synapses["E"][2], base.synapses["E"][2])
    assert build_plan(base.circuit, "constant:amp=25", 100.0, seed=7).structure_hash() == base.structure_hash()
    for change in ({"spiking.pool_size": 21}, {"seed": 1}, {"spiking.synapse.delay_ms": 1.0},
                   {"spiking.populations.E.t_ref_ms": 3.0}, {"connectivity.J_EI": 1.3}):
        assert plan(**change).structure_hash() != base.structure_hash(), change


def test_specialised_code_for_shared_values():
    """Runtime mode generates constants where values are shared (as a hand-written script would)."""
    plan = _plan("vogels_abbott_coba.toml")
    assert plan.shared_params and plan.shared_weight("E") and plan.shared_weight("I") and plan.uniform_input
    assert not plan.has_dc
    general = _plan("vogels_abbott_coba.toml", specialize=False)
    assert not (general.shared_params or general.shared_weight("E") or general.uniform_input)
    assert general.structure_hash() != plan.structure_hash()


def test_a_network_too_large_for_the_memory_budget_is_refused_before_allocating(monkeypatch):
    monkeypatch.setenv("CORTEX_RESNET_MEMORY_BUDGET_GB", "0.5")
    with pytest.raises(ResourceError, match="lower spiking.pool_size"):
        _plan("brunel_2000.toml", **{"spiking.pool_size": 200_000})


def test_lif_transfer_with_the_neurons_parameters_maps_by_identity():
    plan = _plan("lif_ei.toml")
    assert plan.mapping.info["E"]["mapping"] == "identity"
    np.testing.assert_array_equal(plan.mapping.k_unit, 1.0)
    np.testing.assert_array_equal(plan.mapping.dc_unit, 0.0)


def test_gain_scaling_matches_the_rate_models_slope_at_the_operating_point():
    """relu circuit: k = R phi'(z*) / Phi'(mu*), and the pools' mean field sits at the target rate."""
    spec = load_spec(MODELS / "canonical_microcircuit.toml").replace(
        **{"populations.E.n": 20, "populations.I.n": 5, "spiking.pool_size": 50, "spiking.synapse.p_connect": 0.5,
           "connectivity.weight_cv": 0.0})
    c = build_circuit(spec)
    plan = build_plan(c, "constant:amp=1.0", 100.0)
    info = plan.mapping.info
    r_star = operating_rates(c, np.array([1.0]))
    R = spec.spiking.rate_unit_hz
    for pop, mask in (("E", c.is_E), ("I", ~c.is_E)):
        assert info[pop]["mapping"] == "gain"
        assert info[pop]["nu_star_hz"] == pytest.approx(R * r_star[mask].mean(), rel=1e-9)
    res = solve(plan.pool_model, R * r_star)
    for pop, mask in (("E", c.is_E), ("I", ~c.is_E)):
        # the spiking pools' mean field reproduces the rate model's operating point ...
        assert res.rates_hz[mask].mean() == pytest.approx(info[pop]["nu_star_hz"], rel=2e-3)
        # ... and its slope: Phi'(mu*) k = R phi'(z*) (relu: gain 1)
        assert info[pop]["lif_gain_hz_per_mV"] * info[pop]["k_mV"] == pytest.approx(R * 1.0, rel=1e-9)


def test_step_dependent_circuits_are_rate_only():
    c = build_circuit(load_spec(MODELS / "lif_ei.toml"))
    chain = c.with_weights(step_weights=np.stack([c.W, c.W]))
    with pytest.raises(SpecError, match="rate backend only"):
        build_plan(chain, "constant:amp=1", 10.0)


def test_negative_drive_is_clipped_with_a_warning():
    c = build_circuit(load_spec(MODELS / "lif_ei.toml"))
    with pytest.warns(UserWarning, match="clipped at 0"):
        plan = build_plan(c, "constant:amp=-5", 10.0)
    assert plan.input_values is None  # nothing left to encode
