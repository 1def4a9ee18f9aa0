"""The spiking benchmark (:mod:`cortex_resnet.bench.spiking`) measures what it says.

Ratios are not asserted (they depend on the machine and its load); checked are the
contract and that both sides simulate the same network (similar activity).
"""

from __future__ import annotations

import pytest

from cortex_resnet.bench import BENCHES, run_bench


def test_registered():
    assert BENCHES["spiking"] == "cortex_resnet.bench.spiking"


@pytest.mark.slow
@pytest.mark.brian2
def test_quick_bench_contract_and_same_network():
    report = run_bench("spiking", quick=True)
    assert report["bench"] == "spiking" and report["quick"] is True
    (res,) = report["results"]
    assert res["name"] == "runtime_vs_handwritten" and res["goal"] == "<= 1.1"
    assert res["met"] == (res["value"] <= 1.1) and res["value"] > 0
    ours, hand = res["details"]["ours"], res["details"]["handwritten"]
    # the same network: after the same kick both fire tens of thousands of spikes in 200 ms,
    # equal up to the different random realisations (graph, initial potentials, kick)
    assert 0.7 < ours["n_spikes"] / hand["n_spikes"] < 1.4
    assert ours["device"] == "runtime-cython"
