"""Dale's law during training: signs, masks and E/I identity survive any optimiser; balanced init."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortex_resnet.bridge import DaleMatrix, balanced_weights, to_circuit, unroll
from cortex_resnet.bridge.dale import THETA_FLOOR, softplus_inverse
from cortex_resnet.errors import SpecError

from tests.bridge_cases import DT_MS, case_circuit, case_input, one_thread  # noqa: F401 (autouse)


def test_softplus_inverse_round_trip():
    m = np.concatenate([[0.0], np.logspace(-8, 3, 45)])
    back = torch.nn.functional.softplus(torch.as_tensor(softplus_inverse(m)), threshold=20.0).numpy()
    assert back[0] <= 1e-25  # an existing connection of weight 0 stays ~0 (theta floored)
    np.testing.assert_allclose(back[1:], m[1:], rtol=1e-14, atol=0)
    assert softplus_inverse(np.array([0.0]))[0] == THETA_FLOOR


@pytest.mark.parametrize("dale", ["softplus", "relu"])
def test_dale_matrix_reproduces_the_circuit(dale):
    c = case_circuit("sparse_relu")
    W = DaleMatrix(c.W, c.population, c.mask, parametrisation=dale)()[0].detach().numpy()
    np.testing.assert_allclose(W, c.W, rtol=1e-14, atol=1e-300)
    assert np.all(W[~c.mask] == 0)


def test_mixed_sign_column_is_refused():
    c = case_circuit("dense_relu")
    W = c.W.copy()
    W[3, 1] = -0.5  # unit 1 is excitatory: its column must be >= 0
    with pytest.raises(SpecError) as err:
        DaleMatrix(W, c.population)
    assert err.value.field == "W[:, 1]" and "Dale" in err.value.allowed


def test_mixed_sign_weights_refused_by_the_circuit_too():
    c = case_circuit("dense_relu")
    W = c.W.copy()
    W[0, -1] = 0.3  # the last unit is inhibitory
    with pytest.raises(SpecError, match="I units must be <= 0"):
        c.with_weights(W=W)


@pytest.mark.parametrize("dale", ["softplus", "relu"])
@pytest.mark.parametrize("case,variant", [("dense_relu", "tied"), ("sparse_relu", "untied"),
                                          ("spatial_relu", "tied"), ("spatial2d_relu", "gated")])
def test_dale_and_masks_hold_after_100_large_steps(case, variant, dale):
    """Adam at lr 1 with a loss that pulls every weight across zero: signs and masks survive."""
    c = case_circuit(case)
    W_before, B_before = c.W.copy(), c.B.copy()
    net = unroll(c, 8, DT_MS, variant=variant, dale=dale, dtype=torch.float64)
    u = case_input(case)
    gen = torch.Generator().manual_seed(3)
    target = torch.rand(u.shape[0], c.n_units, generator=gen, dtype=torch.float64)
    opt = torch.optim.Adam(net.parameters(), lr=1.0)
    anti_dale = -torch.as_tensor(np.where(c.population == "E", 1.0, -1.0))  # pushes E negative, I positive
    start = net.W().detach().clone()
    for _ in range(100):
        opt.zero_grad()
        W = net.W()
        loss = ((net(u)[-1] - target) ** 2).mean() + (W * anti_dale).sum()
        loss.backward()
        opt.step()
    W = net.W().detach().numpy()
    e = c.population == "E"
    assert np.all(W[:, :, e] >= 0) and np.all(W[:, :, ~e] <= 0)
    assert np.all(W[:, ~c.mask] == 0)
    assert float((net.W().detach() - start).abs().max()) > 0.01  # it did train
    assert np.all(net.input_projection().detach().numpy()[c.B == 0] == 0)  # topographic input stays so
    back = to_circuit(net)  # the Circuit constructor checks Dale's law again
    assert list(back.population) == list(c.population)
    np.testing.assert_array_equal(c.W, W_before)  # the source circuit is never written to
    np.testing.assert_array_equal(c.B, B_before)


def test_balanced_weights_have_no_outlier():
    c = case_circuit("dense_relu", **{"populations.E.n": 160, "populations.I.n": 40})
    rng = np.random.default_rng(0)
    W = balanced_weights(c.population, c.mask, rng, radius=0.8)
    e = c.population == "E"
    assert np.all(W[:, e] >= 0) and np.all(W[:, ~e] <= 0)
    np.testing.assert_allclose(W.sum(axis=1), 0.0, atol=1e-12)  # exact E/I balance per row
    eig = np.abs(np.linalg.eigvals(W))
    # circular law: the spectrum fills a disc of radius 0.8; the edge fluctuates by a few % at N = 200
    assert eig.max() <= 0.8 * 1.15
    # the circuit's own (unbalanced) W: a mean-field outlier far outside its bulk
    bulk = np.linalg.norm(c.W - c.W.mean(axis=0)) / np.sqrt(c.n_units)
    assert np.abs(np.linalg.eigvals(c.W)).max() > 3 * bulk


def test_balanced_weights_respect_a_sparse_mask():
    c = case_circuit("sparse_relu")
    W = balanced_weights(c.population, c.mask, np.random.default_rng(1))
    assert np.all(W[~c.mask] == 0)
    np.testing.assert_allclose(W.sum(axis=1), 0.0, atol=1e-12)


def test_balancing_needs_inhibitory_inputs():
    c = case_circuit("dense_relu")
    mask = c.mask.copy()
    mask[:, c.n_E:] = False
    with pytest.raises(SpecError, match="both excitatory and inhibitory"):
        balanced_weights(c.population, mask, np.random.default_rng(0))


def test_unroll_balanced_init_draws_each_untied_step():
    c = case_circuit("dense_relu")
    net = unroll(c, 3, DT_MS, variant="untied", init="balanced", init_radius=0.5, seed=4, dtype=torch.float64)
    W = net.W().detach().numpy()
    assert not np.allclose(W[0], W[1])
    np.testing.assert_allclose(W.sum(axis=2), 0.0, atol=1e-12)
    again = unroll(c, 3, DT_MS, variant="untied", init="balanced", init_radius=0.5, seed=4, dtype=torch.float64).W().detach().numpy()
    np.testing.assert_array_equal(W, again)  # seeded


def _shift(n: int, sites: int) -> np.ndarray:
    """Permutation moving every unit one site along a 1-D map (within its channel)."""
    P = np.zeros((n, n))
    i = np.arange(n)
    P[(i // sites) * sites + (i % sites + 1) % sites, i] = 1
    return P


def test_conv_recurrence_stays_a_convolution_after_training():
    c = case_circuit("spatial_relu")  # weight_cv 0, p 1: translation invariant
    net = unroll(c, 8, DT_MS, recurrence="conv", dtype=torch.float64)
    u = case_input("spatial_relu")
    opt = torch.optim.Adam(net.parameters(), lr=0.5)
    for _ in range(100):
        opt.zero_grad()
        ((net(u)[-1] - 1.0) ** 2).mean().backward()
        opt.step()
    W = net.W()[0].detach().numpy()
    assert np.abs(W - c.W).max() > 0.01  # it trained
    P = _shift(c.n_units, 16)
    np.testing.assert_allclose(P @ W @ P.T, W, rtol=0, atol=1e-15)  # still translation invariant
    e = c.population == "E"
    assert np.all(W[:, e] >= 0) and np.all(W[:, ~e] <= 0) and np.all(W[~c.mask] == 0)
    n_kernel = int(net.W.kernel_mask.sum())
    assert net.param_count() == n_kernel + int((c.B != 0).sum()) + c.n_units
    assert n_kernel < int(c.mask.sum()) / 10  # shared: far fewer numbers than connections


@pytest.mark.parametrize("case,match", [("spatial2d_relu", "translation-invariant"), ("dense_relu", "spatial")])
def test_conv_recurrence_needs_a_translation_invariant_map(case, match):
    with pytest.raises(SpecError, match=match) as err:
        unroll(case_circuit(case), 3, DT_MS, recurrence="conv", dtype=torch.float64)
    assert err.value.field == "recurrence"
