"""``cortex-resnet train``: the --json contract, --resume, and bad input (exit 2, a clear message)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cortex_resnet.cli import app
from cortex_resnet.data.datasets import known_datasets
from cortex_resnet.training.experiment import dump_experiment, parse_experiment
from cortex_resnet.training.report import summary_keys

runner = CliRunner()
TINY = {"name": "cli_test", "data": {"name": "digits", "n_train": 300, "n_test": 100},
        "model": {"kind": "circuit", "steps": 3, "dt_ms": 1.0,
                  "spec": {"name": "tiny", "populations": {
                      "E": {"n": 16, "tau_ms": 4.0, "transfer": {"name": "relu"}},
                      "I": {"n": 4, "tau_ms": 2.0, "transfer": {"name": "relu"}}},
                      "connectivity": {"J_EE": 0.5, "J_EI": 1.0, "J_IE": 1.0, "J_II": 0.5},
                      "input": {"n_inputs": 8, "projection": "random", "gain_I": 0.5}}},
        "optim": {"lr": 0.003}, "train": {"epochs": 1, "batch_size": 50}}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)  # --threads 1 below changes it for this process


@pytest.fixture
def exp(tmp_path) -> Path:
    p = tmp_path / "exp.toml"
    p.write_text(dump_experiment(parse_experiment(TINY)))
    return p


def _train(*args) -> object:
    return runner.invoke(app, ["train", *map(str, args), "--threads", "1", "--no-progress"])


def test_json_contract(exp, tmp_path):
    res = _train(exp, "--out", tmp_path / "run", "--device", "cpu", "--json")
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert set(summary_keys) <= set(s)
    assert s["out"] == str(tmp_path / "run") and s["device"] == "cpu" and s["variant"] == "tied"
    assert len(s["accuracy_per_step"]) == 3 and s["epochs"] == 1


def test_resume_and_overrides(exp, tmp_path):
    assert _train(exp, "--out", tmp_path / "run").exit_code == 0
    res = _train(exp, "--out", tmp_path / "run")
    assert res.exit_code == 2 and "--resume" in res.output
    res = _train(exp, "--out", tmp_path / "run", "--resume", "--epochs", "2", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["epochs"] == 2


def test_corrupt_checkpoint_on_resume(exp, tmp_path):
    assert _train(exp, "--out", tmp_path / "run").exit_code == 0
    ck = tmp_path / "run" / "checkpoint.pt"
    ck.write_bytes(ck.read_bytes()[:200])
    res = _train(exp, "--out", tmp_path / "run", "--resume", "--epochs", "2")
    assert res.exit_code == 2
    assert "truncated or corrupt" in res.output and "Traceback" not in res.output


def _bad(tmp_path, dataset: str = "digits", batch_size: int = 50) -> Path:
    """The tiny experiment file with a (possibly invalid) dataset name and batch size."""
    text = dump_experiment(parse_experiment(TINY))
    text = text.replace('name = "digits"', f'name = "{dataset}"')
    text = text.replace("batch_size = 50", f"batch_size = {batch_size}")
    p = tmp_path / "bad.toml"
    p.write_text(text)
    return p


def test_unknown_dataset_lists_known(tmp_path):
    res = _train(_bad(tmp_path, "imagenet"), "--out", tmp_path / "run")
    assert res.exit_code == 2
    assert all(name in res.output for name in known_datasets())
    assert not (tmp_path / "run").exists()


def test_missing_data_dir(tmp_path):
    res = _train(_bad(tmp_path, "mnist"), "--out", tmp_path / "run")
    assert res.exit_code == 2 and "--data-dir" in res.output and "IDX" in res.output
    res = _train(_bad(tmp_path, "cifar10"), "--out", tmp_path / "run",
                 "--data-dir", tmp_path / "nowhere")
    assert res.exit_code == 2 and "an existing folder" in res.output


def test_batch_size_zero(exp, tmp_path):
    res = _train(_bad(tmp_path, batch_size=0), "--out", tmp_path / "run")
    assert res.exit_code == 2 and "train.batch_size" in res.output
    res = _train(exp, "--out", tmp_path / "run", "--set", "train.batch_size=0")
    assert res.exit_code == 2 and "train.batch_size" in res.output


def test_missing_model_file(tmp_path):
    p = tmp_path / "exp.toml"
    p.write_text('name = "x"\n[data]\nname = "digits"\n[model]\nkind = "circuit"\n'
                 'circuit = "circuits/does_not_exist.toml"\n')
    res = _train(p, "--out", tmp_path / "run")
    assert res.exit_code == 2
    assert "model.circuit" in res.output and "does_not_exist.toml" in res.output


def test_missing_experiment_file(tmp_path):
    res = _train(tmp_path / "nope.toml", "--out", tmp_path / "run")
    assert res.exit_code == 2 and "experiments/" in res.output


def test_help_has_an_example():
    res = runner.invoke(app, ["train", "--help"])
    assert res.exit_code == 0 and "cortex-resnet train experiments/mnist1d_tied.toml" in res.output


def test_train_report_table(exp, tmp_path):
    assert _train(exp, "--out", tmp_path / "a").exit_code == 0
    assert _train(exp, "--out", tmp_path / "b", "--seed", "1").exit_code == 0
    res = runner.invoke(app, ["train-report", str(tmp_path / "a"), str(tmp_path / "b"),
                              "--out", str(tmp_path / "t.md"), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["runs"]
    assert [r["out"] for r in rows] == [str(tmp_path / "a"), str(tmp_path / "b")]
    table = (tmp_path / "t.md").read_text()
    assert table.count("this work") == 2 and "| model | dataset | parameters |" in table
    res = runner.invoke(app, ["train-report", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "report.json" in res.output
