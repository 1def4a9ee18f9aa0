"""Reliability of the simulate and train commands under signals (issue 8): kill -9 and Ctrl-C hit a
real process (the console command in a subprocess), which must leave no half-written result.

Split from ``test_reliability.py`` (the in-process checks) so that the two modules, each run by one
worker under ``--dist loadscope``, finish at about the same time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cortex_resnet.cli import app
from cortex_resnet.io.results import load_dataset

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "canonical_microcircuit.toml"
runner = CliRunner()


def _cli(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), env=env)


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


# The child below is the real command (``cortex_resnet.cli.main``) with one change: when h5netcdf
# closes the file it writes, the data are flushed into the temporary, a line goes to stderr and the
# process blocks before the file is closed and renamed. The test kills it there: a writer killed
# mid-write, every time, without racing a long write (the racing version is the slow test below).
_PAUSE_IN_WRITE = """
import sys, h5netcdf
_close = h5netcdf.File.close
def close(self):
    self.flush()
    sys.stderr.write("PAUSED IN WRITE\\n"); sys.stderr.flush()
    sys.stdin.read()  # blocks until the test kills the process
    _close(self)
h5netcdf.File.close = close
from cortex_resnet.cli import main
sys.argv[0] = "cortex-resnet"
main()
"""


def test_kill_9_while_the_file_is_open_for_writing(tmp_path: Path) -> None:
    """Killed with the netCDF data in the temporary, the file not yet closed nor renamed: the target
    never appears; the next write to the same path removes the dead writer's temporary."""
    out = tmp_path / "run.nc"
    cmd = [sys.executable, "-c", _PAUSE_IN_WRITE, "simulate", str(MODEL), "--duration", "200",
           "--out", str(out), "--record-stride", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    err = Stderr(proc)
    err.wait_for("PAUSED IN WRITE")
    tmps = list(tmp_path.glob(".run.nc.*.tmp"))
    assert len(tmps) == 1 and tmps[0].stat().st_size > 0, "the writer has written data into its temporary"
    proc.send_signal(signal.SIGKILL)
    err.finish()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists(), "the result appeared although the writer was killed mid-write"
    assert list(tmp_path.glob(".run.nc.*.tmp")), "the killed writer's temporary should still be there"
    _check_after_kill(out, tmp_path)


# covered in the default suite, deterministically, by test_kill_9_while_the_file_is_open_for_writing;
# this one races a real ~480 MB write (~35 s on a busy 2-core machine)
@pytest.mark.slow
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


def test_ctrl_c_during_training_says_where_the_checkpoint_is_and_how_to_resume(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "cortex_resnet.cli", "train", str(ROOT / "experiments" / "digits_tied.toml"),
           "--out", str(run), "--no-progress", "--epochs", "200", "--threads", "1",
           "--set", "data.n_train=200"]  # short epochs: the first checkpoint comes sooner
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    err = Stderr(proc)
    # the first checkpoint is complete (renamed into place, no temporary left): training is under way
    _wait_for(lambda: (run / "checkpoint.pt").exists() and not list(run.glob(".*.tmp")), proc)
    proc.send_signal(signal.SIGINT)
    stderr = err.finish()
    assert proc.returncode == 130, stderr
    assert "checkpoint.pt" in stderr and "--resume" in stderr
    assert not list(run.glob(".*.tmp")), "a half-written file was left behind"
