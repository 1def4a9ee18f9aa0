"""The CLI's one ``FIELD=VALUE`` parser (``simulate --set``, ``train --set``, ``sweep --param``)."""

from __future__ import annotations

import pytest

from cortex_resnet.cli._common import parse_grid, parse_set
from cortex_resnet.errors import SpecError


def test_set_values_are_toml_or_text() -> None:
    got = parse_set(["connectivity.J_EE=1.5", "seed = 3", "populations.E.transfer.name=relu",
                     "spiking.record = true", 'name="a b"', "amp=[1, 2]"])
    assert got == {"connectivity.J_EE": 1.5, "seed": 3, "populations.E.transfer.name": "relu",
                   "spiking.record": True, "name": "a b", "amp": [1, 2]}


@pytest.mark.parametrize("text", ["connectivity.J_EE", "=1", "connectivity.J_EE=", " =2"])
def test_bad_set_item_names_the_option(text: str) -> None:
    with pytest.raises(SpecError, match="--set") as err:
        parse_set([text], example="train.epochs=5")
    assert "train.epochs=5" in str(err.value)


def test_grid_values() -> None:
    assert parse_grid("connectivity.J_EE=0.5,1.0, 2") == ("connectivity.J_EE", [0.5, 1.0, 2])
    assert parse_grid('populations.E.transfer.name="relu","tanh"')[1] == ["relu", "tanh"]


@pytest.mark.parametrize("text", ["connectivity.J_EE", "=1,2", "connectivity.J_EE=", "x=1,1", "x=relu"])
def test_bad_grid_syntax(text: str) -> None:
    with pytest.raises(SpecError, match="--param"):
        parse_grid(text)
