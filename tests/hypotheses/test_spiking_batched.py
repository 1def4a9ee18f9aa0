"""Spiking hypotheses with the torch engine: a seed's conditions as one batch give what the
conditions run one at a time give (the same replica seeds, the same engine)."""

from __future__ import annotations

import numpy as np
import pytest

from cortex_resnet.hypotheses import _spiking
from cortex_resnet.hypotheses._circuits import circuit_for_seed, prepare_circuit
from cortex_resnet.hypotheses.rate_spike_agreement import HYPOTHESIS, AgreementParams

SMALL = {"pool_size": 40, "duration_ms": 120.0, "input_amps": [30.0, 40.0, 50.0]}


def _prepared(**changes):
    return prepare_circuit(AgreementParams(engine="torch", **{**SMALL, **changes}), None)


def test_a_conditions_batch_equals_the_conditions_one_at_a_time():
    """Brunel model A (pool 40: 200 neurons), three input levels: identical spike trains per condition."""
    prep = _prepared()
    c = circuit_for_seed(prep, 2, **{"spiking.pool_size": 40})
    u = np.repeat(np.asarray(SMALL["input_amps"])[:, None], c.n_inputs, axis=1)
    _spiking._BATCHES.clear()
    batch, _ = _spiking.condition_run(c, u, 0, 120.0, 2, decompose=False)
    assert batch.sizes["batch"] == 3
    for k in range(3):
        alone, b = _spiking.condition_run(c, u, k, 120.0, 2, decompose=False, batched=False)
        sel = batch["spike_batch"].values == k
        np.testing.assert_array_equal(batch["spike_time_ms"].values[sel], alone["spike_time_ms"].values)
        np.testing.assert_array_equal(batch["spike_neuron"].values[sel], alone["spike_neuron"].values)
        assert sel.sum() > 100, "the network must fire for the comparison to mean something"


def test_rate_spike_agreement_tasks_batched_and_alone_agree_exactly():
    _spiking._BATCHES.clear()
    batched = [HYPOTHESIS.task(_prepared(), {"condition": f"u={a:g}", "amp": a}, 1) for a in SMALL["input_amps"]]
    assert len(_spiking._BATCHES) == 1, "the seed's conditions ran as one batch"
    alone = [HYPOTHESIS.task(_prepared(batch_conditions=False), {"condition": f"u={a:g}", "amp": a}, 1)
             for a in SMALL["input_amps"]]
    for x, y in zip(batched, alone):
        assert x.keys() == y.keys()
        for key in x:
            assert x[key] == pytest.approx(y[key], nan_ok=True, rel=1e-12), key
    assert all(x["spiking_E"] > 0 and x["spiking_I"] > 0 for x in batched), "the network must fire"
