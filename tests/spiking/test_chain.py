"""The stage chain of an untied net: its rate steady state IS the net's r_K (independent Euler recursion)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortex_resnet.bridge import to_circuit, unroll
from cortex_resnet.errors import SpecError
from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.model.fixedpoint import steady_state
from cortex_resnet.spiking.chain import chain_circuit, stage_coefficients
from cortex_resnet.spiking.scoring import spiking_twin
from tests.bridge_cases import case_spec

K = 5


def _untied(input_mode: str):
    """An untied net's circuit whose K step matrices differ (scaled per step: Dale's law kept)."""
    net = unroll(build_circuit(case_spec("dense_relu")), K, 1.0, variant="untied", input_mode=input_mode,
                 dtype=torch.float64)
    c = to_circuit(net)
    scale = np.linspace(0.6, 1.4, K)[:, None, None]
    return c.with_weights(step_weights=c.step_weights * scale)


def _chain_steady_state(twin, u: np.ndarray) -> np.ndarray:
    """The chain's fixed point by Newton, started from one relu sweep per stage (the chain is
    feed-forward across stages, so the sweep is already the fixed point up to round-off; plain
    Newton from zero can cycle between relu kinks on this piecewise-linear system)."""
    c = twin.circuit
    drive = u @ c.B.T + c.b
    r = np.zeros_like(drive)
    for _ in range(twin.n_stages + 1):
        r = np.maximum(r @ c.W.T + drive, 0.0)
    return steady_state(c, u, r0=torch.as_tensor(r)).numpy()


def _euler(c, u: np.ndarray, pulse: bool) -> np.ndarray:
    """The untied net's recursion written out (NumPy): r_{k+1} = (1 - a) r_k + a relu(W_k r_k + drive)."""
    a = 1.0 / c.tau_ms  # dt = 1 ms
    drive = u @ c.B.T + c.b
    r = np.maximum(drive, 0.0) if pulse else np.zeros_like(drive)
    if pulse:
        drive = np.broadcast_to(c.b, drive.shape)
    for Wk in c.step_weights:
        r = (1 - a) * r + a * np.maximum(r @ Wk.T + drive, 0.0)
    return r


@pytest.mark.parametrize("input_mode", ["sustained", "pulse"])
def test_chain_steady_state_is_the_nets_last_step(input_mode):
    c = _untied(input_mode)
    twin = chain_circuit(c)
    S = K + (input_mode == "pulse")
    assert twin.n_stages == S and twin.circuit.n_units == S * c.n_units
    assert twin.circuit.step_weights is None and twin.circuit.n_E == S * c.n_E
    u = np.random.default_rng(0).normal(size=(6, c.n_inputs))
    ss = _chain_steady_state(twin, u)
    expected = _euler(c, u, input_mode == "pulse")
    assert np.abs(expected).max() > 0.1  # not a trivial (silent) case
    np.testing.assert_allclose(ss @ twin.combine.T, expected, rtol=1e-10, atol=1e-12)  # float64 round-off


def test_chain_matches_the_unrolled_net_forward():
    net = unroll(build_circuit(case_spec("dense_relu")), K, 1.0, variant="untied", dtype=torch.float64)
    c = to_circuit(net)
    twin = chain_circuit(c)
    u = torch.as_tensor(np.random.default_rng(1).normal(size=(4, c.n_inputs)))
    with torch.no_grad():
        rK = net(u)[-1].numpy()
    np.testing.assert_allclose(_chain_steady_state(twin, u.numpy()) @ twin.combine.T, rK,
                               rtol=1e-10, atol=1e-12)


def test_stage_coefficients_sum_to_the_leaky_integral():
    # sustained: sum_i c_{k,i} = 1 - (1 - a)^k (the weight a leaky integrator gives a constant); pulse: 1
    a = np.array([0.1, 0.5, 1.0])
    C = stage_coefficients(a, 4, pulse=False)
    np.testing.assert_allclose(C.sum(1), 1 - (1 - a[None]) ** np.arange(5)[:, None], rtol=1e-14)
    np.testing.assert_allclose(stage_coefficients(a, 4, pulse=True).sum(1), 1.0, rtol=1e-14)
    assert C[4, 3, 2] == 1.0 and C[4, :3, 2].sum() == 0.0  # alpha = 1 (plain): only the last stage


def test_dale_and_feedforward_structure():
    twin = chain_circuit(_untied("sustained"))
    idx = twin.index
    W = twin.circuit.W
    for q in range(K):  # no stage listens to itself or to a later stage
        later = np.concatenate([idx[p] for p in range(q, K)])
        assert not W[np.ix_(idx[q], later)].any()
    assert (twin.combine >= 0).all()


def test_spiking_twin_of_a_tied_circuit_is_itself():
    c = build_circuit(case_spec("dense_relu"))
    run, combine = spiking_twin(c)
    assert run is c and np.array_equal(combine, np.eye(c.n_units))


def test_a_tied_circuit_is_refused():
    with pytest.raises(SpecError, match="step_weights"):
        chain_circuit(build_circuit(case_spec("dense_relu")))
