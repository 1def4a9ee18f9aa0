"""Baselines: the published shapes and parameter counts, one readout step, seeded initialisation."""

from __future__ import annotations

import pytest
import torch

from cortex_resnet.training.baselines import PUBLISHED, build_baseline, known_baselines, param_count
from cortex_resnet.errors import SpecError, UnknownNameError


@pytest.mark.parametrize("name,params,expected,rel", [
    # He et al. 2016, Table 6: ResNet-20 0.27M, ResNet-56 0.85M parameters (2 significant digits)
    ("resnet", {"depth": 20}, 0.27e6, 0.01),
    ("resnet", {"depth": 56}, 0.85e6, 0.01),
    # Greydanus' MNIST-1D models (models.py shapes on 40 samples): exact counts by construction
    ("logreg", {}, 40 * 10 + 10, 0.0),
    ("mlp", {}, (40 * 100 + 100) + (100 * 100 + 100) + (100 * 10 + 10), 0.0),
    ("cnn", {}, (1 * 25 * 5 + 25) + 2 * (25 * 25 * 3 + 25) + (125 * 10 + 10), 0.0),
    ("gru", {}, 2 * 3 * (6 * 1 + 6 * 6 + 2 * 6) + (2 * 6 * 40 * 10 + 10), 0.0),
])
def test_parameter_counts(name, params, expected, rel):
    shape = (3, 32, 32) if name == "resnet" else (1, 40)
    model = build_baseline(name, shape, 10, params)
    assert param_count(model) == pytest.approx(expected, rel=rel)


@pytest.mark.parametrize("name,shape", [("logreg", (1, 40)), ("mlp", (1, 8, 8)), ("cnn", (1, 40)),
                                        ("cnn", (2, 10, 10)), ("gru", (1, 40)),
                                        ("resnet", (3, 32, 32))])
def test_one_readout_step(name, shape):
    model = build_baseline(name, shape, 7, {"depth": 8} if name == "resnet" else {})
    assert model(torch.zeros(4, *shape)).shape == (1, 4, 7)


def test_seeded_initialisation_leaves_global_rng_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    a = build_baseline("cnn", (1, 40), 10, seed=3)
    assert torch.equal(torch.rand(3), expected)
    b = build_baseline("cnn", (1, 40), 10, seed=3)
    c = build_baseline("cnn", (1, 40), 10, seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.body.conv1.weight, c.body.conv1.weight)


def test_block_adds_identity_only_when_residual():
    """Residual block: relu(F(h) + h); plain block of the same weights: relu(F(h))."""
    block = build_baseline("resnet", (3, 32, 32), 10, {"depth": 8}).body.blocks[0].eval()
    h = torch.randn(2, 16, 32, 32, generator=torch.Generator().manual_seed(1))
    f = block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(h)))))
    torch.testing.assert_close(block(h), torch.relu(f + h))
    block.residual = False
    torch.testing.assert_close(block(h), torch.relu(f))


def test_option_a_shortcut_pads_channels():
    block = build_baseline("resnet", (3, 32, 32), 10, {"depth": 8}).body.blocks[1]
    assert block.stride == 2 and block.pad == 16
    assert block(torch.zeros(1, 16, 32, 32)).shape == (1, 32, 16, 16)


@pytest.mark.parametrize("name,params,match", [("vgg", {}, "known: cnn, gru, logreg, mlp, resnet"),
                                               ("mlp", {"width": 3}, "allowed: hidden"),
                                               ("resnet", {"depth": 21}, "6n \\+ 2"),
                                               ("gru", {}, "sequence inputs")])
def test_bad_baselines(name, params, match):
    shape = (3, 32, 32) if name in ("resnet", "gru") else (1, 40)
    with pytest.raises((SpecError, UnknownNameError), match=match):
        build_baseline(name, shape, 10, params)


def test_published_numbers_are_the_papers():
    got = {p.baseline: p.test_accuracy for p in PUBLISHED["mnist1d"]}
    assert got == {"logreg": 0.32, "mlp": 0.68, "cnn": 0.94, "gru": 0.91}  # Greydanus 2020
    assert [p.test_accuracy for p in PUBLISHED["cifar10"]] == [0.9125, 0.9303]  # He et al. 2016
    assert set(got) <= set(known_baselines())
