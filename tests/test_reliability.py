"""Reliability of the simulate pipeline (issue 8): resource limits, process faults,
reproducibility, numerical faults through the CLI.

These run the real console command in a subprocess where a signal has to hit a
real process (kill -9, Ctrl-C); the rest use typer's in-process runner.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cortex_resnet.cli import app
from cortex_resnet.results import load_dataset

ROOT = Path(__file__).resolve().parents[1]
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


def _start(out: Path, duration: str = "4000", stride: str = "10") -> subprocess.Popen:
    cmd = [sys.executable, "-m", "cortex_resnet.cli", "simulate", str(MODEL), "--duration", duration,
           "--out", str(out), "--no-progress", "--record-stride", stride]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def _wait_until_started(proc: subprocess.Popen, seconds: float) -> None:
    time.sleep(seconds)
    assert proc.poll() is None, proc.communicate()


def _wait_for(predicate, proc: subprocess.Popen, timeout_s: float = 120.0) -> None:
    end = time.monotonic() + timeout_s
    while not predicate():
        assert proc.poll() is None, ("the run ended before the moment to kill it", proc.communicate())
        assert time.monotonic() < end, "timed out waiting for the moment to kill the run"
        time.sleep(0.005)


def _check_after_kill(out: Path, tmp_path: Path) -> None:
    if out.exists():  # only if the rename happened before the kill: then it must be whole
        assert "r" in load_dataset(out)
    rerun = _cli("simulate", str(MODEL), "--duration", "50", "--out", str(out), "--no-progress")
    assert rerun.exit_code == 0, rerun.output
    assert load_dataset(out).sizes["time"] == 501
    assert not list(tmp_path.glob(".run.nc.*.tmp")), "stale temporaries of the killed writer remain"


def test_kill_9_during_the_simulation(tmp_path: Path) -> None:
    """A long run (20 s of dynamics, tens of seconds of work) killed mid-way leaves nothing."""
    out = tmp_path / "run.nc"
    proc = _start(out, duration="20000")
    _wait_until_started(proc, 4.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not out.exists()
    _check_after_kill(out, tmp_path)


def test_kill_9_during_the_file_write(tmp_path: Path) -> None:
    """Killed while the netCDF file is being written (a ~480 MB result): the target never appears
    half-written; the next write to the same path removes the dead writer's temporary."""
    out = tmp_path / "run.nc"
    proc = _start(out, duration="4000", stride="1")
    _wait_for(lambda: any(tmp_path.glob(".run.nc.*.tmp")), proc)
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not out.exists(), "the result appeared although the writer was killed mid-write"
    assert list(tmp_path.glob(".run.nc.*.tmp")), "the killed writer's temporary should still be there"
    _check_after_kill(out, tmp_path)


def test_ctrl_c_exits_130_with_a_message_and_no_output(tmp_path: Path) -> None:
    out = tmp_path / "run.nc"
    proc = _start(out, duration="20000")
    _wait_until_started(proc, 4.0)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "rerun" in stderr
    assert not out.exists()
    assert not list(tmp_path.glob(".run.nc.*"))


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


def test_ctrl_c_during_training_says_where_the_checkpoint_is_and_how_to_resume(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "cortex_resnet.cli", "train", str(ROOT / "experiments" / "digits_tied.toml"),
           "--out", str(run), "--no-progress", "--epochs", "200", "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    _wait_for(lambda: (run / "checkpoint.pt").exists(), proc)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "checkpoint.pt" in stderr and "--resume" in stderr
    assert not list(run.glob(".*.tmp")), "a half-written file was left behind"


def test_ill_conditioned_implicit_backward_is_reported_not_returned() -> None:
    """An equilibrium where J = dg/dr has an eigenvalue 1: the forward solve succeeds, the gradient does not exist."""
    import torch

    from cortex_resnet.errors import ConvergenceError
    from cortex_resnet.fixedpoint import implicit_fixed_point

    A = torch.diag(torch.tensor([1.0, 0.5], dtype=torch.float64))
    b = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)
    r = implicit_fixed_point(lambda r: r @ A.T + b, torch.zeros(1, 2, dtype=torch.float64),
                             jacobian=lambda r: A.expand(r.shape[0], 2, 2))
    torch.testing.assert_close(r.detach(), torch.tensor([[0.0, 2.0]], dtype=torch.float64))
    with pytest.raises(ConvergenceError, match=r"ill-conditioned.*spectral radius .* = 1"):
        r.sum().backward()


def test_training_and_unroll_memory_are_refused_before_allocating(tmp_path: Path, monkeypatch) -> None:
    """A budget of 1 MiB: an untied unroll of the canonical microcircuit and a training run are refused."""
    from cortex_resnet import load_model, unroll
    from cortex_resnet.errors import ResourceError

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

    from cortex_resnet import load_model
    from cortex_resnet.errors import UnstableCircuitError
    from cortex_resnet.spiking import check_finite
    from cortex_resnet.spiking_brian import RawRun

    circuit = load_model(ROOT / "models" / "lif_ei.toml")
    v = np.zeros((5, 2))
    check_finite(RawRun(np.zeros(0, int), np.zeros(0), np.arange(5.0), v), circuit, "run")  # finite: silent
    v[3, 1] = np.nan
    with pytest.raises(UnstableCircuitError, match=r"NaN/inf at t = 3.00 ms"):
        check_finite(RawRun(np.zeros(0, int), np.zeros(0), np.arange(5.0), v), circuit, "run")
