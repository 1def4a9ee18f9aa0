"""amplification and isn-paradox on circuits of named populations (models/e_pv_som.toml).

The references are the linear algebra of the threshold-linear circuit written out here (numpy,
independent of the package): with weight_cv = 0 and every unit above threshold, the population
rates solve ``(I - W_pop) r = h`` exactly (the file's own comment gives r* = (1.2, 1.4, 1.2)).
"""

from __future__ import annotations

import numpy as np
import pytest

from cortex_resnet.errors import SpecError
from cortex_resnet.hypotheses.registry import get_hypothesis

# e_pv_som, signed population couplings (post x pre: E, PV, SOM) and drive
W_POP = np.array([[2.0, -1.5, -0.5], [2.0, -1.0, -0.5], [1.0, 0.0, 0.0]])
BIAS = np.array([1.5, 1.0, 0.0])
GAIN = np.array([1.0, 0.5, 0.0])
SMALL = {"populations.E.n": 12, "populations.PV.n": 3, "populations.SOM.n": 2}


def _prepared(name: str, **params):
    hyp = get_hypothesis(name)
    p = hyp.parse_params({"model": "models/e_pv_som.toml", "weight_cv": 0.0, "overrides": SMALL,
                          "duration_ms": 200.0, "dt_ms": 0.5, **params}, None)
    return hyp, hyp.prepare(p, None), p


def _solve(W: np.ndarray, h: np.ndarray) -> np.ndarray:
    return np.linalg.solve(np.eye(3) - W, h)


def test_isn_paradox_named_matches_population_algebra():
    hyp, prep, params = _prepared("isn-paradox", inhibitory=["PV"], onset_ms=100.0)
    assert prep["named"] and prep["driven"] == ["PV"]
    for cond in hyp.design(params):
        res = hyp.task(prep, cond, 0)
        W = W_POP.copy()
        W[0, 0] *= cond["ee_scale"]
        dr = _solve(W, BIAS + np.array([0.0, 0.3, 0.0])) - _solve(W, BIAS)
        assert res["delta_PV"] == pytest.approx(dr[1], abs=1e-10)
        assert res["delta_E"] == pytest.approx(dr[0], abs=1e-10)
        assert res["delta_SOM"] == pytest.approx(dr[2], abs=1e-10)
        assert res["delta_rI"] == pytest.approx(dr[1], abs=1e-10)  # the driven population's mean
        assert res["pred_delta_rI"] == pytest.approx(dr[1], abs=1e-10)
        assert res["sim_delta_rI"] == pytest.approx(dr[1], abs=0.02)  # Euler, 100 ms after the step
        if cond["condition"] == "isn":  # the file's comment: -0.4 per unit of PV drive; E alone unstable
            assert dr[1] == pytest.approx(-0.12) and res["isn_E"] == 1.0
        else:  # E self-excitation 0.5: no longer ISN, PV rises
            assert dr[1] > 0 and res["isn_E"] == 0.0


def test_amplification_named_gain_is_r_over_x():
    hyp, prep, params = _prepared("amplification", population="E", J_EE_values=[1.0, 2.0], test_J_EE=2.0)
    assert prep["ee_field"] == "connectivity.pathways.E.E.J"
    for cond in hyp.design(params):
        res = hyp.task(prep, cond, 0)
        W = W_POP.copy()
        W[0, 0] = cond["J_EE"]
        h = BIAS + GAIN * 1.0  # input_amp 1 on the one channel
        r = _solve(W, h)
        assert res["rE"] == pytest.approx(r[0], abs=1e-9)
        assert res["xE"] == pytest.approx(h[0], abs=1e-12)  # recurrence removed: x = relu(h)
        assert res["gain"] == pytest.approx(r[0] / h[0], abs=1e-9)
        assert res["pred_gain"] == pytest.approx(res["gain"], abs=1e-9)  # unit-level prediction
        assert np.isnan(res["pop_gain"])  # the two-population formula does not apply


@pytest.mark.parametrize("name,params,field", [
    ("isn-paradox", {"inhibitory": ["E"]}, "params.inhibitory"),        # excitatory, not inhibitory
    ("isn-paradox", {"inhibitory": ["VIP"]}, "params.inhibitory"),      # unknown population
    ("isn-paradox", {"inhibitory": ["PV", "PV"]}, "params.inhibitory"),
    ("isn-paradox", {"backends": ["rate", "spiking"]}, "params.backends"),
    ("amplification", {"population": "PV"}, "params.population"),       # inhibitory
    ("amplification", {"population": "L4E"}, "params.population"),      # unknown
])
def test_named_bad_params_name_the_field(name, params, field):
    with pytest.raises(SpecError) as err:
        _prepared(name, **params)
    assert err.value.field == field


def test_shorthand_refuses_inhibitory_names():
    hyp = get_hypothesis("isn-paradox")
    p = hyp.parse_params({"inhibitory": ["I"]}, None)
    with pytest.raises(SpecError) as err:
        hyp.prepare(p, None)
    assert err.value.field == "params.inhibitory"
