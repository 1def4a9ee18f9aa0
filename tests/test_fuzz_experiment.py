"""Fuzzing experiment files (issue 8): every invalid experiment exits 2 through ``train``, names
the field, shows no traceback and leaves no run folder behind."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cortex_resnet.cli import app

from .conftest import FUZZ_COUNTS
from .test_fuzz_spec import _delete, _set, to_toml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = int(os.environ.get("CORTEX_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

BASE: dict[str, Any] = tomllib.loads((ROOT / "experiments" / "digits_tied.toml").read_text())
BASE["model"]["circuit"] = str(ROOT / "experiments" / "circuits" / "ei_dense.toml")

_TEXT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=10)
BAD: list[tuple[str, st.SearchStrategy]] = [
    ("data.name", _TEXT.filter(lambda s: s not in ("digits", "mnist1d", "crossing", "connected", "mnist",
                                                   "cifar10"))),
    ("train.batch_size", st.integers(max_value=0) | st.just("sixty-four")),
    ("train.epochs", st.integers(max_value=0) | st.floats(0.5, 3.5).filter(lambda x: x != int(x))),
    ("optim.lr", st.floats(max_value=0.0, allow_nan=False) | st.floats(min_value=1e4, allow_infinity=False)),
    ("optim.name", _TEXT.filter(lambda s: s not in ("adam", "adamw", "sgd"))),
    ("model.variant", _TEXT.filter(lambda s: s not in ("tied", "untied", "plain", "projection", "gated"))),
    ("model.steps", st.integers(max_value=0) | st.integers(min_value=10_001, max_value=10**9)),
    ("model.dt_ms", st.floats(max_value=0.0, allow_nan=False)),
    ("model.circuit", st.just("no/such/model.toml")),
    ("schedule.kind", _TEXT.filter(lambda s: s not in ("constant", "cosine", "step"))),
    ("seed", st.integers(max_value=-1)),
    ("name", st.sampled_from(["../escape", "/abs/path", ".hidden", "a/b"])),
    ("unknown_section", st.just({"x": 1})),
]
MISSING = ["data", "data.name", "model"]


@st.composite
def invalid_experiments(draw: st.DrawFn) -> tuple[str, str]:
    if draw(st.integers(0, 4)) == 0:
        field = draw(st.sampled_from(MISSING))
        return to_toml(_delete(BASE, field)), field.split(".")[-1]
    field, strategy = draw(st.sampled_from(BAD))
    return to_toml(_set(BASE, field, draw(strategy))), field.split(".")[-1]


def test_base_experiment_is_valid(tmp_path: Path) -> None:
    """The mutation base passes validation (one epoch, a handful of examples)."""
    exp = tmp_path / "e.toml"
    exp.write_text(to_toml(_set(_set(BASE, "data.n_train", 64), "data.n_test", 32)))
    res = CliRunner().invoke(app, ["train", str(exp), "--out", str(tmp_path / "run"), "--epochs", "1",
                                   "--no-progress", "--threads", "1"])
    assert res.exit_code == 0, res.output


@FUZZ
@given(case=invalid_experiments())
def test_invalid_experiments_exit_2_naming_the_field(tmp_path_factory: pytest.TempPathFactory,
                                                     case: tuple[str, str]) -> None:
    FUZZ_COUNTS["invalid experiments"] += 1
    text, field = case
    tmp = tmp_path_factory.mktemp("exp")
    exp = tmp / "e.toml"
    exp.write_text(text)
    run = tmp / "run"
    res = CliRunner().invoke(app, ["train", str(exp), "--out", str(run), "--no-progress"])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert "error:" in res.output and field in res.output, res.output
    assert not (run / "checkpoint.pt").exists()
