"""The README's commands work: every fenced ``bash`` block marked ``<!-- runnable -->`` is run.

The marked blocks are the cheap ones (seconds); the rest of the tour (training,
spiking, benches) is exercised by their own tests. Commands run in a temporary
folder that sees the repository's ``models/`` and ``experiments/``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("command", runnable_commands())
def test_readme_command_runs(command: str, tmp_path: Path) -> None:
    for sub in ("models", "experiments"):
        (tmp_path / sub).symlink_to(ROOT / sub)
    argv = shlex.split(command)
    assert argv[0] == "cortex-resnet", "runnable README blocks hold cortex-resnet commands only"
    argv = [sys.executable, "-m", "cortex_resnet.cli", *argv[1:]]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    res = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]


def test_public_api_exports_resolve() -> None:
    import cortex_resnet

    missing = [n for n in cortex_resnet.__all__ if getattr(cortex_resnet, n, None) is None]
    assert not missing
