"""``spiking.input.dc_mV``: part of the drive as a current, the rest Poisson-coded."""

from __future__ import annotations

import numpy as np
import pytest

from cortex_resnet.errors import SpecError
from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.model.spec import parse_spec
from cortex_resnet.spiking.build import build_plan
from cortex_resnet.spiking.model import to_spiking


def _spec(inp: dict) -> dict:
    relu = {"name": "relu", "gain": 1.0}
    return {"name": "t", "seed": 1, "bias": {"E": 20.0, "I": 20.0},
            "populations": {"E": {"n": 1, "tau_ms": 10.0, "transfer": relu},
                            "I": {"n": 1, "type": "inhibitory", "tau_ms": 10.0, "transfer": relu}},
            "connectivity": {"kind": "dense", "pathways": {"E": {"E": {"J": 0.1}}, "I": {"E": {"J": 0.1}}}},
            "spiking": {"pool_size": 20, "weight_scaling": "identity", "background_noise": "none",
                        "input": {"mode": "poisson", "weight_mV": 0.5, **inp}}}


def test_dc_moves_from_poisson_rate_to_current():
    """Mean input kept: Poisson rate falls by dc / (w tau_m) and mu_dc rises by dc."""
    base = build_plan(build_circuit(parse_spec(_spec({}))), "constant:amp=0.0", 20.0)
    split = build_plan(build_circuit(parse_spec(_spec({"dc_mV": {"E": 5.0}}))), "constant:amp=0.0", 20.0)
    e = base.unit_of == 0
    np.testing.assert_allclose(split.neuron["mu_dc_mV"][e] - base.neuron["mu_dc_mV"][e], 5.0)
    np.testing.assert_allclose(split.neuron["mu_dc_mV"][~e], base.neuron["mu_dc_mV"][~e])
    drop = base.input_values[0, 0] - split.input_values[0, 0]
    tau_m = base.neuron["tau_m_ms"][0]  # the spiking neuron's (LIF default 20 ms)
    assert drop == pytest.approx(5.0 / (0.5 * tau_m * 1e-3))  # Hz
    assert split.input_values[0, 1] == pytest.approx(base.input_values[0, 1])
    # the mean field of the realisation: same mean input (mV)
    np.testing.assert_allclose(split.pool_model.moments(np.ones(2))[0], base.pool_model.moments(np.ones(2))[0])


@pytest.mark.parametrize("inp, bad", [({"dc_mV": {"X": 1.0}}, "X"),
                                      ({"mode": "current", "dc_mV": {"E": 1.0}}, None)])
def test_bad_dc_tables_are_refused(inp, bad):
    with pytest.raises(SpecError) as err:
        build_plan(build_circuit(parse_spec(_spec(inp))), "constant:amp=0.0", 20.0)
    assert err.value.field == "spiking.input.dc_mV"


def test_a_current_input_twin_drops_the_poisson_split():
    """to_spiking(input_mode="current") on a file with a dc_mV split (e.g. PD14) builds: the current
    is the whole drive, so the split is dropped rather than refused."""
    circuit = build_circuit(parse_spec(_spec({"dc_mV": {"E": 5.0}})))
    kept = circuit.spec.replace(**{"spiking.input.mode": "current"})  # what to_spiking did before
    with pytest.raises(SpecError, match="dc_mV"):
        build_plan(build_circuit(kept), "constant:amp=1.0", 20.0)
    model = to_spiking(circuit, input_mode="current")
    assert model.circuit.spec.spiking.input.mode == "current" and model.circuit.spec.spiking.input.dc_mV == {}
    build_plan(model.circuit, "constant:amp=1.0", 20.0)
