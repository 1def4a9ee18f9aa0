"""The spiking realisation of a tuned circuit has the rate circuit's tuned connectivity.

The plan's synapses connect neuron pools of unit pairs where ``W != 0`` (all ``M x M`` neuron
pairs with ``p_connect = 1``), and each synapse's weight is the pool-level weight, proportional to
``|W[post, pre]|`` with one factor per postsynaptic unit (the gain mapping). So tuned strengths
(von Mises of the preference difference) and tuned probabilities (the mask) carry over.
"""

from __future__ import annotations

import warnings

import numpy as np

from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.model.spec import parse_spec
from cortex_resnet.spiking.build import build_plan

from tests.model.test_tuning import tuned_spec

M = 3


def _plan(**kw):
    data = tuned_spec(n_e=12, n_i=4, transfer="relu", **kw)
    data["spiking"] = {"pool_size": M, "weight_scaling": "identity", "background_noise": "none"}
    c = build_circuit(parse_spec(data))
    u = np.zeros((1, c.n_inputs))
    u[0, 0] = 1.0
    with warnings.catch_warnings():  # a tiny network: its synaptic noise may exceed the target (a warning)
        warnings.simplefilter("ignore", UserWarning)
        return c, build_plan(c, u, 20.0)


def test_tuned_strengths_are_realised_synapse_by_synapse():
    c, plan = _plan()
    for pop in ("E", "I"):
        pre, post, w = plan.synapses[pop]
        up, uq = post // M, pre // M
        ratio = w / np.abs(c.W[up, uq])
        for a in np.unique(up):
            np.testing.assert_allclose(ratio[up == a], ratio[up == a][0], rtol=1e-12)
        pairs, counts = np.unique(up * c.n_units + uq, return_counts=True)
        want = np.flatnonzero((c.W != 0) & (c.is_E[None, :] == (pop == "E")))
        assert np.array_equal(pairs, want) and np.all(counts == M * M)
    # the weights themselves fall with the preference difference, like W
    pre, post, w = plan.synapses["E"]
    row = (post // M == 0) & (pre // M < 12)
    per_unit = np.array([w[row & (pre // M == j)][0] for j in range(12)])
    np.testing.assert_allclose(per_unit / per_unit[0], c.W[0, :12] / c.W[0, 0], rtol=1e-12)


def test_tuned_probabilities_are_realised_as_the_pool_mask():
    c, plan = _plan(kind="sparse", modulate="probability", p=0.8)
    for pop in ("E", "I"):
        pre, post, _ = plan.synapses[pop]
        pairs = np.unique((post // M) * c.n_units + pre // M)
        want = np.flatnonzero(c.mask & (c.W != 0) & (c.is_E[None, :] == (pop == "E")))
        assert np.array_equal(pairs, want)
