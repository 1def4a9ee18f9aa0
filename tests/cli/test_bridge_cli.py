"""``cortex-resnet unroll`` (JSON contract, --out, exit codes) and ``bench bridge --quick``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cortex_resnet.bench import run_bench
from cortex_resnet.bridge import load_state, save_circuit, unroll
from cortex_resnet.bridge.check import TOLERANCE
from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.cli import app
from cortex_resnet.model.spec import load_spec

from tests.bridge_cases import case_circuit, one_thread  # noqa: F401 (autouse)

MODELS = Path(__file__).resolve().parents[2] / "models"
runner = CliRunner()


def _unroll(*args: object):
    return runner.invoke(app, ["unroll", *map(str, args)])


def test_done_criterion_canonical_microcircuit():
    res = _unroll(MODELS / "canonical_microcircuit.toml", "--steps", 50, "--check", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    for key in ("steps", "variant", "params", "max_abs_error", "max_rel_error"):
        assert key in out
    assert out["steps"] == 50 and out["variant"] == "tied" and out["params"] == 500 * 500 + 500 + 500
    assert out["max_abs_error"]["float64"] <= TOLERANCE["float64"]["abs"]
    assert out["max_rel_error"]["float32"] <= TOLERANCE["float32"]["rel"]
    assert out["within_tolerance"] is True


@pytest.mark.parametrize("variant,mode", [("untied", "sustained"), ("plain", "pulse"), ("gated", "pulse")])
def test_variants_check(tmp_path, variant, mode):
    model = save_circuit(case_circuit("dense_relu", **{"connectivity.J_EE": 0.8}), tmp_path / "m")
    res = _unroll(model, "--steps", 20, "--dt", 0.5, "--variant", variant, "--input-mode", mode, "--check", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["variant"] == variant and out["input_mode"] == mode and out["within_tolerance"]


def test_out_writes_a_state_dict_loadable_with_weights_only(tmp_path):
    model = MODELS / "spatial_ring.toml"
    res = _unroll(model, "--steps", 10, "--dt", 0.5, "--out", tmp_path / "net.pt", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["max_abs_error"]["float64"] is None  # no --check
    net = load_state(unroll(build_circuit(load_spec(model)), 10, 0.5), tmp_path / "net.pt")
    assert isinstance(net.W.theta_T, torch.nn.Parameter)


@pytest.mark.parametrize("args,needle", [
    (["--steps", 0], "steps"), (["--steps", 5, "--dt", 50], "overshoot"),
    (["--steps", 5, "--variant", "resnet"], "variant"), (["--steps", 5, "--seed", -1], "--seed")])
def test_bad_input_exits_2(args, needle):
    res = _unroll(MODELS / "linear.toml", *args)
    assert res.exit_code == 2 and needle in res.output and "Traceback" not in res.output


def test_missing_model_exits_2(tmp_path):
    res = _unroll(tmp_path / "nope.toml", "--steps", 3)
    assert res.exit_code == 2


def test_help_has_an_example():
    res = runner.invoke(app, ["unroll", "--help"])
    assert res.exit_code == 0 and "Example" in res.output


def test_bench_bridge_quick_follows_the_contract():
    rep = run_bench("bridge", quick=True)
    assert rep["bench"] == "bridge" and rep["results"]
    for r in rep["results"]:
        assert {"name", "value", "unit", "goal", "met"} <= set(r)
        assert r["value"] > 0
    flat = [r for r in rep["results"] if "flat" in r["name"]]
    assert flat and flat[0]["met"] is True


def test_conv_recurrence_from_the_cli():
    res = _unroll(MODELS / "spatial_ring.toml", "--steps", 20, "--dt", 0.5, "--recurrence", "conv", "--check", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["recurrence"] == "conv" and out["within_tolerance"] and out["params"] < 1000
