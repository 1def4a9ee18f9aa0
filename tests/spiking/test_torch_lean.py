"""The lean synapse graph (spiking/lean_graph.py) against the standard draw and the analytic
Bernoulli-graph moments, and the torch engine on it.

References: a Bernoulli(p) graph has in- and out-degrees Binomial(N, p) (mean N p, variance
N p (1 - p)); the standard draw (synapses.py + spread.py) for the weight and delay distributions
(the same redrawn normals); tolerances are 4 standard errors of the sample statistic.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from cortex_resnet.errors import ResourceError, SpecError
from cortex_resnet.model import pd14 as P
from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.model.spec import parse_spec
from cortex_resnet.spiking.build import build_plan
from cortex_resnet.spiking.delay_csr import csr_from_synapses
from cortex_resnet.spiking.lean_graph import _probabilities
from cortex_resnet.spiking.pd14 import circuit_data, mean_field_rates
from cortex_resnet.spiking.pd14_compare import run_torch, summary
from cortex_resnet.spiking.torch_engine import TorchEngine
from tests.spiking.test_pd14 import _assert_pd14_state

SCALE, POOL = 0.05, 20  # the PD14 state run (slow)
GRAPH_SCALE, GRAPH_POOL = 0.02, 8  # the graph statistics (0.3 M synapses; Bernoulli pairs, not PD14's fixed total)


def _pd14(scale: float = SCALE, pool: int = POOL, **changes):
    spec = parse_spec(dict(circuit_data(scale, "poisson", pool_size=pool), name="pd14"))
    return build_circuit(spec.replace(**changes) if changes else spec)


@pytest.fixture(scope="module")
def graphs():
    c = _pd14(GRAPH_SCALE, GRAPH_POOL, **{"spiking.synapse.fixed_total_number": False})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        std, lean = (build_plan(c, "constant:amp=0.0", 10.0, engine="torch", graph=g) for g in ("standard", "lean"))
    n_exc = int(std.is_E.sum())
    return c, csr_from_synapses(std.synapses, std.delays_ms, 0.0, std.n, n_exc, std.dt_ms), lean.graph, std


def _pairs(g) -> tuple[np.ndarray, np.ndarray]:
    return np.repeat(np.arange(g.n), g.out_degree()), g.post.astype(np.int64)


def test_lean_graph_is_compact_and_delay_sorted(graphs):
    _, std, lean, plan = graphs
    assert lean.post.dtype == np.int32 and lean.w.dtype == np.float32 and lean.nbytes < 8.5 * lean.nnz + 8 * lean.dptr.size
    assert np.all(np.diff(lean.dptr, axis=1) >= 0) and lean.dptr[-1, -1] == lean.nnz
    assert (lean.d_min, lean.d_max) == pytest.approx((std.d_min, std.d_max), abs=3)
    assert plan.graph is None and np.all(lean.w > 0)


def test_lean_and_standard_degrees_follow_the_bernoulli_moments(graphs):
    """Per (post, pre) population pair: mean in-degree within 4 s.e. of N_pre p, its variance within
    4 s.e. (from the binomial's 4th central moment; where >= 200 neurons with mean >= 2, so that
    the sample variance is near-normal) of N_pre p (1 - p), for both draws; mean out-degrees likewise."""
    c, std, lean, plan = graphs
    M = plan.sspec.pool_size
    ranges = {k: (sl.start * M, sl.stop * M) for k, sl in c.layout.items()}
    probs = _probabilities(c, plan.sspec)  # (post unit, pre unit): 0 where the pathway is absent
    for g in (std, lean):
        pre, post = _pairs(g)
        for a, (a0, a1) in ranges.items():
            for b, (b0, b1) in ranges.items():
                p = probs[c.layout[a].start, c.layout[b].start]
                sel = (pre >= b0) & (pre < b1) & (post >= a0) & (post < a1)
                indeg = np.bincount(post[sel] - a0, minlength=a1 - a0)
                mean, var = (b1 - b0) * p, (b1 - b0) * p * (1 - p)
                assert abs(indeg.mean() - mean) < 4 * np.sqrt(var / indeg.size) + 1e-9, (a, b)
                N, nb = indeg.size, b1 - b0  # s.e. of a sample variance from the binomial 4th moment
                mu4 = var * (1 + 3 * (nb - 2) * p * (1 - p))
                if N >= 200 and mean >= 2:  # the sample variance near-normal
                    assert abs(indeg.var(ddof=1) - var) < 4 * np.sqrt((mu4 - var**2 * (N - 3) / (N - 1)) / N), (a, b)
                outdeg = np.bincount(pre[sel] - b0, minlength=b1 - b0)
                m_out = (a1 - a0) * p
                assert abs(outdeg.mean() - m_out) < 4 * np.sqrt(m_out * (1 - p) / outdeg.size) + 1e-9, (a, b)


def test_lean_weights_and_delays_have_the_standard_distributions(graphs):
    """Per presynaptic population: weight mean and sd, delay (steps) mean and sd within 4 s.e.
    of the standard draw's (s.e. of a mean sd/sqrt(n); of an sd, sd/sqrt(2 n))."""
    c, std, lean, plan = graphs
    M = plan.sspec.pool_size
    for b, sl in c.layout.items():
        stats = []
        for g in (std, lean):
            lo, hi = int(g.dptr[sl.start * M, 0]), int(g.dptr[sl.stop * M - 1, -1])
            w, d = g.w[lo:hi].astype(np.float64), g.delays()[lo:hi].astype(np.float64)
            stats.append((w, d))
        for x, y in zip(*stats):
            se = np.sqrt(x.var() / x.size + y.var() / y.size)
            assert abs(x.mean() - y.mean()) < 4 * se, b
            assert abs(x.std() - y.std()) < 4 * (x.std() / np.sqrt(2 * x.size) + y.std() / np.sqrt(2 * y.size)), b


@pytest.mark.slow
def test_torch_lean_pd14_keeps_the_state():
    """The torch engine (float32) on the lean graph at scale 0.05, 300 ms (rates over 100-300 ms):
    PD14's state (the assertion of tests/spiking/test_pd14.py's Brian2 run, within a factor 4 of
    the 8-population mean field at this scale)."""
    run = run_torch(SCALE, 300.0, seed=1, pool_size=POOL, graph="lean")
    rates = {k: v["rate_hz"] for k, v in summary([run], 100.0).items()}
    mf = dict(zip(P.POPULATIONS, np.asarray(mean_field_rates(SCALE).rates_hz, float)))
    _assert_pd14_state(rates, mf, 4.0)


def test_lean_graph_refusals_name_the_field(monkeypatch):
    with pytest.raises(SpecError) as err:
        build_plan(_pd14(), "constant:amp=0.0", 10.0, engine="brian2", graph="lean")
    assert err.value.field == "graph"
    with pytest.raises(SpecError) as err:
        build_plan(_pd14(), "constant:amp=0.0", 10.0, engine="torch", graph="compact")
    assert err.value.field == "graph"
    with pytest.raises(SpecError) as err:
        build_plan(_pd14(**{"spiking.synapse.fixed_indegree": True, "spiking.synapse.fixed_total_number": False}),
                   "constant:amp=0.0", 10.0, engine="torch", graph="lean")
    assert err.value.field == "spiking.synapse.fixed_indegree"
    monkeypatch.setenv("CORTEX_RESNET_MEMORY_BUDGET_GB", "0.001")
    with pytest.raises(ResourceError, match="lean synapse graph"):
        build_plan(_pd14(), "constant:amp=0.0", 10.0, engine="torch", graph="lean")


def test_poisson_inversion_has_the_poisson_distribution():
    """Counts by CDF inversion (compiled and NumPy paths bit-identical) against the Poisson pmf
    (lambda 0.2, 1.7, 2.9: PD14's per-step background): every count's frequency within 4 s.e. of
    its probability (400,000 draws each)."""
    from scipy.stats import poisson

    from cortex_resnet.spiking import delivery_kernel as dk

    rng = np.random.default_rng(7)
    lam = np.repeat(np.array([0.2, 1.7, 2.9], np.float32), 400_000)
    u = rng.random(lam.size)
    fast, slow = np.empty_like(lam), np.empty_like(lam)
    dk.poisson_inversion(u, lam, fast)
    assert dk.load_kernel(module=True) is not None
    real = dk.load_kernel
    try:
        dk.load_kernel = lambda module=False: None
        dk.poisson_inversion(u, lam, slow)
    finally:
        dk.load_kernel = real
    np.testing.assert_array_equal(fast, slow)
    for m in (0.2, 1.7, 2.9):
        x = fast[lam == np.float32(m)]
        for k in range(8):
            pk = poisson.pmf(k, float(np.float32(m)))
            assert abs(np.mean(x == k) - pk) < 4 * np.sqrt(pk * (1 - pk) / x.size) + 1e-12, (m, k)


def test_inversion_sampler_is_an_engine_option():
    c = _pd14(GRAPH_SCALE, GRAPH_POOL)
    plan = build_plan(c, "constant:amp=0.0", 20.0, engine="torch", graph="lean")
    a = TorchEngine(plan, dtype="float32", poisson="inversion").run(True, 3)
    b = TorchEngine(plan, dtype="float32", poisson="inversion").run(True, 3)
    np.testing.assert_array_equal(a.spike_i, b.spike_i)  # a seed gives one stream
    with pytest.raises(SpecError) as err:
        TorchEngine(plan, poisson="binomial")
    assert err.value.field == "poisson"


@pytest.mark.slow
def test_torch_lean_and_standard_rates_agree_within_the_seed_spread():
    """Torch engine (float32) on the lean vs the standard graph, PD14 at scale 0.05, 3 seeds
    (graph, initial state and input) x 0.5 s, rates over 0.2-0.5 s: per population the mean
    rates within 3 combined seed sd + 10 % (the tolerance of the Brian2-vs-NEST comparison in
    test_pd14_nest.py)."""
    seeds = (1, 2, 3)
    runs = {g: [run_torch(SCALE, 500.0, seed=s, pool_size=POOL, graph=g) for s in seeds] for g in ("standard", "lean")}
    rates = {g: np.array([[summary([r], 200.0)[k]["rate_hz"] for k in P.POPULATIONS] for r in rs])
             for g, rs in runs.items()}
    a, b = rates["lean"], rates["standard"]
    tol = 3 * np.hypot(a.std(0, ddof=1), b.std(0, ddof=1)) + 0.1 * b.mean(0)
    print("lean", a.mean(0).round(3), "standard", b.mean(0).round(3), "tol", tol.round(3))
    assert np.all(np.abs(a.mean(0) - b.mean(0)) < tol)
