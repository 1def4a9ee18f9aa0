"""``load_model`` and ``simulate`` accept model files written by ``save_circuit`` (trained weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner

from cortex_resnet import load_model, save_circuit, simulate, to_circuit, unroll
from cortex_resnet.cli import app

ROOT = Path(__file__).resolve().parents[2]


def test_saved_circuit_loads_with_its_weights_and_simulates_identically(tmp_path: Path) -> None:
    original = load_model(ROOT / "models" / "linear.toml")
    trained = to_circuit(unroll(original, 10, 0.5, dtype=torch.float64))
    toml = save_circuit(trained, tmp_path / "trained")
    loaded = load_model(toml)
    # softplus(softplus^-1(w)) returns w to within one rounding (relative 2e-16), hence rtol 1e-15
    np.testing.assert_allclose(loaded.W, original.W, rtol=1e-15, atol=0)
    a = simulate(original, "step:amp=1.0", duration_ms=20, dt_ms=0.5)
    b = simulate(loaded, "step:amp=1.0", duration_ms=20, dt_ms=0.5)
    np.testing.assert_allclose(a["r"].values, b["r"].values, rtol=1e-13, atol=1e-15)
    assert load_model(toml, seed=7).spec.seed == 7


def test_simulate_cli_runs_a_saved_circuit_and_refuses_overrides(tmp_path: Path) -> None:
    toml = save_circuit(to_circuit(unroll(load_model(ROOT / "models" / "linear.toml"), 10, 0.5, dtype=torch.float64)),
                        tmp_path / "trained")
    runner = CliRunner()
    ok = runner.invoke(app, ["simulate", str(toml), "--duration", "5", "--no-progress"])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(app, ["simulate", str(toml), "--set", "connectivity.J_EE=1", "--no-progress"])
    assert bad.exit_code == 2 and "trained weights" in bad.output
