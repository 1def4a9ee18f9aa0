"""``bench conv``: the convolutional recurrence against the dense matrices it replaces (small case)."""

from __future__ import annotations

from cortex_resnet.bench import BENCHES
from cortex_resnet.bench.conv import conv_case, recurrence_cost


def test_conv_bench_counts_and_agrees():
    assert BENCHES["conv"] == "cortex_resnet.bench.conv"
    c = conv_case("mnist1d_ring_tied")  # 40 sites x (8 E + 2 I) channels
    cost = recurrence_cost("mnist1d_ring_tied", quick=True)
    assert cost["dense"]["params"] == c.n_units ** 2 == 160_000  # one weight per (post, pre) pair
    assert cost["conv"]["params"] == cost["gather"]["params"] == 10 * 10 * 40  # a kernel per channel pair
    assert cost["dense"]["params_effective"] == int(c.mask.sum())
    assert cost["conv"]["params_effective"] < cost["conv"]["params"]  # only the offsets the kernels reach
    # the gather keeps the N x N W^T (and its index) for backward; the convolution only the compact kernels
    assert cost["gather"]["memory_bytes"] > cost["conv"]["memory_bytes"]
    r_conv, r_gather = cost["conv"]["final_mean_rate"], cost["gather"]["final_mean_rate"]
    assert r_conv > 0 and abs(r_conv - r_gather) <= 1e-5 * r_gather
    assert all(v["time_s"] > 0 for v in cost.values())
