"""Parameter sweeps: every grid point equals a direct simulation; bad fields fail before any task runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cortex_resnet import load_model, simulate
from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.cli import app
from cortex_resnet.errors import SpecError
from cortex_resnet.fanout.sweep import sweep_model
from cortex_resnet.io.results import load_dataset, population_mean

ROOT = Path(__file__).resolve().parents[2]
ISN = ROOT / "models" / "isn.toml"


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("sweep")
    ds = sweep_model(ISN, {"connectivity.J_EE": [0.5, 2.0]}, seeds=2, duration_ms=60, dt_ms=0.5,
                     workers=0, out=out)
    return out, ds


@pytest.mark.parametrize("j_ee", [0.5, 2.0])
def test_grid_point_equals_a_direct_simulation(swept, j_ee: float) -> None:
    _, ds = swept
    spec = load_model(ISN, seed=1).spec.replace(**{"connectivity.J_EE": j_ee})
    direct = population_mean(simulate(build_circuit(spec), duration_ms=60, dt_ms=0.5, record_stride=2, seed=1))
    got = ds.sel({"connectivity.J_EE": j_ee, "seed": 1})
    np.testing.assert_allclose([float(got["rate_E"]), float(got["rate_I"])], [direct["E"], direct["I"]],
                               rtol=1e-12)


def test_isn_flag_follows_the_ee_loop_gain(swept) -> None:
    _, ds = swept
    isn = ds["inhibition_stabilized"].mean("seed")
    assert float(isn.sel({"connectivity.J_EE": 0.5})) == 0.0
    assert float(isn.sel({"connectivity.J_EE": 2.0})) == 1.0


def test_result_file_and_cache(swept) -> None:
    out, ds = swept
    saved = load_dataset(out / "sweep.nc")
    np.testing.assert_array_equal(saved["rate_E"].values, ds["rate_E"].values)
    assert len(list((out / ".cache").glob("*.json"))) == 4  # 2 values x 2 seeds, reused on a rerun


def test_unknown_field_fails_before_running(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["sweep", str(ISN), "--param", "connectivity.J_XX=1,2", "--workers", "0",
                                   "--out", str(tmp_path / "s"), "--no-progress"])
    assert res.exit_code == 2 and "J_XX" in res.output
    assert not (tmp_path / "s" / "sweep.nc").exists()


def test_singular_grid_point_is_marked_with_nan_and_reason(tmp_path: Path) -> None:
    """Linear circuit, J_EI = 1, J_IE = 2, J_II = 1: det(I - J) = 2 (1 - J_EE) + 2 vanishes at J_EE = 2.
    That grid point has no unique steady state: status 'singular', spectrum NaN; J_EE = 0.5 is ok."""
    from cortex_resnet.fanout.sweep import STATUS

    text = (ROOT / "models" / "linear.toml").read_text()
    for old, new in (("J_EI = 1.0", "J_EI = 1.0"), ("J_IE = 1.0", "J_IE = 2.0"), ("J_II = 0.5", "J_II = 1.0")):
        assert old in text
        text = text.replace(old, new)
    model = tmp_path / "singular.toml"
    model.write_text(text)
    ds = sweep_model(model, {"connectivity.J_EE": [0.5, 2.0]}, duration_ms=20, dt_ms=0.5, workers=0,
                     out=tmp_path / "s")
    bad, good = ds.sel({"connectivity.J_EE": 2.0, "seed": 0}), ds.sel({"connectivity.J_EE": 0.5, "seed": 0})
    assert int(bad["status"]) == STATUS["singular"] and np.isnan(float(bad["max_eig_real"]))
    assert int(good["status"]) == STATUS["ok"] and np.isfinite(float(good["max_eig_real"]))
    assert np.isfinite(float(bad["rate_E"]))  # the simulation itself is fine
    saved = load_dataset(tmp_path / "s" / "sweep.nc")
    assert "singular" in saved["status"].attrs["flag_meanings"] and "1 singular" in saved.attrs["status_summary"]
