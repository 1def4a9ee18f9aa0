"""Conv E/I circuits (bridge/conv.py, DaleConv's convolution): equal to the dense gather they
replace, to the rate simulator (the exactness contract), Dale's law on every kernel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortex_resnet.bridge import unroll
from cortex_resnet.bridge.check import check_unroll, simulator_trajectory
from cortex_resnet.bridge.conv import ConvChainClassifier, area_circuit
from cortex_resnet.errors import SpecError
from cortex_resnet.model.conv_spec import ConvAreaSpec, area_sizes
from cortex_resnet.model.spec import parse_spec

from tests.bridge_cases import DT_MS, case_circuit, case_input, one_thread  # noqa: F401 (autouse)

AREA = parse_spec({
    "name": "area", "seed": 3,
    "populations": {"E": {"n": 8, "tau_ms": 10.0, "transfer": {"name": "relu"}},
                    "I": {"n": 8, "tau_ms": 5.0, "transfer": {"name": "relu"}}},
    "connectivity": {"kind": "spatial", "map_shape": [8], "sigma_E": 1.0, "sigma_I": 1.5,
                     "J_EE": 0.5, "J_EI": 1.0, "J_IE": 1.0, "J_II": 0.5},
    "input": {"n_inputs": 2, "projection": "by_population"},
    "bias": {"E": 0.1, "I": 0.0},
})
CHAIN = [ConvAreaSpec(channels_E=4, channels_I=2, steps=3, stride=2, kernel_size=5),
         ConvAreaSpec(channels_E=3, channels_I=2, steps=2, stride=2, kernel_size=3)]


def _gather_run(net, u):
    """The old path: the dense W^T gathered from the kernels, one addmm per step."""
    WT = net.W.transposed()[0]
    r, d, out = net.initial_state(u), net.drive(u), []
    out.append(r)
    for k in range(net.steps):
        r = net.step(r, d, k, WT)
        out.append(r)
    return torch.stack(out)


@pytest.mark.parametrize("case,changes", [("spatial_relu", {}), ("spatial2d_relu", {"connectivity.weight_cv": 0.0})])
def test_conv_path_equals_the_dense_gather_values_and_gradients(case, changes):
    c = case_circuit(case, **changes)
    net = unroll(c, 12, DT_MS, recurrence="conv", dtype=torch.float64)
    u = case_input(case)
    conv, gather = net(u), _gather_run(net, u)
    assert float(conv.detach().abs().max()) > 0.1
    np.testing.assert_allclose(conv.detach().numpy(), gather.detach().numpy(), rtol=0, atol=1e-13)
    g_conv = torch.autograd.grad(conv[-1].square().sum(), net.W.theta_kernel)[0]
    g_gather = torch.autograd.grad(gather[-1].square().sum(), net.W.theta_kernel)[0]
    np.testing.assert_allclose(g_conv.numpy(), g_gather.numpy(), rtol=1e-10, atol=1e-13)


def test_unroll_check_on_a_conv_circuit_within_tolerance():
    c = case_circuit("spatial_relu")
    res = check_unroll(c, 40, DT_MS, case_input("spatial_relu").numpy(), recurrence="conv")
    assert res["within_tolerance"], res["max_abs_error"]
    assert res["max_abs_error"]["float64"] <= 1e-10 and res["max_rel_error"]["float32"] <= 1e-5


def _chain(norm=None, feedforward="dale", seed=0):
    return ConvChainClassifier(AREA, CHAIN, (1, 16), 3, 2.5, norm=norm, feedforward=feedforward, seed=seed,
                               dtype=torch.float64)


def test_area_sizes_follow_the_strides():
    assert area_sizes((16,), CHAIN) == [(8,), (4,)]
    assert area_sizes((40,), [ConvAreaSpec(channels_E=1, channels_I=1, stride=2)] * 3) == [(20,), (10,), (5,)]


def test_each_area_equals_the_rate_simulator():
    """Without normalisation each area is a circuit (B = I, the feedforward drive as constant input):
    the simulator's own Euler loop gives the same trajectory (<= 1e-10, float64), after training too."""
    model = _chain()
    x = torch.as_tensor(np.random.default_rng(0).normal(size=(4, 1, 16)))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(5):  # move every weight off its initial value first
        opt.zero_grad()
        model(x)[-1].square().mean().backward()
        opt.step()
    with torch.no_grad():
        per_area = model.area_trajectories(x)
    for net, (u, states) in zip(model.areas, per_area):
        assert float(states.abs().max()) > 1e-3
        ref = simulator_trajectory(area_circuit(net), u, net.steps, net.dt_ms, "sustained", torch.float64)
        assert float((states - ref).abs().max()) <= 1e-10


def test_chain_keeps_dale_and_reads_only_e():
    model = _chain(norm="batch")
    x = torch.as_tensor(np.random.default_rng(1).normal(size=(6, 1, 16)))
    opt = torch.optim.Adam(model.parameters(), lr=0.5)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    for _ in range(20):  # large steps that pull weights across zero
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x)[-1], y).backward()
        opt.step()
    assert model(x).shape == (2, 6, 3)  # anytime readout: one logit set per step of the last area
    assert bool((model.feedforward_weight(1) >= 0).all())  # E -> next area: excitatory
    for net, area in zip(model.areas, CHAIN):
        W, e = net.W()[0].detach().numpy(), net.population == "E"
        assert np.all(W[:, e] >= 0) and np.all(W[:, ~e] <= 0)
        k = net.W.conv_weights()[0].detach()  # (C_post, C_pre, window), E channels first
        assert bool((k[:, : area.channels_E] >= 0).all()) and bool((k[:, area.channels_E:] <= 0).all())
    # the readout sees the last area's E units only
    assert model.readout_weight.shape[1] == model.areas[-1].n_E
    assert model.feedforward_weight(1).shape[1] == CHAIN[0].channels_E


def test_signed_feedforward_and_bad_inputs():
    model = _chain(feedforward="signed", seed=2)
    assert bool((model.feedforward_weight(1) < 0).any())
    with pytest.raises(SpecError) as err:
        ConvChainClassifier(AREA, CHAIN, (1, 16), 3, 2.5, feedforward="mixed")
    assert err.value.field == "model.feedforward"
    with pytest.raises(SpecError) as err:
        ConvChainClassifier(AREA, CHAIN, (16,), 3, 2.5)
    assert err.value.field == "in_shape"
    with pytest.raises(SpecError) as err:
        model(torch.zeros(2, 1, 15, dtype=torch.float64))
    assert err.value.field == "x"
    dense = AREA.replace(**{"connectivity.kind": "dense"})
    with pytest.raises(SpecError) as err:
        ConvChainClassifier(dense, CHAIN, (1, 16), 3, 2.5)
    assert err.value.field == "model.circuit"
