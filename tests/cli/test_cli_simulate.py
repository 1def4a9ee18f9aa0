"""``cortex-resnet simulate``: analytic check through the CLI, exit codes, no partial output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.cli import app
from cortex_resnet.rate.simulator import known_integrators
from cortex_resnet.io.results import load_dataset
from cortex_resnet.model.spec import load_spec
from cortex_resnet.model.transfer import known_transfers

from tests import problems as P

ROOT = Path(__file__).resolve().parents[2]
LINEAR = ROOT / "models" / "linear.toml"
runner = CliRunner()


def _analytic_population_rates(model: Path, amp: float = 1.0) -> dict[str, float]:
    """(I - W)^-1 (B u + b) by numpy.linalg.solve, averaged per population."""
    circuit = build_circuit(load_spec(model))
    r = P.linear_steady_state(circuit, np.full(circuit.n_inputs, amp))
    return {"E": float(r[circuit.is_E].mean()), "I": float(r[~circuit.is_E].mean())}


def _invoke(*args: str):
    return runner.invoke(app, ["simulate", *map(str, args)])


def test_linear_model_json_matches_analytic_steady_state(tmp_path):
    """linear.toml, 300 ms, Euler dt 0.1: the Euler map's fixed point is exactly r*, and the
    slowest mode (max Re eig = -0.05 /ms) leaves e^-15 ~ 3e-7 of the transient at 300 ms:
    final rates within 1e-6 relative; the steady-state solver's values within 1e-10."""
    out = tmp_path / "run.nc"
    res = _invoke(LINEAR, "--backend", "rate", "--json", "--out", out)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    expected = _analytic_population_rates(LINEAR)
    for pop in ("E", "I"):
        assert summary["final_rate"][pop][0] == pytest.approx(expected[pop], rel=1e-6)
        assert summary["steady_state"][pop][0] == pytest.approx(expected[pop], rel=1e-10)
    assert {"out", "backend", "mean_rate_hz", "max_eig_real", "inhibition_stabilized", "runtime_s"} <= set(summary)
    assert summary["backend"] == "rate" and summary["out"] == str(out)
    assert summary["max_eig_real"] == pytest.approx(-0.05, abs=1e-9)
    assert summary["inhibition_stabilized"] is False
    ds = load_dataset(out)
    np.testing.assert_allclose(ds["x"].values + ds["Fx"].values, ds["r"].values, rtol=0, atol=1e-15)


def _write_model(tmp_path: Path, old: str, new: str) -> Path:
    text = LINEAR.read_text()
    assert old in text
    path = tmp_path / "model.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize("old,new,field,extra", [
    ("[connectivity]", "[connectivity", "<toml>", ["valid TOML"]),
    ("tau_ms = 20.0", "tau_ms = -20.0", "populations.E.tau_ms", ["-20.0"]),
    ('kind = "dense"', 'kind = "sparse"\np = 1.5', "connectivity.p", ["1.5"]),
    ('transfer = { name = "linear", gain = 1.0 }\n\n[populations.I]',
     'transfer = { name = "softplus" }\n\n[populations.I]', "populations.E.transfer.name", known_transfers()),
])
def test_bad_model_file_exits_2_naming_the_field_without_output(tmp_path, old, new, field, extra):
    model = _write_model(tmp_path, old, new)
    out = tmp_path / "run.nc"
    res = _invoke(model, "--json", "--out", out, "--duration", "1")
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("error:") and field in res.stderr
    for word in extra:
        assert word in res.stderr
    assert "Traceback" not in res.output
    assert not out.exists() and res.stdout == ""


def test_unknown_integrator_exits_2_listing_names(tmp_path):
    out = tmp_path / "run.nc"
    res = _invoke(LINEAR, "--method", "leapfrog", "--out", out, "--duration", "1")
    assert res.exit_code == 2
    assert "method" in res.stderr and "leapfrog" in res.stderr
    for name in known_integrators():
        assert name in res.stderr
    assert not out.exists()


@pytest.mark.parametrize("shape", [(10, 3), (10, 2, 5), (7,)])
def test_stimulus_file_with_wrong_shape_exits_2(tmp_path, shape):
    """linear.toml has one input channel: (T, 1) or (T, batch, 1) are the accepted shapes."""
    stim = tmp_path / "u.npy"
    np.save(stim, np.ones(shape))
    out = tmp_path / "run.nc"
    res = _invoke(LINEAR, "--stimulus", f"npy:path={stim}", "--out", out, "--duration", "1")
    assert res.exit_code == 2
    assert "stimulus.path" in res.stderr and "shape" in res.stderr
    assert not out.exists()


@pytest.mark.parametrize("args,field", [
    (["--dt", "0.3", "--duration", "1"], "dt_ms"),
    (["--dtype", "float16"], "dtype"),
    (["--backend", "nest"], "--backend"),
    (["--set", "connectivity.J_EE=-1"], "connectivity.J_EE"),
    (["--stimulus", "step:amp=abc"], "stimulus.amp"),
])
def test_bad_options_exit_2(tmp_path, args, field):
    out = tmp_path / "run.nc"
    res = _invoke(LINEAR, *args, "--out", out)
    assert res.exit_code == 2, res.output
    assert field in res.stderr
    assert not out.exists()


def test_unstable_circuit_exits_1_with_diagnosis_and_no_output(tmp_path):
    """J_EE = 3 in the linear circuit: population matrix [[3, -1], [1, -0.5]] has trace 2.5 > 0,
    rates grow without bound; exit 1 (a run-time failure), eigen-diagnosis, no file."""
    out = tmp_path / "run.nc"
    res = _invoke(LINEAR, "--set", "connectivity.J_EE=3.0", "--out", out, "--json")
    assert res.exit_code == 1, res.output
    assert "runaway" in res.stderr and "max Re(eig)" in res.stderr and "unstable" in res.stderr
    assert "Traceback" not in res.output
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def _console(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("cortex-resnet")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def test_console_script_end_to_end():
    """The installed console script, exactly as in the issue's "Done when"."""
    proc = _console("simulate", "models/linear.toml", "--backend", "rate", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    expected = _analytic_population_rates(LINEAR)
    assert summary["steady_state"]["E"][0] == pytest.approx(expected["E"], rel=1e-10)
    assert summary["final_rate"]["I"][0] == pytest.approx(expected["I"], rel=1e-6)


def test_console_script_bad_input_exit_code(tmp_path):
    model = _write_model(tmp_path, "tau_ms = 10.0", "tau_ms = -1.0")
    proc = _console("simulate", str(model), "--out", str(tmp_path / "run.nc"))
    assert proc.returncode == 2
    assert "populations.I.tau_ms" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run.nc").exists()
