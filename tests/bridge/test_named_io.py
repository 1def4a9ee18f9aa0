"""Input into and readout from NAMED populations (a cortical column: input to L4, readout from L2/3E, L5E)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortex_resnet.bridge import CircuitClassifier, unroll
from cortex_resnet.catalog import catalog_root
from cortex_resnet.errors import SpecError
from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.model.spec import load_spec
from cortex_resnet.training.experiment import load_experiment, parse_experiment

PD14 = catalog_root() / "models" / "potjans_diesmann_2014.toml"


def _column(n: int = 2):
    spec = load_spec(PD14)
    spec = spec.replace(**{f"populations.{k}.n": n for k in spec.populations.names},
                        **{"input.n_inputs": 3, "input.projection": "random", "connectivity.weight_cv": 0.2})
    return build_circuit(spec)


def test_readout_from_named_populations_reads_exactly_their_units():
    c = _column()
    net = unroll(c, steps=3, dt_ms=1.0, dtype=torch.float64)
    clf = CircuitClassifier(net, (5,), 4, seed=0, readout_populations=["L23E", "L5E"])
    lay = c.layout
    want = list(range(lay["L23E"].start, lay["L23E"].stop)) + list(range(lay["L5E"].start, lay["L5E"].stop))
    assert clf.readout_index.tolist() == want and clf.readout_weight.shape == (4, 4)
    x = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    states = net(clf.encode(x))
    ref = states[1:, :, want] @ clf.readout_weight.T + clf.readout_bias  # by hand
    torch.testing.assert_close(clf(x), ref, rtol=0, atol=1e-12)
    default = CircuitClassifier(net, (5,), 4, seed=0)  # every E unit: the first n_E
    assert default.readout_index.tolist() == list(range(c.n_E))
    assert "readout_index" not in default.state_dict()  # old checkpoints still load


@pytest.mark.parametrize("names,allowed", [(["L23I"], "an excitatory population"),
                                           (["L7E"], "one of the circuit's populations"),
                                           (["L23E", "L23E"], "distinct")])
def test_bad_readout_populations_are_named(names, allowed):
    net = unroll(_column(), steps=2, dt_ms=1.0, dtype=torch.float64)
    with pytest.raises(SpecError) as err:
        CircuitClassifier(net, (5,), 4, readout_populations=names)
    assert err.value.field == "readout_populations" and allowed in err.value.allowed


def _exp(**model):
    return parse_experiment({"data": {"name": "digits"},
                             "model": {"kind": "circuit", "circuit": str(PD14), **model}})


def test_input_populations_zero_every_other_row_of_B():
    spec = _exp(input_populations=["L4E", "L4I"]).circuit_spec()
    c = build_circuit(spec)
    rows = np.abs(c.B).sum(1) > 0
    for k, sl in c.layout.items():
        assert rows[sl].all() == (k in ("L4E", "L4I")) and rows[sl].any() == (k in ("L4E", "L4I"))
    base = load_spec(PD14)
    assert spec.input.gain == {"L4E": base.input.gain["L4E"], "L4I": base.input.gain["L4I"]}  # model gains kept


@pytest.mark.parametrize("model,field,allowed", [
    ({"input_populations": ["L7E"]}, "model.input_populations", "one of the circuit's populations"),
    ({"input_populations": ["L23E"]}, "model.input_populations", "input gain > 0"),  # no thalamic input
    ({"input_populations": ["L4E", "L4E"]}, "model.input_populations", "distinct"),
    ({"readout_populations": ["L4I"]}, "model.readout_populations", "excitatory populations"),
    ({"readout_populations": ["X"]}, "model.readout_populations", "excitatory populations"),
])
def test_bad_experiment_population_fields_are_named(model, field, allowed):
    with pytest.raises(SpecError) as err:
        _exp(**model).circuit_spec()
    assert err.value.field == field and allowed in err.value.allowed


@pytest.mark.parametrize("name", ["pd14_column_tied", "pd14_column_untied"])
def test_column_experiments_wire_l4_in_and_l23e_l5e_out(name):
    spec = load_experiment(catalog_root() / "experiments" / f"{name}.toml")
    assert spec.model.input_populations == ["L4E", "L4I"]
    assert spec.model.readout_populations == ["L23E", "L5E"]
    c = build_circuit(spec.circuit_spec())
    driven = {k for k, sl in c.layout.items() if np.abs(c.B[sl]).sum() > 0}
    assert driven == {"L4E", "L4I"}
