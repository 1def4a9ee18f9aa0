"""``compare``: the trained net, the same weights as a rate circuit (exactly equal) and as spikes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cortex_resnet.cli import app
from cortex_resnet.errors import SpecError
from cortex_resnet.training.experiment import parse_experiment
from cortex_resnet.training.loop import train
from cortex_resnet.spiking.scoring import check_window_start
from cortex_resnet.workflows.compare import compare_run, load_run, operating_inputs, rate_logits

CIRCUIT = {"name": "tiny", "populations": {
    "E": {"n": 16, "tau_ms": 4.0, "transfer": {"name": "relu"}},
    "I": {"n": 4, "tau_ms": 2.0, "transfer": {"name": "relu"}}},
    "connectivity": {"J_EE": 0.5, "J_EI": 1.0, "J_IE": 1.0, "J_II": 0.5, "weight_cv": 0.5},
    "input": {"n_inputs": 8, "projection": "random", "gain_I": 0.5}}


def _spec(variant="tied", input_mode="sustained", **model):
    return parse_experiment({
        "name": f"cmp_{variant}", "data": {"name": "digits", "n_train": 400, "n_test": 120},
        "model": {"kind": "circuit", "spec": CIRCUIT, "variant": variant, "steps": 6, "dt_ms": 1.0,
                  "input_mode": input_mode, **model},
        "optim": {"lr": 0.003}, "train": {"epochs": 2, "batch_size": 50}})


@pytest.fixture(scope="module")
def tied_run(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("cmp") / "tied"
    train(_spec(), out, progress=False)
    yield out
    torch.set_num_threads(before)


def test_rate_circuit_accuracy_equals_network_exactly(tied_run):
    s = compare_run(tied_run, spiking=False)
    assert s["rate_accuracy"] == s["network_accuracy"]
    assert s["accuracy_per_step"]["rate"] == s["accuracy_per_step"]["network"]
    assert s["agreement"]["rate_vs_network"] == 1.0
    assert s["max_abs_logit_diff"] <= 1e-10  # float64, the same Euler steps
    assert s["spiking_accuracy"] is None
    assert (tied_run / "compare.png").stat().st_size > 0
    saved = json.loads((tied_run / "compare.json").read_text())
    assert saved["rate_accuracy"] == s["rate_accuracy"]


def test_network_in_float64_matches_the_trained_float32_net(tied_run):
    run = load_run(tied_run)
    summary = json.loads((tied_run / "report.json").read_text())
    x = torch.as_tensor(run.dataset.x_test, dtype=torch.float64)
    acc = (run.model(x)[-1].argmax(-1) == torch.as_tensor(run.dataset.y_test)).double().mean()
    assert float(acc) == pytest.approx(summary["test_accuracy"], abs=2 / len(x))  # ties may flip


def test_decomposition_of_the_rate_circuit(tied_run):
    run = load_run(tied_run)
    x = torch.as_tensor(run.dataset.x_test[:5], dtype=torch.float64)
    logits, r, xr, circuit = rate_logits(run, x)
    assert logits.shape == (6, 5, 10) and r.shape == xr.shape == (7, 5, circuit.n_units)
    # with recurrence removed the E rates relax to phi(B u + b) exactly as the Euler recursion says
    drive = run.model.encode(x) @ torch.as_tensor(circuit.B).T + torch.as_tensor(circuit.b)
    alpha = 1.0 / torch.as_tensor(circuit.tau_ms)
    expected = (1 - (1 - alpha) ** 6) * torch.relu(drive)
    torch.testing.assert_close(xr[-1], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("variant,input_mode", [("untied", "sustained"), ("plain", "sustained"),
                                                ("gated", "sustained"), ("tied", "pulse")])
def test_rate_equals_network_for_other_variants(tmp_path, variant, input_mode):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        spec = _spec(variant, input_mode).replace(**{"train.epochs": 1})
        train(spec, tmp_path / "run", progress=False)
        s = compare_run(tmp_path / "run", spiking=False)
    finally:
        torch.set_num_threads(before)
    assert s["rate_accuracy"] == s["network_accuracy"] and s["max_abs_logit_diff"] <= 1e-10


def test_untied_run_has_a_spiking_twin_and_a_naive_baseline(tmp_path):
    """An untied net runs as its stage chain: the rate chain read out late equals the net (its steady
    state is the net's r_K), and the naive conversion is reported beside it on the same examples."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(_spec("untied").replace(**{"train.epochs": 1}), tmp_path / "run", progress=False)
        s = compare_run(tmp_path / "run", spiking_examples=20, spiking_duration_ms=40.0, n_examples_plot=1,
                        pool_size=4, naive=True)
    finally:
        torch.set_num_threads(before)
    assert s["spiking_twin"] == "stage chain (6 stages)" and s["spiking_neurons"] == 6 * 20 * 4
    assert s["n_spiking"] == 20 and 0.0 <= s["spiking_accuracy"] <= 1.0 and s["spikes_per_example"] > 0
    # the rate chain (tau 4 ms, feedforward: settled within 40 ms) read out over [20, 40) ms is the net
    assert s["rate_window_accuracy_on_spiking_subset"] == s["network_accuracy_on_spiking_subset"]
    nv = s["naive"]
    assert nv["n"] == 20 and nv["anytime"]["readout_ms"] == s["anytime"]["readout_ms"]
    assert nv["network_gap"] == pytest.approx(s["network_accuracy_on_spiking_subset"] - nv["accuracy"])


def test_compare_refuses_baselines_and_unfinished_runs(tmp_path):
    with pytest.raises(SpecError, match="finished training run"):
        compare_run(tmp_path)
    spec = parse_experiment({"data": {"name": "digits", "n_train": 100, "n_test": 50},
                             "model": {"kind": "baseline", "name": "logreg"},
                             "train": {"epochs": 1}})
    train(spec, tmp_path / "b", progress=False)
    with pytest.raises(SpecError, match="'circuit'"):
        compare_run(tmp_path / "b")


@pytest.mark.slow  # ~30 s: Brian2 generates the code of two networks (run, and x/F(x) for the figure)
@pytest.mark.brian2
def test_spiking_reported_with_agreement(tied_run, tmp_path):
    res = CliRunner().invoke(app, ["compare", str(tied_run), "--spiking-examples", "6",
                                   "--spiking-duration", "40", "--pool-size", "5",
                                   "--out", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert {"network_accuracy", "rate_accuracy", "spiking_accuracy", "agreement"} <= set(s)
    assert s["n_spiking"] == 6 and 0.0 <= s["spiking_accuracy"] <= 1.0
    assert set(s["agreement"]) == {"rate_vs_network", "spiking_vs_network", "spiking_vs_rate"}
    assert all(0.0 <= v <= 1.0 for v in s["agreement"].values())
    assert s["spikes_per_E_pool_mean"] > 0  # the counts the readout used are not empty
    assert (tmp_path / "compare.png").is_file() and (tmp_path / "compare.json").is_file()


def test_cli_bad_input(tmp_path):
    res = CliRunner().invoke(app, ["compare", str(tmp_path), "--json"])
    assert res.exit_code == 2 and "finished training run" in res.output
    res = CliRunner().invoke(app, ["compare", str(tmp_path), "--spiking-examples", "-1"])
    assert res.exit_code == 2 and "--spiking-examples" in res.output


# ------------------------------------------------------------------ spiking twin on the whole test set

def test_compare_scores_the_whole_test_set_by_default_with_anytime_curves(tied_run, tmp_path):
    s = compare_run(tied_run, out_dir=tmp_path, spiking_duration_ms=40.0, n_examples_plot=1)
    assert s["spiking_engine"] == "torch" and s["spiking_dtype"] == "float32"
    assert s["spiking_examples"] == s["n_spiking"] == s["n_test"] == 120
    assert s["network_accuracy_on_spiking_subset"] == s["network_accuracy"]  # the whole set
    assert s["network_spiking_gap"] == pytest.approx(s["network_accuracy"] - s["spiking_accuracy"], abs=1e-12)
    for gap in ("network_spiking_gap", "rate_spiking_gap"):  # paired 95 % intervals (Bonett-Price), holding the gap
        lo, hi = s[gap + "_ci95"]
        assert -1.0 <= lo <= s[gap] <= hi <= 1.0 and hi - lo > 0
    assert s["rate_spiking_gap"] == pytest.approx(s["rate_window_accuracy_on_spiking_subset"] - s["spiking_accuracy"])
    a = s["anytime"]
    assert a["n"] == 120 and a["readout_ms"][-1] == 40.0 and a["readout_ms"] == sorted(a["readout_ms"])
    assert len(a["spiking"]) == len(a["rate_circuit"]) == len(a["readout_ms"])
    assert a["spiking"][-1] == s["spiking_accuracy"]  # the reported readout is the last window
    assert a["rate_circuit"][-1] == s["rate_window_accuracy_on_spiking_subset"]
    assert a["network"] == s["accuracy_per_step"]["network"]  # the whole set: the same curve
    assert s["spikes_per_example"] > s["spikes_per_E_pool_mean"] > 0
    assert json.loads((tmp_path / "compare.json").read_text())["anytime"] == a


def _twin_of_six(tied_run):
    """The tied run's spiking twin (gain mapping at the mean input) and six encoded test inputs."""
    from cortex_resnet.spiking.simulator import to_spiking

    run = load_run(tied_run)
    x = torch.as_tensor(run.dataset.x_test[:6], dtype=torch.float64)
    _, _, _, circuit = rate_logits(run, x)
    with torch.no_grad():
        u = run.model.encode(x).numpy()
    model = to_spiking(circuit, input_mode="current", u_operating=u.mean(0))
    return model, u


def test_window_counts_equal_the_spiking_models_counts(tied_run):
    """One run, several windows == SpikingModel.run's count in each window (same seeds, same engine)."""
    from cortex_resnet.spiking.scoring import window_counts

    model, u = _twin_of_six(tied_run)
    windows = [(10.0, 30.0), (0.0, 40.0)]
    counts, _ = window_counts(model, u, windows, duration_ms=40.0, seed=3, dtype="float64")
    for w, win in enumerate(windows):
        ref = model.run(u, duration_ms=40.0, window_ms=win, seed=3, engine="torch", dtype="float64")
        np.testing.assert_array_equal(counts[w], ref.counts)
    assert counts[1].sum() > counts[0].sum() > 0


def test_window_counts_do_not_depend_on_the_batch_the_memory_allows(tied_run, monkeypatch):
    """The torch batch shrinks to what the memory budget holds (the untied chain's 32,000-neuron twin
    at 300 ms asked for 15.7 GiB at batch 256 and was refused); every input keeps the random streams
    it has in a full-size chunk, so the counts are the same at any batch."""
    from cortex_resnet.spiking import scoring

    model, u = _twin_of_six(tied_run)
    monkeypatch.setattr(scoring, "TORCH_BATCH", 4)  # chunks of 4 define the streams: inputs 4, 5 are chunk 1
    full, _ = scoring.window_counts(model, u, [(0.0, 30.0)], duration_ms=30.0, seed=5, dtype="float64")
    assert scoring.torch_batch_size(model, u, 30.0, "float64") == 4
    monkeypatch.setenv("CORTEX_RESNET_MEMORY_BUDGET_GB", "1e-9")  # nothing fits: one input per run (the engine refuses it)
    assert scoring.torch_batch_size(model, u, 30.0, "float64") == 1
    monkeypatch.setattr(scoring, "torch_batch_size", lambda *a: 3)  # chunks of 3 cross the chunk-of-4 border
    monkeypatch.delenv("CORTEX_RESNET_MEMORY_BUDGET_GB")
    small, _ = scoring.window_counts(model, u, [(0.0, 30.0)], duration_ms=30.0, seed=5, dtype="float64")
    np.testing.assert_array_equal(small, full)
    assert full[0, 4:].sum() > 0


def test_rate_window_logits_average_the_trajectory_over_the_window(tied_run):
    from cortex_resnet.workflows.compare import _trajectories
    from cortex_resnet.spiking.scoring import rate_window_logits

    run = load_run(tied_run)
    x = torch.as_tensor(run.dataset.x_test[:7], dtype=torch.float64)
    _, _, _, circuit = rate_logits(run, x)
    m = run.spec.model
    with torch.no_grad():
        u = run.model.encode(x)
        traj = lambda uu, steps: _trajectories(circuit, uu, steps, m.dt_ms, m.input_mode, True)
        got = rate_window_logits(traj, run.model, u, np.eye(circuit.n_units),
                                 [(4.0, 8.0), (10.0, 20.0)], m.dt_ms, 20.0, batch=3)
        r = traj(u, 20)[:, :, :circuit.n_E]
        for w, (k0, k1) in enumerate([(4, 8), (10, 20)]):  # steps k0 < k <= k1
            torch.testing.assert_close(got[w], run.model.readout(r[k0 + 1:k1 + 1].mean(0)), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ the mapping of the twin

def test_mapping_is_reported_and_fitted_over_training_inputs(tied_run, tmp_path):
    """``fit``: fitted over a seeded sample of encoded training inputs, its rms rate error reported per
    population and lower after the fit; ``gain`` (the default) linearises at the mean test input."""
    run = load_run(tied_run)
    u_fit, u_gain = operating_inputs(run, "fit", 32, 0), operating_inputs(run, "gain", 32, 0)
    assert u_fit.shape == (32, u_gain.shape[0])
    assert torch.equal(u_fit, operating_inputs(run, "fit", 32, 0)) and u_gain.ndim == 1
    s = compare_run(tied_run, out_dir=tmp_path, spiking_examples=8, spiking_duration_ms=20.0, n_examples_plot=1,
                    mapping="fit", fit_samples=32)
    assert s["spiking_mapping"] == "fit"
    fit = s["spiking_mapping_info"]["fit"]
    assert fit["samples"] == 32 and fit["per"] == "unit"
    assert all(fit["rms_hz_after"][p] < fit["rms_hz_before"][p] for p in ("E", "I"))


def test_bad_mapping_is_refused_before_any_work(tied_run, tmp_path):
    with pytest.raises(SpecError, match="mapping"):
        compare_run(tied_run, out_dir=tmp_path, mapping="linear")
    res = CliRunner().invoke(app, ["compare", str(tied_run), "--mapping", "linear", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "mapping" in res.output
    assert not (tmp_path / "compare.json").exists()


def test_no_examples_to_draw_still_scores_and_draws(tied_run, tmp_path):
    """``n_examples_plot=0``: no trajectories are computed (a zero-example batch used to be refused deep
    in the rate simulator); the scores and the figure's accuracy panels are still there."""
    s = compare_run(tied_run, out_dir=tmp_path, spiking_examples=4, spiking_duration_ms=20.0, n_examples_plot=0)
    assert s["n_spiking"] == 4 and 0.0 <= s["spiking_accuracy"] <= 1.0
    assert (tmp_path / "compare.png").exists()


# ------------------------------------------------------------------ pool size and readout window

def test_bad_pool_size_and_window_start_exit_2_before_any_work(tmp_path):
    """Refused before the run is loaded (``run`` need not exist); the multiple of the net's dt once it is."""
    out = tmp_path / "out"
    out.mkdir()
    for args, field in ((["--pool-size", "0"], "--pool-size"), (["--pool-size", "10001"], "--pool-size"),
                        (["--spiking-duration", "40", "--window-start", "40"], "--window-start"),
                        (["--window-start", "-1"], "--window-start")):
        res = CliRunner().invoke(app, ["compare", str(tmp_path / "run"), *args, "--out", str(out)])
        assert res.exit_code == 2 and field in res.output, (args, res.output)
    assert not any(out.iterdir())  # nothing written
    for start in (-1.0, 40.0, 2.5):  # below 0, not below T = 40 ms, not a multiple of dt = 1 ms
        with pytest.raises(SpecError, match="--window-start"):
            check_window_start(start, 40.0, 1.0)
    for start in (None, 0.0, 39.0):
        check_window_start(start, 40.0, 1.0)


@pytest.mark.slow  # ~11 s on the busy 2-core machine (a spiking run and its reference count)
def test_window_start_sets_the_reported_window_and_pool_size_the_pools(tied_run, tmp_path):
    """``window_start_ms``: the reported spiking readout counts E-pool spikes in ``[start, T)`` (the same
    spikes as ``window_counts`` over that window, same seed), the rate circuit is averaged over the same
    steps; the other anytime windows stay ``[t/2, t)``. ``pool_size``: that many LIF neurons per unit."""
    from cortex_resnet.spiking.simulator import to_spiking
    from cortex_resnet.spiking.scoring import CONVERSION, window_counts

    s = compare_run(tied_run, out_dir=tmp_path, spiking_examples=6, spiking_duration_ms=30.0, n_examples_plot=0,
                    pool_size=7, window_start_ms=4.0, seed=2)
    assert s["spiking_window_ms"] == [4.0, 30.0] and s["pool_size"] == 7 and s["spiking_neurons"] == 7 * 20
    assert "[4.0, 30.0]" in s["anytime"]["window"] and s["anytime"]["readout_ms"][-1] == 30.0
    run = load_run(tied_run)
    idx = np.sort(np.random.default_rng(2).choice(120, size=6, replace=False))
    x = torch.as_tensor(run.dataset.x_test[idx], dtype=torch.float64)
    _, _, _, circuit = rate_logits(run, x)
    with torch.no_grad():
        u = run.model.encode(x).numpy()
        u_op = operating_inputs(run, "gain", 1, 2).numpy()
    model = to_spiking(circuit, pool_size=7, input_mode="current", u_operating=u_op,
                       **{**CONVERSION, "weight_scaling": "gain"})
    counts, R = window_counts(model, u, [(4.0, 30.0)], duration_ms=30.0, seed=2)
    r = torch.as_tensor(counts[0] / (7 * 0.026) / R)
    pred = run.model.readout(run.model.select(r)).argmax(-1)
    y = torch.as_tensor(run.dataset.y_test[idx])
    assert s["spiking_accuracy"] == pytest.approx(float((pred == y).double().mean()), abs=1e-12)
