"""The training loop: tiny runs learn, runs are deterministic, the NaN guard stops, the report holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cortex_resnet.errors import SpecError
from cortex_resnet.training.experiment import parse_experiment
from cortex_resnet.training.loop import TrainingDivergedError, train
from cortex_resnet.training.checkpoint import load_checkpoint
from cortex_resnet.training.report import read_metrics, runs_table, summary_keys

DENSE = {"name": "tiny_dense",
         "populations": {"E": {"n": 32, "tau_ms": 4.0, "transfer": {"name": "relu"}},
                         "I": {"n": 8, "tau_ms": 2.0, "transfer": {"name": "relu"}}},
         "connectivity": {"J_EE": 0.5, "J_EI": 1.0, "J_IE": 1.0, "J_II": 0.5, "weight_cv": 0.5},
         "input": {"n_inputs": 16, "projection": "random", "gain_I": 0.5}}
GRID = {"name": "tiny_grid",  # a 6 x 6 map: the 4 x 4 crossing grid and its border
        "populations": {"E": {"n": 72, "tau_ms": 4.0, "transfer": {"name": "relu"}},
                        "I": {"n": 36, "tau_ms": 2.0, "transfer": {"name": "relu"}}},
        "connectivity": {"kind": "spatial", "map_shape": [6, 6], "sigma_E": 0.5, "sigma_I": 1.0,
                         "J_EE": 0.8, "J_EI": 1.0, "J_IE": 1.0, "J_II": 0.5},
        "input": {"n_inputs": 36, "projection": "topographic", "gain_I": 0.5}}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small nets train fastest on one thread (and do not fight other processes for cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_spec(**changes):
    data = {"name": "tiny", "seed": 0,
            "data": {"name": "digits"},
            "model": {"kind": "circuit", "spec": DENSE, "steps": 5, "dt_ms": 1.0},
            "optim": {"lr": 0.003}, "train": {"epochs": 2, "batch_size": 50}}
    spec = parse_experiment(data)
    return spec.replace(**changes) if changes else spec


# dataset, its parameters, circuit, input projection, steps, epochs, learning rate,
# accuracy that a tiny run must beat (chance: 10 % for the digit sets, 50 % for crossing)
LEARNS = [
    ("mnist1d", {"num_samples": 1500}, DENSE, "dense", 5, 3, 0.003, 0.2),
    ("digits", {}, DENSE, "dense", 5, 3, 0.003, 0.6),
    ("crossing", {"size": 4, "n_train": 1000, "n_test": 400}, GRID, "conv", 10, 4, 0.01, 0.65),
]


@pytest.mark.parametrize("name,params,circuit,proj,steps,epochs,lr,beat", LEARNS,
                         ids=[c[0] for c in LEARNS])
def test_tiny_run_learns(tmp_path, name, params, circuit, proj, steps, epochs, lr, beat):
    spec = tiny_spec(**{"data": {"name": name, "params": params}, "optim.lr": lr,
                        "model.spec": circuit, "model.steps": steps, "model.input_projection": proj,
                        "model.kernel_size": 3, "train.epochs": epochs})
    s = train(spec, tmp_path / "run", progress=False)
    assert s["test_accuracy"] > beat
    assert len(s["accuracy_per_step"]) == steps


def test_connected_baseline_learns(tmp_path):
    """The connectedness task is hard (that is its point); an MLP still beats chance."""
    spec = parse_experiment({
        "data": {"name": "connected", "params": {"size": 6, "min_distance": 3, "n_train": 2000,
                                                 "n_test": 500}},
        "model": {"kind": "baseline", "name": "mlp"}, "optim": {"lr": 0.003},
        "train": {"epochs": 10, "batch_size": 50}})
    assert train(spec, tmp_path / "run", progress=False)["test_accuracy"] > 0.54


def test_summary_contract_and_files(tmp_path):
    out = tmp_path / "run"
    s = train(tiny_spec(), out, progress=False)
    assert set(summary_keys) <= set(s)
    assert s["dataset"] == "digits" and s["variant"] == "tied" and s["epochs"] == 2
    assert {p.name for p in out.iterdir()} >= {"config.toml", "metrics.csv", "checkpoint.pt",
                                               "model.pt", "report.json", "report.md"}
    rows = read_metrics(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[-1]["test_accuracy"] == pytest.approx(s["test_accuracy"])
    assert [rows[-1][f"test_accuracy_step_{k}"] for k in range(1, 6)] == pytest.approx(s["accuracy_per_step"])
    assert all(r["examples_per_s"] > 0 and r["wall_s"] > 0 for r in rows)
    rep = json.loads((out / "report.json").read_text())
    assert rep["status"] == "completed" and rep["params"] == s["params"]
    assert "this run" in (out / "report.md").read_text()
    # config.toml is a complete, valid experiment (circuit inline)
    import tomllib

    again = parse_experiment(tomllib.loads((out / "config.toml").read_text()))
    assert again.circuit_spec() == tiny_spec().circuit_spec()


def test_published_baselines_beside_ours(tmp_path):
    spec = tiny_spec(**{"data": {"name": "mnist1d", "params": {"num_samples": 500}},
                        "train.epochs": 1})
    train(spec, tmp_path / "run", progress=False)
    md = (tmp_path / "run" / "report.md").read_text()
    for row in ("logistic regression (published) | — | 32.0 %", "MLP (published) | — | 68.0 %",
                "CNN (published) | — | 94.0 %", "GRU (published) | — | 91.0 %"):
        assert row in md
    table = runs_table([tmp_path / "run"])
    assert "circuit, tied" in table and "94.0 %" in table


def test_deterministic_on_cpu(tmp_path):
    a = train(tiny_spec(), tmp_path / "a", progress=False)
    b = train(tiny_spec(), tmp_path / "b", progress=False)
    wa = torch.load(tmp_path / "a" / "model.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "b" / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a["accuracy_per_step"] == b["accuracy_per_step"]
    c = train(tiny_spec(seed=1), tmp_path / "c", progress=False)
    wc = torch.load(tmp_path / "c" / "model.pt", weights_only=True)["model"]
    assert not torch.equal(wa["readout_weight"], wc["readout_weight"])


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path):
    out = tmp_path / "run"
    spec = tiny_spec(**{"optim": {"name": "sgd", "lr": 1000.0}, "train.epochs": 3})
    with pytest.raises(TrainingDivergedError, match="diverged.*epoch 1, step") as err:
        train(spec, out, progress=False)
    assert err.value.epoch >= 1 and err.value.step >= 1
    ck = load_checkpoint(out / "checkpoint.pt")
    assert ck["epoch"] == err.value.epoch - 1
    assert all(bool(torch.isfinite(v).all()) for v in ck["model"].values())
    rep = json.loads((out / "report.json").read_text())
    assert rep["status"] == "diverged" and rep["diverged_at"]["step"] == err.value.step
    assert not (out / "model.pt").exists()


def test_out_folder_holding_a_run_is_not_overwritten(tmp_path):
    train(tiny_spec(**{"train.epochs": 1}), tmp_path / "run", progress=False)
    with pytest.raises(SpecError, match="--resume"):
        train(tiny_spec(**{"train.epochs": 1}), tmp_path / "run", progress=False)


def test_resume_refuses_another_experiment(tmp_path):
    train(tiny_spec(**{"train.epochs": 1}), tmp_path / "run", progress=False)
    with pytest.raises(SpecError, match="same experiment"):
        train(tiny_spec(**{"train.epochs": 2, "optim.lr": 0.1}), tmp_path / "run", resume=True,
              progress=False)


def test_resume_extends_a_finished_run_exactly(tmp_path):
    """2 epochs, then --resume with epochs = 3, equals 3 epochs straight (bitwise on CPU)."""
    train(tiny_spec(**{"train.epochs": 2}), tmp_path / "a", progress=False)
    ext = train(tiny_spec(**{"train.epochs": 3}), tmp_path / "a", resume=True, progress=False)
    ref = train(tiny_spec(**{"train.epochs": 3}), tmp_path / "b", progress=False)
    wa = torch.load(tmp_path / "a" / "model.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "b" / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert ext["accuracy_per_step"] == ref["accuracy_per_step"]


@pytest.mark.parametrize("model", [{"kind": "baseline", "name": "cnn"},
                                   {"kind": "circuit", "spec": DENSE, "variant": "untied", "steps": 3},
                                   {"kind": "circuit", "spec": DENSE, "variant": "plain", "steps": 3},
                                   {"kind": "circuit", "spec": DENSE, "variant": "gated", "steps": 3},
                                   {"kind": "circuit", "spec": DENSE, "variant": "projection", "steps": 3}],
                         ids=["cnn", "untied", "plain", "gated", "projection"])
def test_every_model_kind_trains(tmp_path, model):
    spec = tiny_spec(**{"model": model, "train.epochs": 1, "data.n_train": 200})
    s = train(spec, tmp_path / "run", progress=False)
    assert s["params"] > 0 and 0.0 <= s["test_accuracy"] <= 1.0


def test_loss_on_all_steps_and_step_schedule(tmp_path):
    spec = tiny_spec(**{"train.loss_steps": "all", "schedule": {"kind": "step", "milestones": [1]},
                        "optim": {"name": "sgd", "lr": 0.05}})
    train(spec, tmp_path / "run", progress=False)
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    assert rows[0]["lr"] == pytest.approx(0.05) and rows[1]["lr"] == pytest.approx(0.005)


def test_crop_flip_only_for_images(tmp_path):
    spec = tiny_spec(**{"data": {"name": "mnist1d", "augment": "crop_flip",
                                 "params": {"num_samples": 200}}})
    with pytest.raises(SpecError, match="image data"):
        train(spec, tmp_path / "run", progress=False)


def test_crop_flip_keeps_shapes_and_pixels():
    from cortex_resnet.training.epoch import crop_flip as _crop_flip

    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    out = _crop_flip(x, torch.Generator().manual_seed(0), pad=2)
    assert out.shape == x.shape
    # every output pixel is an input pixel of the same image and channel, or padding (0)
    for b in range(2):
        for c in range(3):
            vals = set(out[b, c].flatten().tolist()) - {0.0}
            assert vals <= set(x[b, c].flatten().tolist())


def test_missing_data_dir_is_a_clear_error(tmp_path):
    spec = tiny_spec(**{"data": {"name": "mnist"}})
    with pytest.raises(SpecError, match="never downloaded"):
        train(spec, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_path_type_out_argument(tmp_path):
    s = train(tiny_spec(**{"train.epochs": 1}), str(tmp_path / "r"), progress=False)
    assert Path(s["out"]).is_dir()


@pytest.mark.gpu
def test_cuda_bf16_run_learns(tmp_path):
    """On a GPU: device auto picks CUDA, bf16 autocast, and the tiny digits run still learns."""
    s = train(tiny_spec(**{"device": "auto", "train.epochs": 3}), tmp_path / "run", progress=False)
    assert s["device"].startswith("cuda") and s["test_accuracy"] > 0.6
