"""``bench pd14``: the JSON contract; every engine ran the same microcircuit (slow: it compiles two
standalone builds and runs six networks, each in its own process)."""

from __future__ import annotations

import pytest

from cortex_resnet.bench import run_bench
from cortex_resnet.model import pd14 as P

pytestmark = [pytest.mark.brian2, pytest.mark.slow]


def test_pd14_bench_reports_every_engine_with_rates_and_memory():
    rep = run_bench("pd14", quick=True, scale=0.02)
    res = {r["name"]: r for r in rep["results"]}
    engines = [k for k in res if k.startswith("rtf_")]
    assert {"rtf_torch", "rtf_brian2_runtime", "rtf_brian2_standalone_1", "rtf_brian2_standalone_2"} <= set(engines)
    for k in engines:
        d = res[k]["details"]
        assert res[k]["value"] > 0 and d["peak_rss_mb"] > 50 and d["scale"] == 0.02
        assert set(d["rates_hz"]) == set(P.POPULATIONS)
        assert sum(d["rates_hz"].values()) > 1.0  # the network is active, in every engine
    assert res["rtf_torch"]["details"]["timing"]["sim_cpu_s"] > 0  # CPU time next to the wall time
    if "rtf_nest_1" in res:
        assert res["ours_best_over_nest_best_rtf"]["goal"] == "<= 1.0"
        torch_vs = res["torch_over_nest_best_rtf"]
        assert torch_vs["met"] is None and torch_vs["details"]["torch_peak_rss_mb"] > 50  # the goal is at scale 1
