"""Our microcircuit against NEST 3.10 running the same network (cortex_resnet.spiking.nest_ref).

Default suite: the NEST network is the published one at a small scale (synapse counts, weights,
delays, DC currents, background: checked against model/pd14.py's numbers). Slow (`make validate`):
Brian2 vs NEST side by side at scale 0.1 over several seeds (the community's reference-data
protocol: per-population rate, CV and correlation distributions, KS distances within the seed
spread), and NEST at full scale against its published rates. Skipped where NEST is missing.
"""

from __future__ import annotations

import numpy as np
import pytest

from cortex_resnet.model import pd14 as P
from cortex_resnet.spiking.nest_ref import build_nest, nest_available

pytestmark = pytest.mark.skipif(not nest_available(), reason="NEST (validate extra) not installed")


def test_nest_network_is_the_published_one_downscaled():
    from cortex_resnet.spiking.nest_ref import import_nest

    nest = import_nest()
    net = P.pd14(0.02)
    pops, recs = build_nest(nest, net, seed=3)
    assert [len(p) for p in pops] == net.N.tolist()
    # the neurons are one contiguous block, devices after it: a recorder created between the
    # populations made NEST's recurrent Connect 4-5x slower (scale 1 never finished connecting)
    ids = np.concatenate([np.asarray(p.global_id) for p in pops])
    np.testing.assert_array_equal(ids, np.arange(1, ids.size + 1))
    assert min(int(r.global_id) for r in recs) > ids.size
    np.testing.assert_allclose([p.get("I_e")[0] for p in pops], net.dc_pA, rtol=1e-12)
    for i, j in ((0, 2), (0, 1), (4, 5), (6, 7)):
        conns = nest.GetConnections(pops[j], pops[i])
        assert len(conns) == round(net.K[i, j] * net.N[i])  # fixed_total_number: K N_post
        w = np.asarray(conns.get("weight"))
        d = np.asarray(conns.get("delay"))
        assert np.all(np.sign(w) == np.sign(net.psc_pA[i, j]))  # redrawn across 0: Dale's sign
        # 10 % normal spread: mean within 4 standard errors, sd within 20 %
        assert abs(w.mean() / net.psc_pA[i, j] - 1) < 4 * 0.1 / np.sqrt(w.size)
        assert w.std() / abs(net.psc_pA[i, j]) == pytest.approx(0.1, rel=0.2)
        mean_d = P.DELAY_EXC_MS if j % 2 == 0 else P.DELAY_INH_MS
        assert d.min() >= 0.1 - 1e-9 and abs(d.mean() / mean_d - 1) < 0.15


def _side_by_side(rule: str, scale: float = 0.1, duration_ms: float = 1000.0, seeds=(1, 2, 3)):
    from cortex_resnet.spiking.nest_ref import run_nest
    from cortex_resnet.spiking.pd14_compare import population_statistics, run_brian2

    nest = [run_nest(scale, duration_ms, seed=s, rule=rule) for s in seeds]
    ours = [run_brian2(scale, duration_ms, seed=s) for s in seeds]
    return [population_statistics(r) for r in ours], [population_statistics(r) for r in nest]


@pytest.mark.slow
def test_brian2_matches_nest_at_scale_01():
    """Brian2 vs NEST on the same network (PD14's fixed total number per population pair with
    multapses, in both), scale 0.1 (7,716 neurons), 3 seeds x 1 s each, rates over 0.2-1 s.

    Per population: the mean rate within 3 combined seed standard deviations + 10 % of NEST's
    (the 10 %: systematic differences of the two integrators -- NEST's exact propagator vs
    Brian2's Euler step at 0.1 ms -- and of the background's timing); the KS distance of the
    per-neuron rate, CV and correlation distributions within the largest KS distance between
    two NEST seeds + 0.1 (the community protocol's 'within seed spread', with the slack of 3
    seeds: a KS distance between samples of ~500 values has a standard error of ~0.03)."""
    from cortex_resnet.spiking.pd14_compare import ks_table

    ours, ref = _side_by_side("fixed_total_number")
    ks = ks_table(ours, ref)
    for name in P.POPULATIONS:
        a = np.array([s[name]["rate_hz"].mean() for s in ours])
        b = np.array([s[name]["rate_hz"].mean() for s in ref])
        tol = 3 * np.hypot(a.std(ddof=1), b.std(ddof=1)) + 0.1 * b.mean()
        assert abs(a.mean() - b.mean()) < tol, (name, a.mean(), b.mean(), tol)
        for stat, d in ks[name].items():
            if np.isfinite(d["cross"]):
                assert d["cross"] <= d["within_max"] + 0.1, (name, stat, d)


@pytest.mark.slow
def test_nest_full_scale_against_published_rates():
    """NEST at scale 1 (77,169 neurons; ~14 GB, minutes) for 0.5 s: every population within
    25 % of NEST's published full-scale rates (network_params.py; 0.5 s and one seed: the
    low-rate L2/3E, 0.94 Hz, has a few-% sampling error; the published run is 12 MPI
    processes, this one 4 threads on the machine's cores)."""
    import resource
    import time

    from cortex_resnet.spiking.nest_ref import run_nest

    t0 = time.perf_counter()
    run = run_nest(1.0, 700.0, seed=1, threads=4)  # NEST: <= 134 M connections per thread
    wall = time.perf_counter() - t0
    rates = np.array([np.count_nonzero(run.spikes[k][1] >= 200.0) / run.sizes[k] / 0.5 for k in P.POPULATIONS])
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"NEST scale 1: wall {wall:.0f} s ({run.timing}), peak RSS {rss_gb:.1f} GB, rates {rates.round(3)}")
    np.testing.assert_allclose(rates, P.NEST_FULL_SCALE_RATES_HZ, rtol=0.25)

