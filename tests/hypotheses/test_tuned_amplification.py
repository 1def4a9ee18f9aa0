"""``tuned-amplification``: the run's numbers against closed forms, its JSON contract, bad params.

Reference for the all-to-all contrast (weights without heterogeneity): untuned recurrence sees only
the input's mean, so with every unit above threshold ``r_E(theta) = x_E(theta) + c`` with the
two-population offset ``c = [(1 + J_II) mean(h_E) - J_EI mean(h_I)] / D - mean(h_E)``,
``D = (1 - J_EE)(1 + J_II) + J_EI J_IE = 0.4``; the fraction left at the preferred orientation is
``1 / (1 + c)`` (the input's peak is 1).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cortex_resnet.catalog import models_dir
from cortex_resnet.cli import app
from cortex_resnet.errors import SpecError
from cortex_resnet.hypotheses import get_hypothesis
from cortex_resnet.hypotheses._tuned import measure
from cortex_resnet.io.results import load_dataset
from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.model.fixedpoint import steady_state
from cortex_resnet.model.spec import load_spec
from cortex_resnet.model.tuning import unit_preferences, von_mises

runner = CliRunner()
HYP = get_hypothesis("tuned-amplification")


def _spec(tmp_path: Path, params: str, seeds: int = 2) -> Path:
    p = tmp_path / "ta.toml"
    p.write_text(f'hypothesis = "tuned-amplification"\nseeds = {seeds}\n[params]\n{params}\n')
    return p


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ta")
    spec = _spec(tmp, "weight_cv = 0.0\nn_orientations = 1\nsigma_sweep_deg = [17.0]")
    res = runner.invoke(app, ["hypothesis", "run", "tuned-amplification", "--spec", str(spec), "--workers", "0",
                              "--json", "--out", str(tmp / "run")])
    assert res.exit_code == 0, res.output
    return json.loads(res.output[res.output.index("{"):]), tmp / "run"


def test_json_reports_the_fraction_left_and_the_width_ratios(small_run):
    s, out = small_run
    assert s["name"] == "tuned-amplification" and s["verdict"] == "supported", s["comparisons"]
    circuits = s["extra"]["circuits"]
    assert set(circuits) == {"tuned", "all-to-all", "ring"}
    for v in circuits.values():
        assert {"fraction_left", "width_ratio_fwhm", "width_ratio_sigma"} <= set(v)
    t = circuits["tuned"]
    assert 1 / 3 < t["fraction_left"] < 1 / 2 and abs(t["width_ratio_fwhm"] - 1) < 0.1
    assert s["estimate"] == pytest.approx(t["width_ratio_fwhm"])  # the primary comparison is the FWHM ratio
    assert circuits["all-to-all"]["width_ratio_fwhm"] > 1.1 and circuits["ring"]["width_ratio_fwhm"] < 0.9
    assert (out / "figures" / "tuned-amplification.png").stat().st_size > 10_000
    assert "untuned offset" in (out / "report.md").read_text()


def test_all_to_all_fraction_left_equals_the_two_population_offset(small_run):
    _, out = small_run
    ds = load_dataset(out / "results.nc")
    spec = load_spec(models_dir() / "tuned_amplifier.toml")
    theta = unit_preferences(spec)
    n_e = spec.populations["E"].n
    h = von_mises(theta, spec.input.sigma_deg, 180.0)  # the stimulus on channel 0 (feature 0)
    h_e, h_i = h[:n_e].mean(), 0.5 * h[n_e:].mean()
    offset = (2.0 * h_e - 2.0 * h_i) / 0.4 - h_e
    np.testing.assert_allclose(ds["remaining"].sel(condition="all-to-all").values, 1 / (1 + offset), rtol=1e-9)
    np.testing.assert_allclose(ds["offset_r"].sel(condition="all-to-all").values, offset / (1 + offset),
                               rtol=1e-6)  # the fit's baseline fraction: exact data, least-squares optimum
    # a wider recurrent kernel (17 deg, the input's width) broadens the tuned response: each mode's gain falls
    assert float(ds["width_ratio"].sel(condition="tuned sigma_rec=17").mean()) > 1.1


@pytest.mark.parametrize("params,field", [
    ('backends = ["spiking"]', "params.backends"), ("width_margin = 0.0", "params.width_margin"),
    ('model = "models/spatial_ring.toml"', "params.model"),
    ('ring_model = "models/tuned_amplifier.toml"', "params.ring_model"),
    ("sigma_sweep_deg = [-1.0]", "params.sigma_sweep_deg"), ("n_orientations = 0", "params.n_orientations"),
    ("remaining_low = 0.6", "params.remaining_low"),
])
def test_bad_params_exit_2_naming_the_field(tmp_path, params, field):
    res = runner.invoke(app, ["hypothesis", "run", "tuned-amplification", "--spec", str(_spec(tmp_path, params)),
                              "--workers", "0", "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and field in res.output and "Traceback" not in res.output, res.output
    assert not (tmp_path / "run" / "report.json").exists()


@pytest.mark.slow
def test_a_spiking_cell_measures_the_evoked_tuning_curves():
    """Torch engine on the model file's circuit (240 E / 60 I units, 8 LIF neurons each, 200 ms; ~30 s on a
    busy core): finite evoked tuning curves with a positive peak. (Smaller instances, 60 or 120 E units,
    fell into a near-silent state of the LIF network, ~1.5 Hz, far below the rate model's operating point.)"""
    params = HYP.parse_params({"backends": ["rate", "spiking"], "spiking_pool_size": 8,
                               "spiking_duration_ms": 200.0})
    prepared = HYP.prepared(params, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = measure(prepared, {"circuit": "tuned", "backend": "spiking", "sigma_rec": math.nan}, 0)
    assert len(res["r_profile"]) == 240 and np.isfinite(res["r_profile"]).all() and res["r_peak"] > 0
    assert math.isfinite(res["remaining"]) and math.isfinite(res["sigma_r"])


def test_the_model_file_keeps_the_canonical_uniform_gain():
    """Tuning redistributes each row's J: a uniform input sees the canonical 2.5x (40 % left)."""
    with pytest.raises(SpecError, match="a tuned model file"):
        HYP.prepared(HYP.parse_params({"model": "models/canonical_microcircuit.toml"}), None)
    spec = load_spec(models_dir() / "tuned_amplifier.toml").replace(**{"connectivity.weight_cv": 0.0})
    c = build_circuit(spec)
    r = steady_state(c, np.ones(c.n_inputs)).numpy()[0]
    x = steady_state(c.without_recurrence(), np.ones(c.n_inputs)).numpy()[0]
    np.testing.assert_allclose(x[c.is_E] / r[c.is_E], 0.4, rtol=1e-9)
