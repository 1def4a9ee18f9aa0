"""Specs (:mod:`cortex_resnet.model.spec`): model files, validation messages, stimuli strings."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from cortex_resnet.errors import SpecError, UnknownNameError
from cortex_resnet.model.spec import CircuitSpec, load_spec, parse_spec, parse_stimulus
from cortex_resnet.model.transfer import known_transfers

MODELS = Path(__file__).resolve().parents[2] / "models"
MODEL_FILES = sorted(p.name for p in MODELS.glob("*.toml"))

BASE = {
    "populations": {"E": {"n": 4, "tau_ms": 20.0}, "I": {"n": 2, "tau_ms": 10.0}},
    "connectivity": {"kind": "dense", "J_EE": 0.5, "J_EI": 1.0, "J_IE": 1.0, "J_II": 0.5},
}


def _with(path: str | None = None, value=None, **changes) -> dict:
    """A deep copy of BASE with dotted fields set: ``_with("a.b", 1)`` or ``_with(**{"a.b": 1})``."""
    data = copy.deepcopy(BASE)
    if path is not None:
        changes[path] = value
    for key, val in changes.items():
        node = data
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = val
    return data


@pytest.mark.parametrize("name", MODEL_FILES)
def test_every_model_file_loads(name):
    spec = load_spec(MODELS / name)
    assert isinstance(spec, CircuitSpec)
    assert spec.name == Path(name).stem
    assert spec.n_units == sum(spec.populations[k].n for k in spec.populations.names)


def test_models_folder_has_the_issue_models():
    assert {"linear.toml", "canonical_microcircuit.toml", "isn.toml", "ssn.toml", "spatial_ring.toml"} <= set(MODEL_FILES)


@pytest.mark.parametrize("field,value,allowed", [
    ("populations.E.tau_ms", -5.0, "greater than 0"),
    ("populations.I.n", 0, "greater than or equal to 1"),
    ("connectivity.p", 1.5, "less than or equal to 1"),
    ("connectivity.p", -0.1, "greater than or equal to 0"),
    ("connectivity.J_EE", -1.0, "greater than or equal to 0"),
    ("connectivity.kind", "random", "'dense', 'sparse' or 'spatial'"),
    ("noise.tau_ms", 0.0, "greater than 0"),
    ("input.projection", "diagonal", "'uniform'"),
    ("connectivity.J_XX", 1.0, "unknown field"),
])
def test_bad_field_names_field_value_and_allowed(field, value, allowed):
    with pytest.raises(SpecError) as info:
        parse_spec(_with(field, value))
    err = info.value
    assert err.field == field
    assert err.value == value
    assert allowed in err.allowed


def test_missing_required_field_is_named():
    data = _with("populations.E", {"tau_ms": 20.0})
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    assert info.value.field == "populations.E.n"
    assert "missing" in info.value.allowed


def test_unknown_transfer_lists_known_names():
    with pytest.raises(SpecError) as info:
        parse_spec(_with("populations.E.transfer", {"name": "softplus"}))
    assert info.value.field == "populations.E.transfer.name"
    for name in known_transfers():
        assert name in str(info.value)


def test_bad_transfer_parameter_is_named():
    with pytest.raises(SpecError) as info:
        parse_spec(_with("populations.I.transfer", {"name": "relu", "gain": -1.0}))
    assert info.value.field == "populations.I.transfer.gain"


@pytest.mark.parametrize("changes,field,needle", [
    ({"connectivity.kind": "spatial"}, "connectivity.map_shape", "map_shape = [64]"),
    ({"connectivity.kind": "spatial", "connectivity.map_shape": [3]}, "populations.E.n",
     "multiple of the map size 3"),
    ({"input.projection": "by_population"}, "input.n_inputs", "2 for projection = 'by_population'"),
    ({"input.projection": "topographic"}, "input.projection", "connectivity.kind = 'spatial'"),
    ({"connectivity.kind": "spatial", "connectivity.map_shape": [2], "input.projection": "topographic",
      "input.n_inputs": 3}, "input.n_inputs", "number of map sites 2"),
])
def test_cross_field_rules_name_the_field(changes, field, needle):
    with pytest.raises(SpecError) as info:
        parse_spec(_with(**changes))
    assert info.value.field == field
    assert needle in str(info.value)


def test_malformed_toml_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[populations.E\nn = 4\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.field == "<toml>"
    assert str(path) in str(info.value)


def test_missing_file_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "nope.toml")
    assert info.value.field == "model"


def test_model_file_is_data_only(tmp_path):
    """A string that looks like code stays a string: the description is never evaluated."""
    data = _with("description", "__import__('os').system('false')")
    assert parse_spec(data).description == "__import__('os').system('false')"


def test_replace_changes_dotted_fields_and_revalidates():
    spec = parse_spec(BASE)
    new = spec.replace(**{"connectivity.J_EE": 2.0, "seed": 7})
    assert (new.connectivity.J_EE, new.seed) == (2.0, 7)
    assert spec.connectivity.J_EE == 0.5  # frozen original unchanged
    with pytest.raises(SpecError) as info:
        spec.replace(**{"populations.E.tau_ms": -1.0})
    assert info.value.field == "populations.E.tau_ms"


def test_to_json_round_trips():
    spec = load_spec(MODELS / "canonical_microcircuit.toml")
    assert parse_spec(json.loads(spec.to_json())) == spec


# ------------------------------------------------------------------ stimuli

@pytest.mark.parametrize("text,expected", [
    ("step:amp=1.0", {"kind": "step", "amps": [1.0]}),
    ("step:amp=[0.5,1,2],onset_ms=50", {"kind": "step", "amps": [0.5, 1.0, 2.0], "onset_ms": 50.0}),
    ("pulse:amp=2,onset_ms=10,width_ms=5", {"kind": "pulse", "width_ms": 5.0}),
    ("sinusoid:amp=1,freq_hz=4,baseline=0.5", {"kind": "sinusoid", "freq_hz": 4.0, "baseline": 0.5}),
    ("constant:amp=1,channels=[0,2]", {"kind": "constant", "channels": [0, 2]}),
    ("npy:path=a/b.npy,dt_ms=0.5", {"kind": "npy", "path": "a/b.npy", "dt_ms": 0.5}),
])
def test_parse_stimulus(text, expected):
    s = parse_stimulus(text)
    for key, value in expected.items():
        assert getattr(s, key) == value


@pytest.mark.parametrize("text,field", [
    ("wave:amp=1", "stimulus.kind"),
    ("step:amp=abc", "stimulus.amp"),
    ("step:amp", "stimulus"),
    ("step:onset_ms=-3", "stimulus.onset_ms"),
    ("step:onset_ms=10,offset_ms=5", "stimulus.offset_ms"),
    ("npy:dt_ms=1", "stimulus.path"),
    ("step:amp=[]", "stimulus.amp"),
])
def test_bad_stimulus_strings(text, field):
    with pytest.raises(SpecError) as info:
        parse_stimulus(text)
    assert info.value.field == field


def test_unknown_name_error_lists_sorted_names():
    err = UnknownNameError("integrator", "leapfrog", ["rk4", "euler"], field="method")
    assert err.known == ["euler", "rk4"]
    assert "known: euler, rk4" in str(err)


# ------------------------------------------------------------------ hardened inputs (issue 11 §4)
@pytest.mark.parametrize("field, value", [
    ("bias.E", float("nan")), ("input.gain_E", float("inf")), ("noise.sigma", float("nan")),
    ("simulation.duration_ms", float("inf")), ("populations.E.transfer", {"name": "relu", "gain": float("nan")}),
    ("spiking.synapse.tau_e_ms", float("-inf")),
])
def test_non_finite_numbers_are_refused_naming_the_field(field, value):
    with pytest.raises(SpecError, match="finite") as err:
        parse_spec(_with(field, value))
    assert err.value.field.startswith(field)


@pytest.mark.parametrize("value", [True, False, "20.0", "20"])
def test_numbers_are_numbers_not_booleans_or_strings(value):
    with pytest.raises(SpecError, match="a number") as err:
        parse_spec(_with("populations.E.tau_ms", value))
    assert err.value.field == "populations.E.tau_ms"
    assert parse_spec(_with("populations.E.tau_ms", 20)).populations.E.tau_ms == 20.0  # ints still are


def test_unknown_key_gets_a_suggestion_and_the_valid_keys():
    with pytest.raises(SpecError) as err:
        parse_spec(_with("connectivity.J_EEE", 1.0))
    assert err.value.field == "connectivity.J_EEE"
    assert "did you mean 'J_EE'?" in str(err.value) and "J_IE, J_II" in str(err.value)


def test_free_text_is_bounded():
    assert parse_spec(_with("description", "x" * 10_000)).description
    with pytest.raises(SpecError, match="at most 10000 characters") as err:
        parse_spec(_with("description", "x" * 1_000_000))
    assert err.value.field == "description" and len(str(err.value)) < 300


@pytest.mark.parametrize("form", ["inline", "array", "header"])
def test_deep_nesting_is_refused_without_recursion_error(tmp_path, form):
    body = {"inline": "deep = " + "{a = " * 1000 + "1" + "}" * 1000,
            "array": "deep = " + "[" * 1000 + "1" + "]" * 1000,
            "header": "[" + ".".join(["deep"] * 1000) + "]\nx = 1"}[form]
    path = tmp_path / "m.toml"
    path.write_text(body + "\n")
    with pytest.raises(SpecError, match="nested at most 32 levels") as err:
        load_spec(path)
    assert err.value.field.startswith("deep")


def test_tiny_dt_names_dt_ms_with_a_readable_step_count():
    with pytest.raises(SpecError) as err:
        parse_spec(_with("simulation.dt_ms", 1e-300))
    assert err.value.field == "simulation.dt_ms" and "3e+302 steps" in str(err.value)


def test_an_experiment_file_is_not_a_model_file():
    with pytest.raises(SpecError, match="experiment file.*circuit model file"):
        load_spec(Path(__file__).resolve().parents[2] / "experiments" / "digits_tied.toml")


def test_unknown_stimulus_key_gets_a_suggestion():
    with pytest.raises(SpecError, match="did you mean 'freq_hz'") as err:
        parse_stimulus("sinusoid:freq=10")
    assert err.value.field == "stimulus.freq"
    for text in ("step:amp=nan", "step:onset_ms=inf"):
        with pytest.raises(SpecError, match="finite"):
            parse_stimulus(text)
