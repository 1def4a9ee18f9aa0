"""The conv-circuit experiment fields (model.recurrence, model.areas, model.feedforward): validation
naming the field, and a tiny training run through `cortex-resnet train`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cortex_resnet.cli import app
from cortex_resnet.errors import SpecError
from cortex_resnet.training.experiment import load_experiment

ROOT = Path(__file__).resolve().parents[2]
EXP = ROOT / "experiments" / "mnist1d_conv_circuit.toml"


@pytest.mark.parametrize("change,field", [
    ({"model.steps": 8}, "model.steps"),
    ({"model.recurrence": "dense"}, "model.recurrence"),
    ({"model.input_projection": "dense"}, "model.input_projection"),
    ({"model.feedforward": "mixed"}, "model.feedforward"),
    ({"model.areas": [{"channels_E": 0, "channels_I": 1, "steps": 9}]}, "model.areas.0.channels_E"),
    ({"model.areas": [{"channels_E": 2, "channels_I": 1, "kernel_size": 4, "steps": 9}]}, "model.areas.0.kernel_size"),
])
def test_bad_conv_fields_name_the_field(change, field):
    with pytest.raises(SpecError) as err:
        load_experiment(EXP).replace(**change)
    assert err.value.field == field


def test_conv_circuit_trains_through_the_cli(tmp_path):
    """Two small areas on 64 MNIST-1D examples, one epoch: the JSON summary has the contract keys, the
    parameter count counts shared kernels once, and the run folder is written."""
    areas = '[{channels_E = 4, channels_I = 2, steps = 2, stride = 2, kernel_size = 5}, ' \
            '{channels_E = 4, channels_I = 2, steps = 1, stride = 2, kernel_size = 3}]'
    text = EXP.read_text().replace('circuit = "circuits/', f'circuit = "{ROOT}/experiments/circuits/')
    exp = tmp_path / "e.toml"
    exp.write_text(text)
    res = CliRunner().invoke(app, ["train", str(exp), "--out", str(tmp_path / "run"), "--epochs", "1", "--json",
                                   "--no-progress", "--threads", "1", "--set", "data.n_train=64",
                                   "--set", "data.n_test=32", "--set", f"model.areas={areas}",
                                   "--set", "model.steps=3"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout[res.stdout.index("{"):])
    assert 0.0 <= summary["test_accuracy"] <= 1.0 and len(summary["accuracy_per_step"]) == 1
    assert summary["params"] < summary.get("params_allocated", 10**9)
    assert (tmp_path / "run" / "report.json").exists()
