"""Spiking sweeps: stimulus amplitudes as one torch batch equal the grid points one at a time and a
direct simulation; bad backends, engines and unshareable fields exit 2 naming the field, writing nothing."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cortex_resnet import load_model, simulate
from cortex_resnet.cli import app
from cortex_resnet.errors import SpecError
from cortex_resnet.fanout.batches import amp_batch, operating_input
from cortex_resnet.fanout.sweep import sweep_model
from cortex_resnet.io.results import load_dataset, population_mean
from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.spiking.initial_state import replica_seed
from cortex_resnet.spiking.simulator import simulate_spiking

ROOT = Path(__file__).resolve().parents[2]
BRUNEL = ROOT / "models" / "brunel_2000.toml"
ISN = ROOT / "models" / "isn.toml"
GRID = {"spiking.pool_size": [40], "stimulus.amp": [20.0, 30.0, 40.0]}  # 200 LIF neurons per network
RUN = {"stimulus": "constant:amp=30", "duration_ms": 60.0, "workers": 0, "backend": "spiking", "engine": "torch"}


@pytest.fixture(scope="module")
def batched(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("spiking_sweep")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return out, sweep_model(BRUNEL, GRID, seed=4, out=out, **RUN)


def test_amplitudes_as_one_batch_equal_one_task_per_grid_point(batched):
    _, ds = batched
    assert json.loads(ds.attrs["batched_fields"]) == ["stimulus.amp"] and ds.attrs["rate_units"] == "Hz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alone = sweep_model(BRUNEL, GRID, seed=4, batch="none", **RUN)
    assert json.loads(alone.attrs["batched_fields"]) == []
    assert dict(ds.sizes) == dict(alone.sizes) == {"spiking.pool_size": 1, "stimulus.amp": 3, "seed": 1}
    for var in ("rate_E", "rate_I", "unstable", "status"):
        np.testing.assert_array_equal(ds[var].values, alone[var].values, err_msg=var)
    assert np.all(ds["rate_E"].values > 1.0), "the network fires (Hz)"


def test_grid_point_equals_a_direct_spiking_simulation(batched):
    """The point stimulus.amp = 40 (index 2 of the amplitude grid) of seed 4: its replica seed and the
    grid's operating input, run directly through simulate_spiking; rates in Hz over the last half."""
    _, ds = batched
    c = build_circuit(load_model(BRUNEL, seed=4).spec.replace(**{"spiking.pool_size": 40}))
    u_op = operating_input(c, amp_batch("constant:amp=1", GRID["stimulus.amp"]), 60.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        direct = simulate_spiking(c, "constant:amp=40", duration_ms=60.0, seed=4, engine="torch", decompose=False,
                                  u_operating=u_op, replica_seeds=[replica_seed(4, 2)])
    want = population_mean(direct, "r")
    got = ds.sel({"stimulus.amp": 40.0, "seed": 4}).squeeze()
    assert float(got["rate_E"]) == want["E"] and float(got["rate_I"]) == want["I"]


def test_the_file_has_the_swept_coordinates(batched):
    out, ds = batched
    saved = load_dataset(out / "sweep.nc")
    assert "stimulus__amp" in saved.dims and "spiking__pool_size" in saved.dims
    np.testing.assert_array_equal(saved["rate_E"].values, ds["rate_E"].values)


def test_rate_sweep_of_the_stimulus_amplitude_equals_a_direct_simulation():
    """The model's stimulus (a step of 0.3 to I at 100 ms) with its amplitude replaced."""
    ds = sweep_model(ISN, {"stimulus.amp": [0.5, 2.0]}, seed=1, duration_ms=160, dt_ms=0.5, workers=0)
    c = load_model(ISN, seed=1)
    direct = population_mean(simulate(c, "step:amp=2.0,onset_ms=100,channels=[1]", duration_ms=160, dt_ms=0.5,
                                      record_stride=2, seed=1))
    assert float(ds["rate_E"].sel({"stimulus.amp": 2.0, "seed": 1})) == pytest.approx(direct["E"], rel=1e-12)


@pytest.mark.parametrize("args, field", [
    (["--backend", "nest", "--param", "stimulus.amp=1,2"], "--backend"),
    (["--backend", "spiking", "--engine", "gpu", "--param", "stimulus.amp=1,2"], "--engine"),
    (["--backend", "spiking", "--engine", "torch", "--batch", "some", "--param", "stimulus.amp=1,2"], "--batch"),
    (["--backend", "spiking", "--engine", "torch", "--batch", "all", "--param", "spiking.synapse.p_connect=0.1,0.2",
      "--param", "stimulus.amp=1,2"], "spiking.synapse.p_connect"),  # another graph: not one batch
    (["--backend", "spiking", "--engine", "torch", "--batch", "all", "--param", "populations.E.n=40,80",
      "--param", "connectivity.J_EE=0.5,2"], "populations.E.n"),
    (["--backend", "spiking", "--engine", "torch", "--batch", "all", "--param", "connectivity.J_EE=0.5,0"],
     "connectivity.J_EE=0"),  # a coupling of 0 removes the E -> E pathway
    (["--backend", "spiking", "--engine", "torch", "--batch", "all", "--param", "stimulus.onset_ms=0,10"],
     "stimulus.onset_ms"),
    (["--backend", "spiking", "--batch", "all", "--param", "stimulus.amp=1,2"], "--engine"),
    (["--backend", "spiking", "--dtype", "float16", "--param", "stimulus.amp=1,2"], "--dtype"),
    (["--engine", "torch", "--param", "stimulus.amp=1,2"], "--engine"),  # rate backend: no engine
    (["--backend", "spiking", "--engine", "torch", "--param", "stimulus.loudness=1,2"], "stimulus.loudness"),
    (["--backend", "spiking", "--engine", "torch", "--param", "stimulus.onset_ms=-5"], "stimulus.onset_ms"),
    (["--backend", "spiking", "--engine", "torch", "--stimulus", "step:amp=[1,2]", "--param",
      "connectivity.J_EE=0.5"], "--stimulus"),
])
def test_bad_sweeps_exit_2_naming_the_field_and_write_nothing(tmp_path: Path, args: list[str], field: str):
    out = tmp_path / "sweep"
    res = CliRunner().invoke(app, ["sweep", str(ISN), *args, "--out", str(out), "--workers", "0", "--json"])
    assert res.exit_code == 2, res.output
    assert field in res.output
    assert not out.exists(), "nothing written"


def test_cli_spiking_sweep_json(tmp_path: Path):
    out = tmp_path / "sweep"
    res = CliRunner().invoke(app, ["sweep", str(BRUNEL), "--backend", "spiking", "--engine", "torch", "--param",
                                   "spiking.pool_size=40", "--param", "stimulus.amp=25,35", "--stimulus",
                                   "constant:amp=30", "--duration", "40", "--workers", "0", "--out", str(out),
                                   "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["backend"] == "spiking" and summary["engine"] == "torch" and summary["rate_units"] == "Hz"
    assert summary["batched_fields"] == ["stimulus.amp"] and summary["tasks"] == 2
    assert np.asarray(summary["rate_E"]).shape == (1, 2) and (out / "sweep.nc").is_file()


def test_python_api_refuses_an_unshareable_field_before_running():
    with pytest.raises(SpecError, match="spiking.pool_size"):
        sweep_model(ISN, {"spiking.pool_size": [10, 20]}, workers=0, backend="spiking", engine="torch",
                    batch="all")


COUPLED = {"spiking.pool_size": [10], "connectivity.J_EE": [1.0, 2.0], "connectivity.J_IE": [0.3, 1.0],
           "stimulus.amp": [30.0, 40.0]}  # 50 LIF neurons per network, 8 grid points


@pytest.mark.slow  # 5 s on a busy machine; the two-condition version below is in the default suite
def test_couplings_and_amplitudes_as_one_batch_equal_one_task_per_grid_point():
    """J_EE x J_IE x amplitude (8 conditions) of a seed as ONE torch batch with per-replica weights ==
    one task per grid point (the same replica seeds and operating input; bit-identical rates in Hz)."""
    run = {**RUN, "duration_ms": 30.0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = sweep_model(BRUNEL, COUPLED, seed=4, **run)
        alone = sweep_model(BRUNEL, COUPLED, seed=4, batch="none", **run)
    assert json.loads(ds.attrs["batched_fields"]) == ["connectivity.J_EE", "connectivity.J_IE", "stimulus.amp"]
    assert dict(ds.sizes) == dict(alone.sizes)
    for var in ("rate_E", "rate_I", "unstable", "status"):
        np.testing.assert_array_equal(ds[var].values, alone[var].values, err_msg=var)
    e, i = ds["rate_E"].values[0, ..., 0], ds["rate_I"].values[0, ..., 0]  # (J_EE, J_IE, amp)
    assert np.all(e > 1.0) and np.all(i > 1.0), "the network fires (Hz)"
    assert np.any(e[0] != e[1]) and np.any(i[:, 0] != i[:, 1]), "J_EE and J_IE change the rates: the weights act"


def test_two_couplings_as_one_batch_equal_two_tasks():
    """J_EE = 1 and 2 (the same graph, other E -> E weights) of one seed: one task, one batch == two tasks."""
    grid, run = {"spiking.pool_size": [10], "connectivity.J_EE": [1.0, 2.0]}, {**RUN, "duration_ms": 20.0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = sweep_model(BRUNEL, grid, seed=4, **run)
        alone = sweep_model(BRUNEL, grid, seed=4, batch="none", **run)
    assert json.loads(ds.attrs["batched_fields"]) == ["connectivity.J_EE"]
    for var in ("rate_E", "rate_I", "status"):
        np.testing.assert_array_equal(ds[var].values, alone[var].values, err_msg=var)
    e = ds["rate_E"].values.ravel()
    assert np.all(e > 1.0) and e[0] != e[1], "the network fires and J_EE acts"
