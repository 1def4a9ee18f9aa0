"""Property-based fuzzing of model files (issue 8).

* Random *valid* specs always build and simulate, or raise a documented error
  (UnstableCircuitError, ConvergenceError).
* Random *invalid* specs (wrong types, out-of-range numbers, missing fields,
  unknown names, huge sizes, non-UTF-8 bytes, truncated TOML) always give exit
  code 2 through the CLI, a one-line message naming the field, no traceback and
  no output file.

The number of examples is bounded for ``make test`` and raised by
``CORTEX_FUZZ_EXAMPLES`` (the slow campaign in ``make validate``).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cortex_resnet.circuit import build_circuit
from cortex_resnet.cli import app
from cortex_resnet.errors import ConvergenceError, SpecError, UnstableCircuitError
from cortex_resnet.rate import simulate
from cortex_resnet.spec import parse_spec
from cortex_resnet.tomlio import toml_value
from cortex_resnet.transfer import known_transfers

from .conftest import FUZZ_COUNTS

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
    experiments = str(Path(__file__).with_name("test_fuzz_experiment.py"))
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, experiments,
                          "-m", "not slow"], env=env, capture_output=True, text=True, timeout=3000)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "fuzz cases tried" in res.stdout
