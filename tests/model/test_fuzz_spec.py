"""Property-based fuzzing of model files (issue 8).

* Random *valid* specs always build and simulate, or raise a documented error
  (UnstableCircuitError, ConvergenceError).
* Random *invalid* specs (wrong types, out-of-range numbers, missing fields,
  unknown names, huge sizes, non-UTF-8 bytes, truncated TOML) always give exit
  code 2 through the CLI, a one-line message naming the field, no traceback and
  no output file.
* The hardened classes of issue 11 (each counted on its own in the summary line
  "fuzz cases tried"): non-finite numbers, booleans/numeric strings for numbers,
  free text over 10 000 characters, unknown keys (with "did you mean"), tables
  nested 33-1000 levels, ``dt_ms`` giving over 1e9 steps, an experiment file given
  to ``simulate``, malformed ``--stimulus`` strings.

The number of examples is bounded for ``make test`` and raised by
``CORTEX_FUZZ_EXAMPLES`` (the slow campaign in ``make validate``).
"""

from __future__ import annotations

import copy
import re
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.cli import app
from cortex_resnet.errors import ConvergenceError, SpecError, UnstableCircuitError
from cortex_resnet.rate.simulator import simulate
from cortex_resnet.model.spec import parse_spec
from cortex_resnet.core.tomlio import toml_value
from cortex_resnet.model.transfer import known_transfers

from tests.conftest import FUZZ_COUNTS

EXAMPLES = int(os.environ.get("CORTEX_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

runner = CliRunner()


# ------------------------------------------------------------------ TOML writer
def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """Minimal TOML writer for the nested dicts of a spec (tables for dicts of dicts)."""
    scalars = {k: v for k, v in data.items() if not (isinstance(v, dict) and k != "transfer")}
    tables = {k: v for k, v in data.items() if isinstance(v, dict) and k != "transfer"}
    lines = [f"{k} = {toml_value(v)}" for k, v in scalars.items()]
    for k, v in tables.items():
        name = f"{prefix}{k}"
        lines.append(f"\n[{name}]")
        lines.append(to_toml(v, prefix=name + "."))
    return "\n".join(lines)


# ------------------------------------------------------------------ strategies
TRANSFERS = st.sampled_from([
    {"name": "relu", "gain": 1.0}, {"name": "linear", "gain": 0.5}, {"name": "powerlaw", "k": 0.04, "n": 2.0},
    {"name": "sigmoid"}, {"name": "tanh", "gain": 2.0}, {"name": "lif", "sigma_mV": 4.0},
])


@st.composite
def valid_specs(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["dense", "sparse", "spatial"]))
    spec: dict[str, Any] = {"name": "fuzz", "seed": draw(st.integers(0, 2**31))}
    conn: dict[str, Any] = {"kind": kind}
    if kind == "spatial":
        sites = draw(st.integers(2, 8))
        conn["map_shape"] = [sites]
        nE, nI = sites * draw(st.integers(1, 2)), sites
        conn["sigma_E"] = draw(st.floats(0.5, 3.0))
        conn["sigma_I"] = draw(st.floats(0.5, 3.0))
    else:
        nE, nI = draw(st.integers(1, 24)), draw(st.integers(1, 8))
        if kind == "sparse":
            conn["p"] = draw(st.floats(0.0, 1.0))
    for key in ("J_EE", "J_EI", "J_IE", "J_II"):
        conn[key] = draw(st.floats(0.0, 3.0))
    conn["weight_cv"] = draw(st.floats(0.0, 1.0))
    conn["balanced"] = draw(st.booleans())
    spec["connectivity"] = conn
    spec["populations"] = {
        "E": {"n": nE, "tau_ms": draw(st.floats(1.0, 50.0)), "transfer": draw(TRANSFERS)},
        "I": {"n": nI, "tau_ms": draw(st.floats(1.0, 50.0)), "transfer": draw(TRANSFERS)},
    }
    spec["input"] = {"n_inputs": draw(st.integers(1, 3)), "gain_E": draw(st.floats(0.0, 2.0)),
                     "gain_I": draw(st.floats(0.0, 2.0)),
                     "projection": draw(st.sampled_from(["uniform", "random"]))}
    spec["bias"] = {"E": draw(st.floats(-1.0, 1.0)), "I": draw(st.floats(-1.0, 1.0))}
    spec["noise"] = {"sigma": draw(st.sampled_from([0.0, 0.1])), "tau_ms": 5.0}
    return spec


BASE: dict[str, Any] = {
    "name": "base", "seed": 1,
    "populations": {"E": {"n": 4, "tau_ms": 20.0, "transfer": {"name": "relu"}},
                    "I": {"n": 2, "tau_ms": 10.0, "transfer": {"name": "relu"}}},
    "connectivity": {"kind": "dense", "J_EE": 0.5, "J_EI": 1.0, "J_IE": 1.0, "J_II": 0.5},
    "input": {"n_inputs": 1, "gain_E": 1.0},
    "simulation": {"duration_ms": 2.0, "dt_ms": 0.5},
}

# (dotted field, a value that must be rejected): every entry is invalid by the documented spec
BAD_VALUES: list[tuple[str, Any]] = [
    ("populations.E.n", 0), ("populations.E.n", -3), ("populations.I.n", 10**9), ("populations.E.n", "many"),
    ("populations.E.n", 2.5), ("populations.I.tau_ms", 0.0), ("populations.E.tau_ms", -5.0),
    ("populations.E.tau_ms", "fast"), ("populations.E.tau_ms", float("nan")), ("populations.I.tau_ms", float("inf")),
    ("connectivity.p", -0.1), ("connectivity.p", 1.5), ("connectivity.p", "half"), ("connectivity.J_EE", -1.0),
    ("connectivity.J_EI", "strong"), ("connectivity.J_IE", 1e9), ("connectivity.kind", "smallworld"),
    ("connectivity.weight_cv", -0.5), ("connectivity.map_shape", [0]), ("connectivity.sigma_E", 0.0),
    ("populations.E.transfer.name", "softsign"), ("populations.I.transfer.gain", -1.0),
    ("populations.E.transfer.bogus", 1.0), ("seed", -1), ("seed", "s"), ("noise.sigma", -0.1),
    ("noise.tau_ms", 0.0), ("input.n_inputs", 0), ("input.gain_E", -1.0), ("input.projection", "diagonal"),
    ("name", ["not", "a", "string"]), ("bias.E", "high"), ("populations.E.unknown_field", 1),
    ("simulation.dt_ms", -0.1),
]
MISSING = ["populations", "populations.E", "populations.I.n", "populations.E.tau_ms"]


def _set(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(data)
    node = out
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def _delete(data: dict[str, Any], dotted: str) -> dict[str, Any]:
    out = copy.deepcopy(data)
    node = out
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node[p]
    del node[parts[-1]]
    return out


_NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-0123456789", min_size=1, max_size=12)
# generated out-of-range values: (dotted field, strategy of invalid values)
BAD_STRATEGIES: list[tuple[str, st.SearchStrategy]] = [
    ("populations.E.tau_ms", st.floats(max_value=0.0, allow_nan=False)),
    ("populations.I.n", st.integers(min_value=200_001, max_value=10**15) | st.integers(max_value=0)),
    ("connectivity.p", st.floats(min_value=1.0, exclude_min=True, allow_infinity=False)
     | st.floats(max_value=0.0, exclude_max=True, allow_infinity=False)),
    ("connectivity.J_II", st.floats(max_value=0.0, exclude_max=True, allow_infinity=False)),
    ("populations.E.transfer.name", _NAME.filter(lambda s: s not in known_transfers())),
    ("connectivity.kind", _NAME.filter(lambda s: s not in ("dense", "sparse", "spatial"))),
    ("noise.sigma", st.floats(max_value=0.0, exclude_max=True, allow_infinity=False)),
]


@st.composite
def invalid_specs(draw: st.DrawFn) -> tuple[str, str]:
    """(TOML text, the field the message must name)."""
    choice = draw(st.integers(0, 2))
    if choice == 0:
        field, value = draw(st.sampled_from(BAD_VALUES))
        return to_toml(_set(BASE, field, value)), field.split(".")[-1]
    if choice == 1:
        field, strategy = draw(st.sampled_from(BAD_STRATEGIES))
        return to_toml(_set(BASE, field, draw(strategy))), field.split(".")[-1]
    field = draw(st.sampled_from(MISSING))
    return to_toml(_delete(BASE, field)), field.split(".")[-1]


def _run_cli(tmp: Path, model: Path) -> tuple[int, str, Path]:
    out = tmp / "out.nc"
    res = runner.invoke(app, ["simulate", str(model), "--json", "--no-progress", "--out", str(out),
                              "--duration", "2", "--dt", "0.5"])
    return res.exit_code, res.output, out


# ------------------------------------------------------------------ tests
@FUZZ
@given(data=valid_specs())
def test_random_valid_specs_build_and_simulate_or_raise_documented_error(data: dict[str, Any]) -> None:
    FUZZ_COUNTS["valid specs"] += 1
    try:
        circuit = build_circuit(parse_spec(data))
    except SpecError as err:  # the one documented build-time refusal of a well-formed spec
        assert err.field == "connectivity.balanced" and data["connectivity"]["balanced"], err
        return
    try:
        ds = simulate(circuit, "step:amp=1.0", duration_ms=5.0, dt_ms=0.5, device="cpu")
    except (UnstableCircuitError, ConvergenceError) as err:
        assert str(err)  # documented failure with an explanation
        return
    assert np.isfinite(ds["r"].values).all()
    np.testing.assert_allclose(ds["x"].values + ds["Fx"].values, ds["r"].values, rtol=1e-12, atol=1e-12)


def test_base_spec_is_valid(tmp_path: Path) -> None:
    """The mutation base runs cleanly, so every failure below is due to the mutation."""
    model = tmp_path / "m.toml"
    model.write_text(to_toml(BASE))
    code, output, out = _run_cli(tmp_path, model)
    assert code == 0, output
    assert out.exists()


@FUZZ
@given(case=invalid_specs())
def test_random_invalid_specs_exit_2_naming_the_field(tmp_path_factory: pytest.TempPathFactory,
                                                      case: tuple[str, str]) -> None:
    FUZZ_COUNTS["invalid specs"] += 1
    text, field = case
    tmp = tmp_path_factory.mktemp("bad")
    model = tmp / "m.toml"
    model.write_text(text)
    code, output, out = _run_cli(tmp, model)
    assert code == 2, output
    assert "Traceback" not in output
    assert "error:" in output and field in output, output
    assert not out.exists()
    assert not list(tmp.glob(".out.nc*"))  # no temporary left behind


@FUZZ
@given(raw=st.binary(min_size=1, max_size=200))
def test_random_bytes_exit_2(tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
    FUZZ_COUNTS["random bytes"] += 1
    tmp = tmp_path_factory.mktemp("bytes")
    model = tmp / "m.toml"
    model.write_bytes(raw + b"\xff\xfe")  # never valid UTF-8
    code, output, out = _run_cli(tmp, model)
    assert code == 2, output
    assert "UTF-8" in output and "Traceback" not in output
    assert not out.exists()


@FUZZ
@given(cut=st.floats(0.0, 1.0))
def test_truncated_toml_never_tracebacks(tmp_path_factory: pytest.TempPathFactory, cut: float) -> None:
    """A truncated file either still is a complete valid spec (exit 0) or gives exit 2."""
    FUZZ_COUNTS["truncated TOML"] += 1
    text = Path("models/canonical_microcircuit.toml").read_text()
    tmp = tmp_path_factory.mktemp("trunc")
    model = tmp / "m.toml"
    model.write_text(text[: int(cut * len(text))])
    code, output, out = _run_cli(tmp, model)
    assert code in (0, 2), output
    assert "Traceback" not in output
    if code == 2:
        assert "error:" in output and not out.exists()


@pytest.mark.slow
def test_long_fuzz_campaign() -> None:
    """``make validate``: the same properties with many more examples (see module docstring)."""
    import subprocess
    import sys

    env = dict(os.environ, CORTEX_FUZZ_EXAMPLES="400")
    experiments = str(Path(__file__).parents[1] / "training" / "test_fuzz_experiment.py")
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, experiments,
                          "-m", "not slow"], env=env, capture_output=True, text=True, timeout=3000)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "fuzz cases tried" in res.stdout


# ------------------------------------------------------------------ hardened inputs (issue 11 §4)
# Each class is its own parametrised property test, so every class is tried and counted
# ("fuzz cases tried: ... model: non-finite: N, ..."). Every case must exit 2, name the
# field, print no traceback and write nothing.
HARD_EXAMPLES = max(EXAMPLES // 4, 3)
HARD = settings(
    max_examples=HARD_EXAMPLES, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

FLOAT_FIELDS = ["bias.E", "bias.I", "input.gain_E", "input.gain_I", "noise.sigma", "noise.tau_ms",
                "populations.E.tau_ms", "populations.I.tau_ms", "connectivity.J_EE", "connectivity.J_II",
                "connectivity.weight_cv", "simulation.duration_ms", "simulation.dt_ms",
                "spiking.dt_ms", "spiking.synapse.tau_e_ms", "spiking.populations.E.v_th_mV",
                "populations.E.transfer.gain"]
NUMBER_FIELDS = FLOAT_FIELDS[:-1] + ["populations.E.n", "input.n_inputs", "seed", "spiking.pool_size"]
NON_FINITE = st.sampled_from([float("nan"), float("inf"), float("-inf")])
NOT_A_NUMBER = st.booleans() | st.floats(-1e6, 1e6, allow_nan=False).map(repr) | st.integers(1, 99).map(str)
# (table, key) pairs whose typos must get a suggestion: keys of 3+ characters
TYPO_KEYS = [("", "seed"), ("", "name"), ("connectivity", "J_EE"), ("connectivity", "weight_cv"),
             ("populations.E", "tau_ms"), ("noise", "sigma"), ("simulation", "dt_ms"), ("input", "gain_E"),
             ("spiking.synapse", "p_connect"), ("spiking.populations.E", "tau_m_ms")]


@st.composite
def typos(draw: st.DrawFn, key: str) -> str:
    """One edit of ``key``: a character dropped, doubled, or an 'x' inserted."""
    i = draw(st.integers(0, len(key) - 1))
    edit = draw(st.sampled_from(["drop", "double", "insert"]))
    if edit == "drop":
        return key[:i] + key[i + 1:]
    if edit == "double":
        return key[:i] + key[i] + key[i:]
    return key[:i] + "x" + key[i:]


def deep_toml(draw: st.DrawFn) -> tuple[str, str]:
    """A valid base file plus a key nested 33..1000 levels deep: inline, header or array form."""
    depth = draw(st.integers(33, 1000))
    form = draw(st.sampled_from(["inline", "header", "array"]))
    base = to_toml(BASE)
    if form == "inline":
        return "deep = " + "{a = " * depth + "1" + "}" * depth + "\n" + base, "deep"
    if form == "array":
        return "deep = " + "[" * depth + "1" + "]" * depth + "\n" + base, "deep"
    return base + "\n[" + ".".join(["deep"] * depth) + "]\nx = 1\n", "deep"


@st.composite
def hardened_cases(draw: st.DrawFn, kind: str, base: dict[str, Any], floats: list[str],
                   numbers: list[str], keys: list[tuple[str, str]]) -> tuple[str, str]:
    """(file text, the field the message must name) for one class of malformed file."""
    if kind == "non-finite":
        field, value = draw(st.sampled_from(floats)), draw(NON_FINITE)
        if field.endswith("betas"):  # a pair: `betas = [nan, 0.999]`
            value = [value, 0.999]
        return to_toml(_set(base, field, value)), field
    if kind == "bool or numeric string":
        field = draw(st.sampled_from(numbers))
        return to_toml(_set(base, field, draw(NOT_A_NUMBER))), field
    if kind == "long text":
        return to_toml(_set(base, "description", "x" * draw(st.integers(10_001, 1_000_000)))), "description"
    if kind == "unknown key":
        table, key = draw(st.sampled_from(keys))
        typo = draw(typos(key).filter(lambda t: t != key and t))
        return to_toml(_set(base, f"{table}.{typo}" if table else typo, 1.0)), typo
    raise AssertionError(kind)


def _assert_refused(code: int, output: str, field: str, written: list[Path]) -> None:
    assert code == 2, output
    assert "Traceback" not in output, output
    assert "error:" in output and field in output, (field, output)
    for p in written:
        assert not p.exists(), f"{p} was written although the input was refused"


SPEC_CLASSES = ["non-finite", "bool or numeric string", "long text", "unknown key"]


@pytest.mark.parametrize("kind", SPEC_CLASSES)
@HARD
@given(data=st.data())
def test_hardened_model_files_exit_2_naming_the_field(tmp_path_factory: pytest.TempPathFactory, kind: str,
                                                     data: st.DataObject) -> None:
    FUZZ_COUNTS[f"model: {kind}"] += 1
    text, field = data.draw(hardened_cases(kind, BASE, FLOAT_FIELDS, NUMBER_FIELDS, TYPO_KEYS))
    tmp = tmp_path_factory.mktemp("hard")
    model = tmp / "m.toml"
    model.write_text(text)
    code, output, out = _run_cli(tmp, model)
    _assert_refused(code, output, field.split(".")[-1], [out])
    if kind == "unknown key":
        assert "did you mean" in output and "valid keys" in output, output


@HARD
@given(data=st.data())
def test_deeply_nested_model_files_exit_2(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    FUZZ_COUNTS["model: deep nesting"] += 1
    text, field = deep_toml(data.draw)
    tmp = tmp_path_factory.mktemp("deep")
    model = tmp / "m.toml"
    model.write_text(text)
    code, output, out = _run_cli(tmp, model)
    _assert_refused(code, output, field, [out])
    assert "nested" in output


@HARD
@given(dt=st.floats(1e-300, 1e-10))
def test_tiny_dt_names_dt_ms_with_readable_sizes(tmp_path_factory: pytest.TempPathFactory, dt: float) -> None:
    """``simulation.dt_ms = 1e-300`` (file) and ``--dt 1e-300`` (option): dt_ms named, sizes like 3e+302."""
    FUZZ_COUNTS["model: tiny dt_ms"] += 1
    tmp = tmp_path_factory.mktemp("dt")
    model = tmp / "m.toml"
    model.write_text(to_toml(_set(BASE, "simulation.dt_ms", dt)))
    code, output, out = _run_cli(tmp, model)
    _assert_refused(code, output, "dt_ms", [out])
    model.write_text(to_toml(BASE))
    res = runner.invoke(app, ["simulate", str(model), "--no-progress", "--out", str(out), "--dt", repr(dt),
                              "--duration", "100"])
    _assert_refused(res.exit_code, res.output, "dt_ms", [out])
    sizes = res.output.replace(repr(dt), "<dt>")  # the value given is echoed as given
    assert "steps" in sizes and not re.search(r"\d{10}", sizes), res.output


@HARD
@given(name=st.sampled_from(sorted(p.name for p in Path("experiments").glob("*.toml"))))
def test_experiment_file_given_to_simulate_says_which_kind(tmp_path_factory: pytest.TempPathFactory,
                                                           name: str) -> None:
    FUZZ_COUNTS["model: wrong kind of file"] += 1
    tmp = tmp_path_factory.mktemp("kind")
    code, output, out = _run_cli(tmp, Path("experiments") / name)
    _assert_refused(code, output, "<file>", [out])
    assert "experiment file" in output and "circuit model file" in output, output


STIMULUS_BAD = [("amp", "nan"), ("amp", "inf"), ("onset_ms", "inf"), ("width_ms", "-inf"), ("freq_hz", "nan"),
                ("onset_ms", "true"), ("amp", "false"), ("freq", "10"), ("onset", "5"), ("widht_ms", "3"),
                ("phase", "1"), ("amps", "[1,2]")]


@HARD
@given(kind=st.sampled_from(["step", "pulse", "sinusoid", "ramp"]), bad=st.sampled_from(STIMULUS_BAD))
def test_malformed_stimulus_strings_exit_2(tmp_path_factory: pytest.TempPathFactory, kind: str,
                                           bad: tuple[str, str]) -> None:
    FUZZ_COUNTS["stimulus strings"] += 1
    tmp = tmp_path_factory.mktemp("stim")
    model = tmp / "m.toml"
    model.write_text(to_toml(BASE))
    out = tmp / "out.nc"
    key, value = bad
    res = runner.invoke(app, ["simulate", str(model), "--no-progress", "--out", str(out),
                              "--stimulus", f"{kind}:{key}={value}"])
    _assert_refused(res.exit_code, res.output, f"stimulus.{key}", [out])
    if key in ("freq", "onset", "widht_ms", "phase", "amps"):
        assert "did you mean" in res.output, res.output
