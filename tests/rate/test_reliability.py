"""Reliability of the simulate pipeline (issue 8): resource limits, process faults,
reproducibility, numerical faults through the CLI.

These use typer's in-process runner; signals (kill -9, Ctrl-C), which must hit a real
process, are tested in test_reliability_signals.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cortex_resnet import load_model, unroll
from cortex_resnet.cli import app
from cortex_resnet.errors import ConvergenceError, ResourceError, UnstableCircuitError
from cortex_resnet.io.results import load_dataset
from cortex_resnet.model.fixedpoint import implicit_fixed_point
from cortex_resnet.spiking.brian import RawRun
from cortex_resnet.spiking.simulator import check_finite

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "canonical_microcircuit.toml"
runner = CliRunner()


def _cli(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), env=env)


def test_memory_refusal_for_a_circuit_larger_than_the_machine(tmp_path: Path) -> None:
    """200 000 units need a 200k x 200k weight matrix (~360 GB): refused before allocating."""
    model = tmp_path / "huge.toml"
    model.write_text(MODEL.read_text().replace("n = 400", "n = 150000").replace("n = 100", "n = 50000"))
    out = tmp_path / "out.nc"
    res = _cli("simulate", str(model), "--out", str(out), "--json", "--no-progress")
    assert res.exit_code == 2, res.output
    assert "circuit weights" in res.output and "memory budget" in res.output
    assert "GiB" in res.output  # the estimate is given
    assert not out.exists()


def test_memory_refusal_for_recording_suggests_a_stride(tmp_path: Path) -> None:
    out = tmp_path / "out.nc"
    res = _cli("simulate", str(MODEL), "--out", str(out), "--duration", "1000", "--no-progress",
               env={"CORTEX_RESNET_MEMORY_BUDGET_GB": "0.01"})
    assert res.exit_code == 2, res.output
    assert "recorded trajectory" in res.output and "record stride" in res.output
    assert not out.exists()


def test_runaway_excitation_stops_with_a_diagnosis(tmp_path: Path) -> None:
    out = tmp_path / "out.nc"
    res = _cli("simulate", str(MODEL), "--set", "connectivity.J_EE=6.0", "--set", "connectivity.J_EI=0.1",
               "--out", str(out), "--no-progress")
    assert res.exit_code == 1, res.output
    for word in ("runaway", "step", "population E", "max Re(eig)", "spectral radius"):
        assert word in res.output
    assert not out.exists()


def test_same_seed_gives_byte_identical_files_with_versions(tmp_path: Path) -> None:
    paths = [tmp_path / "a.nc", tmp_path / "b.nc"]
    for p in paths:
        res = _cli("simulate", str(MODEL), "--duration", "40", "--seed", "3", "--out", str(p), "--no-progress",
                   "--set", "noise.sigma=0.2")
        assert res.exit_code == 0, res.output
    assert paths[0].read_bytes() == paths[1].read_bytes()
    ds = load_dataset(paths[0])
    versions = json.loads(ds.attrs["versions"])
    assert {"python", "torch", "brian2", "numpy"} <= set(versions)
    assert json.loads(ds.attrs["spec"])["seed"] == 3
    other = tmp_path / "c.nc"
    assert _cli("simulate", str(MODEL), "--duration", "40", "--seed", "4", "--out", str(other), "--no-progress",
                "--set", "noise.sigma=0.2").exit_code == 0
    assert other.read_bytes() != paths[0].read_bytes()


def test_names_in_specs_cannot_escape_the_output_folder(tmp_path: Path) -> None:
    """A model or experiment name becomes part of output paths (runs/<name>): separators are refused."""
    model = tmp_path / "evil.toml"
    model.write_text(MODEL.read_text().replace('name = "canonical_microcircuit"', 'name = "../../evil"'))
    res = _cli("simulate", str(model), "--no-progress")
    assert res.exit_code == 2 and "name" in res.output
    exp = tmp_path / "exp.toml"
    exp.write_text((ROOT / "experiments" / "digits_tied.toml").read_text()
                   .replace('name = "digits_tied"', 'name = "../escape"')
                   .replace('circuit = "circuits/', f'circuit = "{ROOT}/experiments/circuits/'))
    res = _cli("train", str(exp), "--no-progress")
    assert res.exit_code == 2 and "name" in res.output, res.output
    assert not (tmp_path.parent / "escape").exists() and not (ROOT / "escape").exists()


def test_ill_conditioned_implicit_backward_is_reported_not_returned() -> None:
    """An equilibrium where J = dg/dr has an eigenvalue 1: the forward solve succeeds, the gradient does not exist."""
    import torch

    A = torch.diag(torch.tensor([1.0, 0.5], dtype=torch.float64))
    b = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)
    r = implicit_fixed_point(lambda r: r @ A.T + b, torch.zeros(1, 2, dtype=torch.float64),
                             jacobian=lambda r: A.expand(r.shape[0], 2, 2))
    torch.testing.assert_close(r.detach(), torch.tensor([[0.0, 2.0]], dtype=torch.float64))
    with pytest.raises(ConvergenceError, match=r"ill-conditioned.*spectral radius .* = 1"):
        r.sum().backward()


def test_training_and_unroll_memory_are_refused_before_allocating(tmp_path: Path, monkeypatch) -> None:
    """A budget of 1 MiB: an untied unroll of the canonical microcircuit and a training run are refused."""
    circuit = load_model(MODEL)  # 500 units: built within the default budget
    monkeypatch.setenv("CORTEX_RESNET_MEMORY_BUDGET_GB", str(1 / 1024))
    with pytest.raises(ResourceError, match="unrolled network parameters"):
        unroll(circuit, 50, 0.5, variant="untied")
    run = tmp_path / "run"
    res = _cli("train", str(ROOT / "experiments" / "digits_tied.toml"), "--out", str(run), "--no-progress",
               env={"CORTEX_RESNET_MEMORY_BUDGET_GB": str(1 / 1024)})
    assert res.exit_code == 2 and "training memory" in res.output and "batch_size" in res.output, res.output
    assert not (run / "checkpoint.pt").exists()


def test_spiking_nan_is_detected_and_explained() -> None:
    """NaN in the spiking backend (a blown-up membrane trace) stops the run with an explanation."""
    import numpy as np

    circuit = load_model(ROOT / "models" / "lif_ei.toml")
    v = np.zeros((5, 2))
    check_finite(RawRun(np.zeros(0, int), np.zeros(0), np.arange(5.0), v), circuit, "run")  # finite: silent
    v[3, 1] = np.nan
    with pytest.raises(UnstableCircuitError, match=r"NaN/inf at t = 3.00 ms"):
        check_finite(RawRun(np.zeros(0, int), np.zeros(0), np.arange(5.0), v), circuit, "run")
