"""Sweeps over a named circuit's pathway fields: one rate per population by name, ISN per sub-network."""

from __future__ import annotations

import numpy as np
import pytest

from cortex_resnet.catalog import catalog_root
from cortex_resnet.fanout.sweep import STATUS, sweep_task
from cortex_resnet.model.spec import load_spec

SMALL = {"populations.E.n": 6, "populations.PV.n": 2, "populations.SOM.n": 2}


@pytest.mark.parametrize("J_PVE", [1.5, 2.0])
def test_sweep_task_on_pathway_field_matches_population_algebra(J_PVE):
    spec = load_spec(catalog_root() / "models" / "e_pv_som.toml")
    out = sweep_task(spec.to_json(), {"connectivity.pathways.PV.E.J": J_PVE, **SMALL}, 0,
                     "constant:amp=0.0", 1500.0, 1.0)
    W = np.array([[2.0, -1.5, -0.5], [J_PVE, -1.0, -0.5], [1.0, 0.0, 0.0]])
    r = np.linalg.solve(np.eye(3) - W, [1.5, 1.0, 0.0])  # every population above threshold
    # the mean over the last half (750-1500 ms) of a run from r = 0; the slowest mode decays at 0.019/ms (J_PV,E = 1.5)
    assert [out["rate_E"], out["rate_PV"], out["rate_SOM"]] == pytest.approx(r, abs=2e-3)
    assert "rate_I" not in out and out["status"] == STATUS["ok"]
    assert out["isn_E"] == 1.0  # J_EE = 2 > 1 and the circuit is stable


def test_sweep_task_shorthand_keeps_rate_E_rate_I():
    spec = load_spec(catalog_root() / "models" / "isn.toml")
    out = sweep_task(spec.to_json(), {"populations.E.n": 4, "populations.I.n": 2}, 0, "constant:amp=0.5", 50.0, 0.5)
    assert {"rate_E", "rate_I"} <= set(out) and not any(k.startswith("isn_") for k in out)
