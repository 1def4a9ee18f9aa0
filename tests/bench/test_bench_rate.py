"""The rate benchmark (:mod:`cortex_resnet.bench.rate`) measures what it says.

The timing ratios are not asserted (they depend on the machine); what is checked is
that every number behind them is valid: the float64 reference agrees with SciPy's
DOP853, the integrator chosen for (b) reaches the target error, and Brian2 integrates
the same equations as ours (same final rates up to float32 rounding).
"""

from __future__ import annotations

import math

import pytest

from cortex_resnet.bench import BENCHES, run_bench


@pytest.fixture(scope="module")
def report():
    return run_bench("rate", quick=True)


def test_registered():
    assert BENCHES["rate"] == "cortex_resnet.bench.rate"


@pytest.mark.slow
@pytest.mark.brian2
def test_quick_bench_contract_and_validity(report):
    assert report["bench"] == "rate" and "processor" in report["machine"]
    names = [r["name"] for r in report["results"]]
    assert names == ["euler_gemm_fraction", "accuracy_matched_vs_scipy", "euler_vs_brian2",
                     "euler_vs_brian2_matrix_form"]
    for r in report["results"]:
        assert {"name", "value", "unit", "goal", "met"} <= set(r)
        assert math.isfinite(r["value"]) and r["value"] > 0
        assert r["met"] == (r["value"] >= float(r["goal"].split()[-1]))
    a, b, c, d = report["results"]
    assert a["details"]["steps"] == 100 and len(a["details"]["paired_ratios"]) == 2
    # (b): the float64 reference is accurate far below the 1e-4 target, by self-convergence and
    # against an independent solver (SciPy DOP853)
    assert b["details"]["reference"]["rel_diff_vs_rk4_dt_0.2"] < 1e-5
    assert b["details"]["reference"]["rel_diff_vs_scipy_DOP853_rtol_1e-9"] < 1e-5
    assert b["details"]["ours"]["rel_error"] <= 1e-4
    assert b["details"]["scipy"]["rel_error"] <= 1e-4
    # (c): Brian2's Euler (float64) vs ours (float32), same dt: float32 rounding only (~1e-6)
    assert c["details"]["brian2"]["rel_diff_final_rate_vs_ours_float32"] < 1e-5
    assert d["details"]["brian2"]["rel_diff_final_rate_vs_ours_float32"] < 1e-5
