"""The ``[spiking]`` table (:mod:`cortex_resnet.model.spiking_spec`) and the reference model files."""

from __future__ import annotations

from pathlib import Path

import pytest

from cortex_resnet.errors import SpecError
from cortex_resnet.model.spec import load_spec
from cortex_resnet.model.spiking_spec import LIFSpec, SpikingSpec

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.mark.parametrize("field, value, words", [
    ("spiking.populations.E.v_reset_mV", -45.0, "below the threshold"),
    ("spiking.populations.I.v_reset_mV", -50.0, "reset at threshold"),
    ("spiking.populations.E.t_ref_ms", -1.0, "greater than or equal to 0"),
    ("spiking.pool_size", 0, "greater than or equal to 1"),
    ("spiking.synapse.p_connect", 0.0, "greater than 0"),
    ("spiking.synapse.delay_ms", -0.5, "greater than or equal to 0"),
    ("spiking.input.mode", "spikes", "'poisson' or 'current'"),
])
def test_bad_values_name_field_value_and_rule(field, value, words):
    spec = load_spec(MODELS / "lif_ei.toml")
    with pytest.raises(SpecError) as err:
        spec.replace(**{field: value})
    assert err.value.field == field
    assert err.value.value == value
    assert words in str(err.value)


def test_conductance_synapses_need_time_constants():
    spec = load_spec(MODELS / "vogels_abbott_coba.toml")
    with pytest.raises(SpecError, match="conductance synapses need tau_e_ms > 0"):
        spec.replace(**{"spiking.synapse.tau_e_ms": 0.0})


def test_defaults_are_brunels_neuron_and_the_lif_transfer_defaults():
    lif = LIFSpec()
    assert (lif.theta_mV, lif.reset_above_rest_mV, lif.tau_m_ms, lif.t_ref_ms) == (20.0, 10.0, 20.0, 2.0)
    assert SpikingSpec().lif("I") == lif


def test_coba_file_has_the_published_parameters():
    s = load_spec(MODELS / "vogels_abbott_coba.toml")
    sp = s.spiking
    assert (s.populations.E.n + s.populations.I.n) * sp.pool_size == 4000
    assert s.populations.E.n * sp.pool_size == 3200 and s.populations.I.n * sp.pool_size == 800
    assert sp.synapse.p_connect == 0.02 and sp.synapse.kind == "conductance"
    for pop in ("E", "I"):
        lif = sp.lif(pop)
        assert (lif.tau_m_ms, lif.v_rest_mV, lif.v_reset_mV, lif.v_th_mV, lif.t_ref_ms) == (20, -60, -60, -50, 5)
    assert (sp.synapse.tau_e_ms, sp.synapse.tau_i_ms, sp.synapse.E_e_mV, sp.synapse.E_i_mV) == (5, 10, 0, -80)


def test_brunel_file_has_the_published_parameters():
    s = load_spec(MODELS / "brunel_2000.toml")
    sp = s.spiking
    assert s.populations.E.n * sp.pool_size == 10000 and s.populations.I.n * sp.pool_size == 2500
    assert sp.synapse.p_connect == 0.1 and sp.synapse.delay_ms == 1.5
    assert sp.synapse.tau_e_ms == 0 and sp.synapse.tau_i_ms == 0  # delta synapses
    lif = sp.lif("E")
    assert (lif.theta_mV, lif.reset_above_rest_mV, lif.t_ref_ms, lif.tau_m_ms) == (20, 10, 2, 20)
    assert sp.input.weight_mV == 0.1  # J
    c = s.connectivity
    # J_xE = J C_E tau, J_xI = g J C_I tau with J = 0.1 mV, C_E = 1000, C_I = 250, tau = 20 ms, g = 5
    assert c.J_EE == pytest.approx(0.1 * 1000 * 0.020) and c.J_EI == pytest.approx(5 * 0.1 * 250 * 0.020)
