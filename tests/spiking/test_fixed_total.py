"""The fixed-total-number rule (spiking/fixed_total.py) in the standard and the lean graph, against
its definition and analytic moments.

Reference: ``T`` synapses per population pair with independently uniform ends: exactly ``T`` per
pair; a postsynaptic neuron's in-degree is Binomial(T, 1/N_post) (mean K = T/N_post, variance
K (1 - 1/N_post)) — larger than a Bernoulli graph's K (1 - p); tolerances 4 standard errors.
"""

from __future__ import annotations

import numpy as np
import pytest

from cortex_resnet.errors import SpecError
from cortex_resnet.spiking.delay_csr import csr_from_synapses
from cortex_resnet.spiking.fixed_total import fixed_total_pathways
from cortex_resnet.spiking.lean_graph import draw_graph
from tests.spiking.test_torch_lean import _pd14

SCALE, POOL = 0.02, 8


@pytest.fixture(scope="module")
def drawn():
    c = _pd14(SCALE, POOL, **{"spiking.synapse.fixed_total_number": True})
    sspec, dt = c.spec.spiking, c.spec.spiking.dt_ms
    table = np.ones((c.n_units, c.n_units))  # structure only: weights do not enter the draw of the ends
    syn, delays, _ = draw_graph("standard", c, sspec, np.random.default_rng(1), table, "torch", dt)
    _, _, lean = draw_graph("lean", c, sspec, np.random.default_rng(2), table, "torch", dt)
    n, n_exc = c.n_units * POOL, int(c.n_E) * POOL
    return c, csr_from_synapses(syn, delays, 0.0, n, n_exc, dt), lean


def _pairs(g) -> tuple[np.ndarray, np.ndarray]:
    return np.repeat(np.arange(g.n), g.out_degree()), g.post.astype(np.int64)


@pytest.mark.parametrize("which", ["standard", "lean"])
def test_every_population_pair_gets_exactly_its_total(drawn, which):
    c, std, lean = drawn
    pre, post = _pairs(std if which == "standard" else lean)
    pathways = fixed_total_pathways(c, c.spec.spiking)
    assert len(pathways) > 30 and sum(pw.total for pw in pathways) == pre.size
    for pw in pathways:
        inside = (pre >= pw.pre0) & (pre < pw.pre1) & (post >= pw.post0) & (post < pw.post1)
        assert np.count_nonzero(inside) == pw.total


@pytest.mark.parametrize("which", ["standard", "lean"])
def test_in_degrees_are_binomial_over_the_total(drawn, which):
    """The L4E -> L2/3E pathway (the largest): mean in-degree T/N_post within 4 s.e., variance within
    4 s.e. of the binomial's (at this size 4 s.e. of the variance exceed its difference from the
    Bernoulli graph's K (1 - p); the exact totals above are what tells the rules apart)."""
    c, std, lean = drawn
    pre, post = _pairs(std if which == "standard" else lean)
    pw = max(fixed_total_pathways(c, c.spec.spiking), key=lambda q: q.total)
    n_post = pw.post1 - pw.post0
    inside = (pre >= pw.pre0) & (pre < pw.pre1) & (post >= pw.post0) & (post < pw.post1)
    deg = np.bincount(post[inside] - pw.post0, minlength=n_post)
    K = pw.total / n_post
    var = K * (1 - 1 / n_post)
    assert abs(deg.mean() - K) < 1e-9  # the total is exact, so the mean is too
    se_var = var * np.sqrt(2 / (n_post - 1))
    assert abs(deg.var(ddof=1) - var) < 4 * se_var


def test_ends_are_uniform_and_multapses_occur(drawn):
    c, std, _ = drawn
    pre, post = _pairs(std)
    pw = max(fixed_total_pathways(c, c.spec.spiking), key=lambda q: q.total)
    inside = (pre >= pw.pre0) & (pre < pw.pre1) & (post >= pw.post0) & (post < pw.post1)
    out_deg = np.bincount(pre[inside] - pw.pre0, minlength=pw.pre1 - pw.pre0)
    m = pw.total / out_deg.size
    assert abs(out_deg.mean() - m) < 1e-9 and abs(out_deg.var(ddof=1) / m - 1) < 4 * np.sqrt(2 / out_deg.size)
    key = (pre[inside].astype(np.int64) << 32) | post[inside]
    assert np.unique(key).size < key.size  # multapses allowed (NEST's default)


def test_two_rules_at_once_and_non_uniform_pairs_are_refused():
    with pytest.raises(Exception, match="fixed_indegree and fixed_total_number"):
        _pd14(SCALE, POOL, **{"spiking.synapse.fixed_total_number": True, "spiking.synapse.fixed_indegree": True})
    c = _pd14(SCALE, POOL, **{"spiking.synapse.fixed_total_number": True})
    W = c.W.copy()
    W[0, 0] = 0.0  # one unit pair of L2/3E -> L2/3E disconnected
    with pytest.raises(SpecError, match="fixed_total_number"):
        fixed_total_pathways(c.with_weights(W), c.spec.spiking)
