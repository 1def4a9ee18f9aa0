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
    pops, _ = build_nest(nest, net, seed=3)
    assert [len(p) for p in pops] == net.N.tolist()
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
