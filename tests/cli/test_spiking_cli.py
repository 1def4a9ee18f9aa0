"""``cortex-resnet simulate --backend spiking``: the COBA done-criterion, rate vs spiking, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cortex_resnet.cli import app
from cortex_resnet.io.results import load_dataset

pytestmark = pytest.mark.brian2
MODELS = Path(__file__).resolve().parents[2] / "models"
runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, ["simulate", *map(str, args)])


@pytest.fixture(scope="module")
def coba(tmp_path_factory):
    out = tmp_path_factory.mktemp("coba")
    res = _invoke(MODELS / "vogels_abbott_coba.toml", "--backend", "spiking", "--json",
                  "--out", out / "coba.nc", "--plot", out / "coba.png")
    return res, out


def test_coba_reports_self_sustained_asynchronous_irregular_activity(coba):
    """1 s of the Vogels-Abbott network after a 50 ms kick; statistics over the last 500 ms.

    AI: CV of ISIs near 1 (0.8-1.6: Poisson-like, the conductance-driven network is
    somewhat burstier than Poisson), synchrony index below 0.2, and no runaway: rates of
    a few to tens of Hz (Brette et al. 2007 report ~15-20 Hz).
    """
    res, _ = coba
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["backend"] == "spiking" and s["regime"] == "asynchronous irregular"
    assert 0.8 <= s["cv_isi"] <= 1.6
    assert all(3.0 < s["mean_rate_hz"][p] < 60.0 for p in ("E", "I"))
    assert s["synchrony"]["E"] < 0.2
    for key in ("out", "mean_rate_hz", "cv_isi", "max_eig_real", "inhibition_stabilized", "runtime_s",
                "compile_s"):
        assert key in s


def test_coba_result_file_and_raster_figure(coba):
    res, out = coba
    ds = load_dataset(out / "coba.nc")
    assert ds.attrs["backend"] == "spiking"
    for var in ("r", "x", "Fx", "u", "spike_time_ms", "spike_neuron", "v_trace"):
        assert var in ds
    assert (out / "coba.png").stat().st_size > 10_000


def test_rate_model_with_lif_transfer_predicts_the_spiking_rates_through_the_cli():
    """``--backend rate --phi lif`` vs ``--backend spiking`` on the same file (12 %: see
    tests/test_spiking.py::test_ei_circuit_agrees_with_the_rate_model_using_the_lif_transfer)."""
    common = [MODELS / "lif_ei.toml", "--json", "--duration", "600"]
    rate = _invoke(*common, "--backend", "rate", "--phi", "lif")
    spk = _invoke(*common, "--backend", "spiking")
    assert rate.exit_code == 0 and spk.exit_code == 0, rate.output + spk.output
    r, s = json.loads(rate.stdout), json.loads(spk.stdout)
    for p in ("E", "I"):
        assert s["mean_rate_hz"][p] == pytest.approx(r["mean_rate_hz"][p], rel=0.12)


@pytest.mark.parametrize("change, words", [
    ("spiking.populations.E.v_reset_mV=-45", "below the threshold"),
    ("spiking.populations.I.t_ref_ms=-1", "greater than or equal to 0"),
    ("spiking.pool_size=0", "greater than or equal to 1"),
    ("spiking.pool_size=900000", "memory budget"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, monkeypatch, change, words):
    monkeypatch.setenv("CORTEX_RESNET_MEMORY_BUDGET_GB", "2")
    out, fig = tmp_path / "run.nc", tmp_path / "run.png"
    res = _invoke(MODELS / "lif_ei.toml", "--backend", "spiking", "--set", change, "--out", out,
                  "--plot", fig, "--json")
    assert res.exit_code == 2, res.output
    assert words in res.output
    assert list(tmp_path.iterdir()) == []
