"""``cortex-resnet --version``: the package's version and the libraries that set the numbers."""

from __future__ import annotations

from importlib import metadata

import numpy as np
import torch
from typer.testing import CliRunner

import cortex_resnet
from cortex_resnet.cli import app

runner = CliRunner()


def test_version_prints_package_torch_brian2_numpy_and_exits_0():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0, res.output
    first, libs = res.stdout.strip().split("\n")
    assert first == f"cortex-resnet {cortex_resnet.__version__}"
    assert f"torch {torch.__version__}" in libs
    assert f"numpy {np.__version__}" in libs
    assert f"brian2 {metadata.version('brian2')}" in libs


def test_version_wins_over_a_command():
    """--version is eager: it prints and exits before any command runs or any file is read."""
    res = runner.invoke(app, ["--version", "simulate", "no_such_model.toml"])
    assert res.exit_code == 0 and res.stdout.startswith("cortex-resnet ")
