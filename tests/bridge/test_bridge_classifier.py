"""CircuitClassifier: learned input projection (dense / conv), E-only anytime readout."""

from __future__ import annotations

import pytest
import torch

from cortex_resnet.bridge import CircuitClassifier, unroll
from cortex_resnet.errors import SpecError, UnknownNameError

from tests.bridge_cases import DT_MS, case_circuit, one_thread  # noqa: F401 (autouse)

K = 6


def _x(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_dense_logits_at_every_step_read_from_E_only():
    c = case_circuit("dense_relu")
    clf = CircuitClassifier(unroll(c, K, DT_MS, dtype=torch.float64), (10,), n_classes=4)
    x = _x((5, 10))
    logits = clf(x)
    assert logits.shape == (K, 5, 4)
    assert clf.encode(x).shape == (5, c.n_inputs)
    states = clf.net(clf.encode(x))
    assert torch.equal(logits, clf.readout(states[1:, :, : c.n_E]))
    assert clf.readout_weight.shape == (4, c.n_E)  # no path from I units to the output


def test_readout_ignores_inhibitory_rates():
    c = case_circuit("dense_relu")
    clf = CircuitClassifier(unroll(c, K, DT_MS, dtype=torch.float64), (10,), n_classes=3)
    r = torch.rand(2, c.n_units, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    clf.readout(r[:, : c.n_E]).sum().backward()
    assert torch.all(r.grad[:, c.n_E:] == 0) and torch.any(r.grad[:, : c.n_E] != 0)


@pytest.mark.parametrize("case,in_shape", [("spatial_relu", (2, 40)), ("spatial2d_relu", (3, 12, 12))])
def test_conv_projection_onto_the_map(case, in_shape):
    c = case_circuit(case)
    clf = CircuitClassifier(unroll(c, K, DT_MS, dtype=torch.float64), in_shape, n_classes=5, input_projection="conv", kernel_size=3)
    x = _x((4,) + in_shape)
    u = clf.encode(x)
    assert u.shape == (4, c.n_inputs)
    assert clf(x).shape == (K, 4, 5)


def test_conv_projection_is_translation_equivariant():
    """Data at the map's resolution: shifting the signal shifts the drive (away from the zero-padded edges)."""
    c = case_circuit("spatial_relu")  # 16 sites, topographic input
    clf = CircuitClassifier(unroll(c, K, DT_MS, dtype=torch.float64), (2, 16), n_classes=3, input_projection="conv", kernel_size=3)
    x = _x((2, 2, 16))
    shifted = clf.encode(torch.roll(x, shifts=1, dims=-1))
    expected = torch.roll(clf.encode(x), shifts=1, dims=-1)
    assert torch.allclose(shifted[:, 2:-2], expected[:, 2:-2], rtol=0, atol=1e-14)


def test_training_step_reaches_every_part():
    c = case_circuit("dense_relu")
    clf = CircuitClassifier(unroll(c, K, DT_MS, dtype=torch.float64), (10,), n_classes=3)
    y = torch.tensor([0, 1, 2, 1])
    logits = clf(_x((4, 10)))
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.repeat(K)).backward()
    for name, p in clf.named_parameters():
        assert p.grad is not None and float(p.grad.abs().max()) > 0, name


def test_init_is_seeded_and_leaves_the_global_rng_alone():
    net = unroll(case_circuit("dense_relu"), K, DT_MS, dtype=torch.float64)
    state = torch.get_rng_state()
    a = CircuitClassifier(net, (10,), 3, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    b = CircuitClassifier(net, (10,), 3, seed=5)
    assert torch.equal(a.encoder_weight, b.encoder_weight)
    assert not torch.equal(a.encoder_weight, CircuitClassifier(net, (10,), 3, seed=6).encoder_weight)


def test_steady_logits():
    c = case_circuit("dense_relu")
    clf = CircuitClassifier(unroll(c, K, DT_MS, dtype=torch.float64), (10,), n_classes=3)
    out = clf.steady_logits(_x((2, 10)))
    assert out.shape == (2, 3)
    out.sum().backward()
    assert clf.net.W.theta_T.grad is not None


@pytest.mark.parametrize("kwargs,field", [
    ({"input_projection": "conv"}, "input_projection"),  # dense circuit
    ({"in_shape": ()}, "in_shape"), ({"n_classes": 1}, "n_classes")])
def test_bad_classifier_options(kwargs, field):
    net = unroll(case_circuit("dense_relu"), K, DT_MS, dtype=torch.float64)
    args = {"in_shape": (2, 8), "n_classes": 3, **kwargs}
    with pytest.raises(SpecError) as err:
        CircuitClassifier(net, **args)
    assert err.value.field == field


def test_conv_needs_matching_spatial_axes():
    net = unroll(case_circuit("spatial_relu"), K, DT_MS, dtype=torch.float64)
    with pytest.raises(SpecError, match="spatial axes"):
        CircuitClassifier(net, (1, 8, 8), 3, input_projection="conv")


def test_unknown_projection():
    with pytest.raises(UnknownNameError, match="conv, dense"):
        CircuitClassifier(unroll(case_circuit("dense_relu"), K, DT_MS, dtype=torch.float64), (4,), 3, input_projection="attention")


def test_wrong_example_shape():
    clf = CircuitClassifier(unroll(case_circuit("dense_relu"), K, DT_MS, dtype=torch.float64), (10,), 3)
    with pytest.raises(SpecError, match="x"):
        clf(_x((2, 11)))
