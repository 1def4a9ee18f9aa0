"""Hypotheses on trained and spiking circuits: well-formed verdicts from tiny runs (default suite),
the --quick runs themselves (slow), the lesion helper, and the spiking halves (slow, brian2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cortex_resnet.hypotheses import run_hypothesis
from cortex_resnet.hypotheses._training import prepare_training, train_classifier
from cortex_resnet.hypotheses.iterative_refinement import RefinementParams, states_with_lesion
from cortex_resnet.io.results import load_dataset
from cortex_resnet.hypotheses.stats import VERDICTS
from cortex_resnet.training.epoch import fit_epoch as train_epoch_fit_epoch

TRAINED = ["degradation", "shortcut", "weight-sharing", "iterative-refinement"]
CONTRACT = {"name", "verdict", "test", "statistic", "p_value", "effect_size", "ci", "seeds", "out"}
TINY = ('dataset = "digits"\nn_train = 200\nn_test = 100\nn_E = 8\nn_I = 2\nn_inputs = 4\nepochs = 1\n'
        'batch_size = 50\n')
EXTRA = {"degradation": "depths = [2, 4]\n", "shortcut": "steps = 3\n", "weight-sharing": "steps = 3\n",
         "iterative-refinement": "steps = 3\n"}


def _spec(tmp_path: Path, name: str, params: str, seeds: int = 2) -> Path:
    p = tmp_path / f"{name}.toml"
    p.write_text(f'hypothesis = "{name}"\nseeds = {seeds}\n[params]\n{params}\n')
    return p


def _well_formed(s: dict, name: str, out: Path) -> None:
    assert CONTRACT <= set(s) and s["name"] == name and s["verdict"] in VERDICTS
    assert 0.0 <= s["p_value"] <= 1.0 and len(s["ci"]) == 2
    assert (out / "report.md").is_file() and (out / "figures" / f"{name}.png").is_file()
    ds = load_dataset(out / "results.nc")
    assert ds.sizes["seed"] == s["seeds"]


@pytest.mark.parametrize("name", TRAINED)
def test_tiny_training_run_gives_a_well_formed_verdict(name, tmp_path):
    """One epoch on 200 digits, 10-unit circuits: the whole pipeline in a few seconds."""
    spec = _spec(tmp_path, name, TINY + EXTRA[name])
    s = run_hypothesis(name, spec=spec, workers=0, out=tmp_path / "run")
    _well_formed(s, name, tmp_path / "run")


def test_training_is_reproducible_from_the_seed():
    prepared = prepare_training(RefinementParams.model_validate(
        {"dataset": "digits", "n_train": 200, "n_test": 100, "n_E": 8, "n_I": 2, "n_inputs": 4, "epochs": 1}), None)
    a = train_classifier(prepared, 3, variant="untied", steps=3)
    b = train_classifier(prepared, 3, variant="untied", steps=3)
    c = train_classifier(prepared, 4, variant="untied", steps=3)
    assert a.accuracy_per_step == b.accuracy_per_step and a.train_loss == b.train_loss
    assert a.train_loss != c.train_loss


@pytest.mark.parametrize("mode", ["pulse", "sustained"])
def test_lesion_helper_without_lesion_is_the_network(mode):
    """``states_with_lesion(skip=None)`` re-runs the unrolled net block by block: identical states;
    skipping block k copies r_k into r_{k+1}."""
    prepared = prepare_training(RefinementParams.model_validate(
        {"dataset": "digits", "n_train": 100, "n_test": 50, "n_E": 8, "n_I": 2, "n_inputs": 4, "epochs": 1,
         "input_mode": mode}), None)
    t = train_classifier(prepared, 0, variant="untied", steps=4)
    x = t.x_test[:20]
    with torch.no_grad():
        ref = t.model.net(t.model.encode(x))
    torch.testing.assert_close(states_with_lesion(t.model, x), ref, rtol=0, atol=0)
    lesioned = states_with_lesion(t.model, x, skip=2)
    torch.testing.assert_close(lesioned[3], lesioned[2], rtol=0, atol=0)
    torch.testing.assert_close(lesioned[:3], ref[:3], rtol=0, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", TRAINED)
def test_quick_run_of_trained_hypotheses(name, tmp_path):
    s = run_hypothesis(name, quick=True, workers=0, out=tmp_path)
    _well_formed(s, name, tmp_path)


@pytest.mark.slow
def test_degradation_quick_shows_plain_nets_degrading(tmp_path):
    """Plain nets (alpha = 1, input as a pulse) at K = 16 train far worse than at K = 2: the
    training loss rises by more than 1 nat on digits (observed ~1.5)."""
    s = run_hypothesis("degradation", quick=True, workers=0, out=tmp_path)
    first = s["comparisons"][0]
    assert first["verdict"] == "supported" and first["estimate"] > 1.0


@pytest.mark.slow
@pytest.mark.brian2
def test_rate_spike_agreement_quick(tmp_path):
    s = run_hypothesis("rate-spike-agreement", quick=True, workers=0, out=tmp_path)
    _well_formed(s, "rate-spike-agreement", tmp_path)
    ds = load_dataset(tmp_path / "results.nc")
    assert np.all(ds["spiking_E"].values > 0)


@pytest.mark.slow
@pytest.mark.brian2
@pytest.mark.parametrize("name", ["isn-paradox", "amplification"])
def test_spiking_half_runs(name, tmp_path):
    """Small circuits (50 units, pools of 10 LIF neurons): the spiking rows are present and the ISN
    spiking circuit shows the paradoxical I decrease / the spiking microcircuit amplifies."""
    extra = ('J_EE_values = [2.0]\nduration_ms = 100.0\n' if name == "amplification"
             else 'duration_ms = 150.0\nonset_ms = 50.0\n')
    spec = _spec(tmp_path, name, 'n_E = 40\nn_I = 10\nbackends = ["rate", "spiking"]\n' + extra)
    s = run_hypothesis(name, spec=spec, workers=0, out=tmp_path / "run")
    _well_formed(s, name, tmp_path / "run")
    spiking = [c for c in s["comparisons"] if "spiking" in c["label"]]
    assert spiking
    if name == "isn-paradox":
        assert spiking[0]["estimate"] < 0
    else:
        assert spiking[0]["estimate"] > 1


@pytest.mark.parametrize("loss_steps", ["last", "all"])
def test_trained_hypotheses_use_the_training_loop_with_the_same_numbers(loss_steps, monkeypatch):
    """train_classifier trains through train_epoch.fit_epoch (the one loop) and gives bit for bit
    the numbers of the plain loop it replaced (same seed, same batches, mean loss, Adam)."""
    import torch.nn.functional as F

    from cortex_resnet.hypotheses import _training
    from cortex_resnet.bridge import CircuitClassifier, unroll
    from cortex_resnet.model.circuit import build_circuit
    from cortex_resnet.hypotheses._training import dataset_for, step_dt
    from cortex_resnet.model.spec import parse_spec

    calls = []
    real = _training.fit_epoch
    assert real is train_epoch_fit_epoch  # the training loop's own epoch, not a copy
    monkeypatch.setattr(_training, "fit_epoch", lambda *a, **k: calls.append(1) or real(*a, **k))
    prepared = prepare_training(RefinementParams.model_validate(
        {"dataset": "digits", "n_train": 150, "n_test": 60, "n_E": 8, "n_I": 2, "n_inputs": 4, "epochs": 2,
         "batch_size": 40, "loss_steps": loss_steps}), None)
    got = train_classifier(prepared, 5, variant="untied", steps=3)
    assert len(calls) == 2
    # the loop it replaced
    ds = dataset_for("digits", prepared["data_seed"], 150, 60)
    circuit = build_circuit(parse_spec(prepared["circuit_spec"]).replace(seed=5), np.random.default_rng([5, 7]))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        net = unroll(circuit, 3, step_dt(prepared, 3, "untied"), variant="untied",
                     input_mode=prepared["input_mode"], dtype=torch.float32, init=prepared["init"],
                     init_radius=prepared["init_radius"], seed=5)
        model = CircuitClassifier(net, ds.in_shape, ds.n_classes, seed=5)
    opt = torch.optim.Adam(model.parameters(), lr=prepared["lr"])
    x, y = torch.as_tensor(ds.x_train), torch.as_tensor(ds.y_train)
    gen = torch.Generator().manual_seed(5)
    for _ in range(2):
        perm = torch.randperm(150, generator=gen)
        for a in range(0, 150, 40):
            logits = model(x[perm[a:a + 40]])
            yb = y[perm[a:a + 40]]
            loss = (F.cross_entropy(logits[-1], yb) if loss_steps == "last"
                    else F.cross_entropy(logits.flatten(0, 1), yb.repeat(3)))
            opt.zero_grad()
            loss.backward()
            opt.step()
    for (k, p), q in zip(model.state_dict().items(), got.model.state_dict().values()):
        torch.testing.assert_close(q, p, rtol=1e-6, atol=1e-7, msg=k)


@pytest.mark.parametrize("loss,expected", [(0.0, "supported"), (0.08, "not supported"), (0.02, "inconclusive")])
def test_weight_sharing_claim_can_fail(loss, expected):
    """Synthetic accuracies, 8 seeds, untied 0.60 + noise (sd 0.005): the tied net losing nothing is
    non-inferior (margin 0.02); losing 0.08 puts the whole t-interval below -0.02 (not supported);
    losing exactly the margin is inconclusive. K-fold parameter counts play no part."""
    import xarray as xr

    from cortex_resnet.hypotheses.base import AnalysisOptions
    from cortex_resnet.hypotheses.weight_sharing import HYPOTHESIS, WeightSharingParams

    g = np.random.default_rng(5)
    untied = 0.60 + g.normal(0, 0.005, 8)
    tied = untied - loss + g.normal(0, 0.005, 8)
    acc = np.stack([tied, untied])
    params = np.array([[1000.0] * 8, [8000.0] * 8])
    ds = xr.Dataset({"test_accuracy": (("condition", "seed"), acc), "params": (("condition", "seed"), params),
                     "accuracy_per_kparam": (("condition", "seed"), 1000 * acc / params),
                     "train_loss": (("condition", "seed"), np.ones((2, 8))),
                     "train_seconds": (("condition", "seed"), np.ones((2, 8)))},
                    coords={"condition": ["tied", "untied"], "seed": np.arange(8)})
    analysis = HYPOTHESIS.analyze(ds, WeightSharingParams(margin=0.02), AnalysisOptions()).finalize(0.05)
    assert len(analysis.comparisons) == 1 and analysis.verdict == expected
