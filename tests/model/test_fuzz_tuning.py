"""Fuzzing and bad input of the tuning fields (``[tuning]``, ``input.projection = "tuned"``,
``input.sigma_deg``), in the pattern of test_fuzz_spec.py.

* Random valid tuned specs build (Dale's law, finite weights, rows keeping their totals) and simulate,
  or raise a documented error.
* Each invalid value of a new field gives exit 2 through the CLI with a one-line message naming the
  field, no traceback and no output file; the model-level message says what is allowed.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from cortex_resnet.cli import app
from cortex_resnet.errors import ConvergenceError, SpecError, UnstableCircuitError
from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.model.spec import parse_spec
from cortex_resnet.rate.simulator import simulate

from tests.conftest import FUZZ_COUNTS
from tests.model.test_fuzz_spec import FUZZ, to_toml

runner = CliRunner()

BASE: dict[str, Any] = {
    "name": "tuned",
    "populations": {"E": {"n": 8, "tau_ms": 20.0}, "I": {"n": 4, "tau_ms": 10.0}},
    "connectivity": {"kind": "dense", "J_EE": 1.0, "J_EI": 1.5, "J_IE": 1.0, "J_II": 0.5},
    "input": {"n_inputs": 8, "gain_E": 1.0, "gain_I": 0.5, "projection": "tuned", "sigma_deg": 20.0},
    "tuning": {"period_deg": 180.0, "modulate": "strength", "sigma_deg": {"E": {"E": 10.0, "I": 15.0}}},
}


@st.composite
def valid_tuned_specs(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["dense", "sparse"]))
    n_e, n_i = draw(st.integers(1, 24)), draw(st.integers(1, 12))
    table: dict[str, dict[str, float]] = {}
    for post in ("E", "I"):
        for pre in ("E", "I"):
            if draw(st.booleans()):
                table.setdefault(post, {})[pre] = draw(st.floats(1e-3, 1e4))
    projection = draw(st.sampled_from(["tuned", "uniform", "random"]))
    inp: dict[str, Any] = {"n_inputs": draw(st.integers(1, 16)), "gain_E": 1.0, "gain_I": 0.5,
                           "projection": projection}
    if projection == "tuned":
        inp["sigma_deg"] = draw(st.floats(1e-2, 1e3))
    return {"name": "fuzz", "seed": draw(st.integers(0, 2**31)),
            "populations": {"E": {"n": n_e, "tau_ms": 20.0}, "I": {"n": n_i, "tau_ms": 10.0}},
            "connectivity": {"kind": kind, "p": draw(st.floats(0.05, 1.0)), "weight_cv": draw(st.floats(0.0, 0.5)),
                             "J_EE": draw(st.floats(0.0, 2.0)), "J_EI": draw(st.floats(0.0, 3.0)),
                             "J_IE": draw(st.floats(0.0, 2.0)), "J_II": draw(st.floats(0.0, 2.0))},
            "input": inp,
            "tuning": {"period_deg": draw(st.sampled_from([180.0, 360.0, 1.0])),
                       "modulate": draw(st.sampled_from(["strength", "probability"] if kind == "sparse"
                                                        else ["strength"])),
                       "sigma_deg": table}}


@FUZZ
@given(data=valid_tuned_specs())
def test_random_valid_tuned_specs_build_and_simulate_or_raise_documented_error(data: dict[str, Any]) -> None:
    FUZZ_COUNTS["tuned valid specs"] += 1
    circuit = build_circuit(parse_spec(data))
    assert np.all(np.isfinite(circuit.W)) and np.all(np.isfinite(circuit.B))
    if data["connectivity"]["kind"] == "dense" and data["connectivity"]["weight_cv"] == 0.0:
        for post, pre in (("E", "E"), ("I", "I")):
            j = data["connectivity"][f"J_{post}{pre}"]
            np.testing.assert_allclose(np.abs(circuit.block(post, pre)).sum(axis=1), j, rtol=1e-9, atol=1e-12)
    try:
        ds = simulate(circuit, "step:amp=1.0", duration_ms=5.0, dt_ms=0.5, device="cpu")
    except (UnstableCircuitError, ConvergenceError) as err:
        assert str(err)
        return
    assert np.isfinite(ds["r"].values).all()


def _with(dotted: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    node = data
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    if value is None:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value
    return data


BAD = [
    ("tuning.period_deg", 0.0, "tuning.period_deg"), ("tuning.period_deg", 400.0, "tuning.period_deg"),
    ("tuning.period_deg", "180", "period_deg"), ("tuning.period_deg", float("nan"), "tuning.period_deg"),
    ("tuning.modulate", "weights", "tuning.modulate"), ("tuning.modulate", "probability", "tuning.modulate"),
    ("tuning.sigma_deg.E.E", 0.0, "tuning.sigma_deg.E.E"), ("tuning.sigma_deg.E.E", -5.0, "tuning.sigma_deg.E.E"),
    ("tuning.sigma_deg.E.E", 1e5, "tuning.sigma_deg.E.E"), ("tuning.sigma_deg.E.E", "10", "sigma_deg.E.E"),
    ("tuning.sigma_deg.E.E", True, "sigma_deg.E.E"), ("tuning.sigma_deg.E.PV", 10.0, "tuning.sigma_deg.E.PV"),
    ("tuning.sigma_deg.SOM", {"E": 10.0}, "tuning.sigma_deg.SOM"), ("tuning.sigma_deg.E", 10.0, "sigma_deg.E"),
    ("tuning.width", 3.0, "tuning.width"), ("input.sigma_deg", None, "input.sigma_deg"),
    ("input.sigma_deg", 0.0, "input.sigma_deg"), ("input.sigma_deg", float("inf"), "input.sigma_deg"),
    ("input.projection", "tunned", "input.projection"), ("tuning", None, "input.projection"),
    ("connectivity.kind", "spatial", "tuning"),
]


@pytest.mark.parametrize("field,value,named", BAD, ids=[f"{f}={v!r}" for f, v, _ in BAD])
def test_bad_tuning_values_exit_2_naming_the_field(tmp_path: Path, field: str, value: Any, named: str) -> None:
    FUZZ_COUNTS["tuned invalid specs"] += 1
    data = _with(field, value)
    if field == "connectivity.kind":
        data["connectivity"]["map_shape"] = [4]
    model, out = tmp_path / "m.toml", tmp_path / "out.nc"
    if isinstance(value, float) and not np.isfinite(value):
        text = to_toml(_with(field, 1.0)).replace(f"{field.split('.')[-1]} = 1.0",
                                                  f"{field.split('.')[-1]} = {'nan' if value != value else 'inf'}")
    else:
        text = to_toml(data)
    model.write_text(text)
    res = runner.invoke(app, ["simulate", str(model), "--json", "--no-progress", "--out", str(out),
                              "--duration", "2", "--dt", "0.5"])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and "error:" in res.output and named in res.output, res.output
    assert not out.exists()


def test_the_base_tuned_spec_runs(tmp_path: Path) -> None:
    model, out = tmp_path / "m.toml", tmp_path / "out.nc"
    model.write_text(to_toml(BASE))
    res = runner.invoke(app, ["simulate", str(model), "--json", "--no-progress", "--out", str(out),
                              "--duration", "2", "--dt", "0.5"])
    assert res.exit_code == 0, res.output
    assert out.exists()


def test_sigma_deg_without_the_tuned_projection_is_refused() -> None:
    data = _with("input.projection", "uniform")
    with pytest.raises(SpecError, match="only with input.projection = 'tuned'") as err:
        parse_spec(data)
    assert err.value.field == "input.sigma_deg"


def test_probability_modulation_needs_a_sparse_circuit() -> None:
    with pytest.raises(SpecError, match="kind = 'sparse'") as err:
        parse_spec(_with("tuning.modulate", "probability"))
    assert err.value.field == "tuning.modulate"
    data = _with("tuning.modulate", "probability")
    data["connectivity"].update(kind="sparse", p=0.5)
    assert build_circuit(parse_spec(data)).mask.any()
