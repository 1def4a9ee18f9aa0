"""The README's commands work: every fenced ``bash`` block marked ``<!-- runnable -->`` is run.

The marked blocks are the cheap ones (seconds); the rest of the tour (training,
spiking, benches) is exercised by their own tests. Commands run in a temporary
folder that sees the repository's ``models/`` and ``experiments/``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cortex_resnet.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = re.compile(r"<!-- runnable -->\s*\n```bash\n(.*?)```", re.S)


def runnable_commands() -> list[str]:
    cmds = []
    for block in BLOCK.findall(README.read_text()):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                cmds.append(line)
    return cmds


def test_readme_has_runnable_blocks() -> None:
    assert len(runnable_commands()) >= 3


def test_readme_has_the_two_setup_commands() -> None:
    text = README.read_text()
    assert "make demo" in text and "make test" in text


def _argv_in(command: str, tmp_path: Path) -> list[str]:
    """The command's arguments after ``cortex-resnet``; ``tmp_path`` sees ``models/`` and ``experiments/``."""
    for sub in ("models", "experiments"):
        (tmp_path / sub).symlink_to(ROOT / sub)
    argv = shlex.split(command)
    assert argv[0] == "cortex-resnet", "runnable README blocks hold cortex-resnet commands only"
    return argv[1:]


@pytest.mark.parametrize("command", runnable_commands())
def test_readme_command_runs(command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each command in-process (typer's runner: the same app the console script calls, without a
    Python start-up per command); test_readme_command_runs_as_a_real_process runs one for real."""
    args = _argv_in(command, tmp_path)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output[-4000:]


def test_readme_command_runs_as_a_real_process(tmp_path: Path) -> None:
    """A README command as a user types it: the installed ``cortex-resnet`` console script in a new
    process, in a folder of its own; its JSON on stdout. (The unroll check: the README's first command,
    ``simulate ... --json``, runs the same way in tests/cli/test_cli_simulate.py's console-script test.)"""
    command = next(c for c in runnable_commands() if c.startswith("cortex-resnet unroll "))
    assert "--check" in command and "--json" in command, command
    argv = [str(Path(sys.executable).with_name("cortex-resnet")), *_argv_in(command, tmp_path)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    res = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert json.loads(res.stdout)["within_tolerance"] is True, res.stdout[-2000:]


def test_public_api_exports_resolve() -> None:
    import cortex_resnet

    missing = [n for n in cortex_resnet.__all__ if getattr(cortex_resnet, n, None) is None]
    assert not missing
