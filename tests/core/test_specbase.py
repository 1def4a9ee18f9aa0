"""The one dotted ``replace`` shared by the circuit and experiment specs."""
from __future__ import annotations

import pytest

from cortex_resnet.core.specbase import set_dotted
from cortex_resnet.errors import SpecError
from cortex_resnet.model.spec import parse_spec
from tests.training.test_train import tiny_spec


def test_set_dotted_sets_nested_values_and_refuses_missing_tables():
    data = {"a": {"b": {"c": 1}}, "x": 2}
    set_dotted(data, "a.b.c", 5)
    set_dotted(data, "a.d", 7)  # a new leaf in an existing table: the spec's validation judges it
    set_dotted(data, "x", 3)
    assert data == {"a": {"b": {"c": 5}, "d": 7}, "x": 3}
    for key in ("nope.c", "x.y"):  # missing table, a number where a table should be
        with pytest.raises(KeyError):
            set_dotted(data, key, 0)


def test_both_specs_replace_through_it():
    spec = parse_spec({"populations": {"E": {"n": 2, "tau_ms": 10.0}, "I": {"n": 2, "tau_ms": 10.0}}})
    assert spec.replace(**{"connectivity.J_EE": 0.5}).connectivity.J_EE == 0.5
    with pytest.raises(KeyError):
        spec.replace(**{"nope.J_EE": 0.5})
    exp = tiny_spec()
    assert exp.replace(**{"train.epochs": 2}).train.epochs == 2
    with pytest.raises(SpecError, match="an existing dotted experiment field"):
        exp.replace(**{"nope.epochs": 2})
