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

from tests.conftest import FUZZ_COUNTS
from tests.model.test_fuzz_spec import (HARD_EXAMPLES, SPEC_CLASSES, _assert_refused, _delete, _set, hardened_cases,
                             to_toml)

ROOT = Path(__file__).resolve().parents[2]
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
    ("model.recurrence", _TEXT.filter(lambda s: s not in ("dense", "conv"))),
    ("model.feedforward", _TEXT.filter(lambda s: s not in ("dale", "signed"))),
    ("model.areas", st.sampled_from([[{"channels_E": 0, "channels_I": 1}], "three", [{"channels_E": 2}],
                                     [{"channels_E": 2, "channels_I": 1, "kernel_size": 4}],
                                     [{"channels_E": 2, "channels_I": 1, "stride": 0}],
                                     [{"channels_E": 2, "channels_I": 1, "typo": 1}]])),
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


# ------------------------------------------------------------------ hardened inputs (issue 11 §4)
EXP_FLOATS = ["optim.betas", "schedule.warmup_epochs", "optim.lr", "optim.momentum", "schedule.gamma",
              "model.dt_ms", "model.init_radius", "optim.grad_clip", "data.params.noise"]
EXP_NUMBERS = ["train.epochs", "train.batch_size", "optim.lr", "model.steps", "model.dt_ms", "seed", "data.seed",
               "schedule.warmup_epochs"]
EXP_KEYS = [("train", "epochs"), ("train", "batch_size"), ("optim", "weight_decay"), ("model", "steps"),
            ("model", "variant"), ("schedule", "warmup_epochs"), ("data", "seed"), ("", "description")]
HARD = settings(max_examples=HARD_EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _train(tmp: Path, exp: Path) -> tuple[int, str, Path]:
    run = tmp / "run"
    res = CliRunner().invoke(app, ["train", str(exp), "--out", str(run), "--no-progress"])
    return res.exit_code, res.output, run


@pytest.mark.parametrize("kind", SPEC_CLASSES)
@HARD
@given(data=st.data())
def test_hardened_experiment_files_exit_2_naming_the_field(tmp_path_factory: pytest.TempPathFactory, kind: str,
                                                          data: st.DataObject) -> None:
    FUZZ_COUNTS[f"experiment: {kind}"] += 1
    text, field = data.draw(hardened_cases(kind, BASE, EXP_FLOATS, EXP_NUMBERS, EXP_KEYS))
    tmp = tmp_path_factory.mktemp("hardexp")
    exp = tmp / "e.toml"
    exp.write_text(text)
    code, output, run = _train(tmp, exp)
    _assert_refused(code, output, field.split(".")[-1], [run])
    if kind == "unknown key":
        assert "did you mean" in output and "valid keys" in output, output


@HARD
@given(depth=st.integers(33, 1000), form=st.sampled_from(["inline", "header"]))
def test_deeply_nested_experiment_files_exit_2(tmp_path_factory: pytest.TempPathFactory, depth: int,
                                               form: str) -> None:
    FUZZ_COUNTS["experiment: deep nesting"] += 1
    base = to_toml(BASE)
    text = ("deep = " + "{a = " * depth + "1" + "}" * depth + "\n" + base if form == "inline"
            else base + "\n[" + ".".join(["deep"] * depth) + "]\nx = 1\n")
    tmp = tmp_path_factory.mktemp("deepexp")
    exp = tmp / "e.toml"
    exp.write_text(text)
    code, output, run = _train(tmp, exp)
    _assert_refused(code, output, "deep", [run])


@HARD
@given(name=st.sampled_from(sorted(p.name for p in (ROOT / "models").glob("*.toml"))))
def test_model_file_given_to_train_says_which_kind(tmp_path_factory: pytest.TempPathFactory, name: str) -> None:
    FUZZ_COUNTS["experiment: wrong kind of file"] += 1
    tmp = tmp_path_factory.mktemp("kindexp")
    code, output, run = _train(tmp, ROOT / "models" / name)
    _assert_refused(code, output, "<file>", [run])
    assert "experiment file" in output and "circuit model file" in output, output
