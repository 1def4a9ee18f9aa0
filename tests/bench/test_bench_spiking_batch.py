"""``bench spiking-batch``: the JSON contract and that every engine ran on the same circuit.

The real bench trains the digits circuit and runs 256 stimuli (minutes); here the
trained circuit is replaced by a small relu E/I circuit and the sizes by a few
stimuli of 20 ms on Brian2's numpy target, so the test checks the plumbing and the contract, not the speed.
"""

from __future__ import annotations

import numpy as np
import pytest

from cortex_resnet.bench import run_bench
from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.model.spec import parse_spec

pytestmark = pytest.mark.brian2

TINY = {"name": "tiny", "populations": {
    "E": {"n": 8, "tau_ms": 4.0, "transfer": {"name": "relu"}},
    "I": {"n": 2, "tau_ms": 2.0, "transfer": {"name": "relu"}}},
    "connectivity": {"J_EE": 0.5, "J_EI": 1.0, "J_IE": 1.0, "J_II": 0.5, "weight_cv": 0.5},
    "input": {"n_inputs": 4, "projection": "random", "gain_I": 0.5}}


def test_spiking_batch_bench_reports_every_engine_and_its_goal(monkeypatch):
    from cortex_resnet.bench import spiking_batch

    circuit = build_circuit(parse_spec(TINY))
    u = np.random.default_rng(0).uniform(0.5, 1.5, size=(6, 4))
    monkeypatch.setattr(spiking_batch, "trained_circuit", lambda folder, epochs=1: (circuit, u, u.mean(0)))
    monkeypatch.setitem(spiking_batch.SIZES, "quick", (4, 2, 20.0))
    monkeypatch.setattr(spiking_batch, "BRIAN2_TARGET", "numpy")  # no compilation in the default suite
    out = run_bench("spiking-batch", quick=True)
    assert out["bench"] == "spiking-batch" and "machine" in out
    by_name = {r["name"]: r for r in out["results"]}
    for key in ("brian2_runtime_stimuli_per_s", "torch_float64_stimuli_per_s", "torch_float32_stimuli_per_s"):
        assert by_name[key]["value"] > 0 and by_name[key]["unit"] == "stimuli/s"
    ratio = by_name["torch_vs_brian2_speedup"]
    assert ratio["goal"] == ">= 30" and ratio["met"] == (ratio["value"] >= 30)
    runs = ratio["details"]["runs"]
    assert all(r["threads"] == 1 for r in runs.values()) and ratio["details"]["goal"] == ">= 30x"
    assert runs["torch_float32"]["engine"] == "torch" and runs["brian2_runtime"]["engine"] == "brian2_runtime_numpy"
    assert runs["torch_float64"]["stimuli"] == 4 and runs["brian2_runtime"]["stimuli"] == 2
    assert set(out["results"][0]) >= {"name", "value", "unit", "goal", "met"}
    engine_only = by_name["torch_vs_brian2_engine_only_speedup"]
    assert engine_only["value"] > 0 and engine_only["goal"] == "information"
    for key in ("torch_float32_stimuli_per_s", "brian2_runtime_stimuli_per_s"):
        d = by_name[key]["details"]
        assert 0 < d["plan_s"] < d["wall_s"] and 0 < d["engine_s"] < d["wall_s"]
