"""Reliability of the simulate pipeline (issue 8): resource limits, process faults,
reproducibility, numerical faults through the CLI.

These run the real console command in a subprocess where a signal has to hit a
real process (kill -9, Ctrl-C); the rest use typer's in-process runner.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
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


class Stderr:
    """Collects a child's stderr in a thread, so a test can wait for a text to appear on it.

    Tests wait for events (a line on stderr, a file), never for a fixed time: on a loaded
    machine start-up alone can take many seconds.
    """

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.text = proc, ""
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        fd = self.proc.stderr.fileno()
        while chunk := os.read(fd, 65536):
            with self._changed:
                self.text += chunk.decode(errors="replace")
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, needle: str, timeout_s: float = 300.0) -> None:
        """Block until ``needle`` is on stderr; fail if the process ends first or on timeout."""
        with self._changed:
            ok = self._changed.wait_for(lambda: needle in self.text or not self._thread.is_alive(),
                                        timeout=timeout_s)
        assert needle in self.text, (f"{needle!r} never appeared on stderr (timed out: {not ok})",
                                     self.proc.poll(), self.text[-3000:])

    def finish(self, timeout_s: float = 60.0) -> str:
        """Wait for the process to exit and its stderr to close; the whole stderr."""
        self.proc.wait(timeout=timeout_s)
        self._thread.join(timeout=timeout_s)
        return self.text


def _start(out: Path, duration: str = "4000", stride: str = "10", progress: bool = False) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "cortex_resnet.cli", "simulate", str(MODEL), "--duration", duration,
           "--out", str(out), "--record-stride", stride, "--progress" if progress else "--no-progress"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)


def _start_simulating(out: Path, duration: str) -> tuple[subprocess.Popen, Stderr]:
    """A long run, returned once its integration loop has started (its progress bar is on stderr)."""
    proc = _start(out, duration=duration, progress=True)
    err = Stderr(proc)
    err.wait_for("rate euler")  # tqdm's bar: drawn when the integration starts
    return proc, err


def _wait_for(predicate, proc: subprocess.Popen, timeout_s: float = 300.0) -> None:
    """Poll a file-system event (a file appears), failing if the process ends first."""
    end = time.monotonic() + timeout_s
    while not predicate():
        assert proc.poll() is None, ("the run ended before the moment to kill it", proc.communicate())
        assert time.monotonic() < end, "timed out waiting for the moment to kill the run"
        time.sleep(0.005)  # a poll interval, not a wait for time to pass


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
    proc, err = _start_simulating(out, duration="20000")
    proc.send_signal(signal.SIGKILL)
    err.finish()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    _check_after_kill(out, tmp_path)


def test_kill_9_during_the_file_write(tmp_path: Path) -> None:
    """Killed while the netCDF file is being written (a ~480 MB result): the target never appears
    half-written; the next write to the same path removes the dead writer's temporary."""
    out = tmp_path / "run.nc"
    proc = _start(out, duration="4000", stride="1")
    _wait_for(lambda: any(tmp_path.glob(".run.nc.*.tmp")), proc)  # the writer has started
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not out.exists(), "the result appeared although the writer was killed mid-write"
    assert list(tmp_path.glob(".run.nc.*.tmp")), "the killed writer's temporary should still be there"
    _check_after_kill(out, tmp_path)


def test_ctrl_c_exits_130_with_a_message_and_no_output(tmp_path: Path) -> None:
    out = tmp_path / "run.nc"
    proc, err = _start_simulating(out, duration="20000")
    proc.send_signal(signal.SIGINT)
    stderr = err.finish()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "rerun" in stderr and "Traceback" not in stderr
    assert not out.exists()
    assert not list(tmp_path.glob(".run.nc.*"))


@pytest.mark.parametrize("module", ["cortex_resnet._startup", "torch", "typer", "cortex_resnet.fanout.tasks"])
def test_ctrl_c_during_start_up_exits_130_without_a_traceback(tmp_path: Path, module: str) -> None:
    """SIGINT while the command is still importing (issue 11 §5: it gave exit -2 and a
    KeyboardInterrupt traceback). ``-X importtime`` prints a line on stderr as each import
    finishes: the signal is sent as soon as ``module`` is imported, i.e. mid start-up."""
    out = tmp_path / "run.nc"
    cmd = [sys.executable, "-X", "importtime", "-m", "cortex_resnet.cli", "simulate", str(MODEL),
           "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    err = Stderr(proc)
    err.wait_for(f" {module}\n")  # "import time: ... |   torch"
    proc.send_signal(signal.SIGINT)
    stderr = err.finish()
    assert proc.returncode == 130, stderr[-3000:]
    assert "interrupted" in stderr and "Traceback" not in stderr, stderr[-3000:]
    assert not out.exists() and not list(tmp_path.iterdir())


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
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    err = Stderr(proc)
    # the first checkpoint is complete (renamed into place, no temporary left): training is under way
    _wait_for(lambda: (run / "checkpoint.pt").exists() and not list(run.glob(".*.tmp")), proc)
    proc.send_signal(signal.SIGINT)
    stderr = err.finish()
    assert proc.returncode == 130, stderr
    assert "checkpoint.pt" in stderr and "--resume" in stderr
    assert not list(run.glob(".*.tmp")), "a half-written file was left behind"


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
