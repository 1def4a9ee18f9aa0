"""Circuits (:mod:`cortex_resnet.model.circuit`): Dale's law, densities, kernels, row sums, balance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cortex_resnet import load_model, unroll
from cortex_resnet.errors import SpecError
from cortex_resnet.model.circuit import build_circuit, check_dale, spatial_positions
from cortex_resnet.model.spec import parse_spec
from cortex_resnet.training.experiment import load_experiment

POPS = ("E", "I")
J = {"J_EE": 1.5, "J_EI": 2.0, "J_IE": 1.2, "J_II": 1.0}


def _spec(kind="dense", n_E=80, n_I=20, seed=0, **conn):
    return parse_spec({
        "seed": seed,
        "populations": {"E": {"n": n_E, "tau_ms": 20.0}, "I": {"n": n_I, "tau_ms": 10.0}},
        "connectivity": {"kind": kind, **J, **conn},
    })


def _blocks(circuit):
    """{(post, pre): (block of W, n_pre)} with J_XY magnitudes."""
    e = circuit.is_E
    idx = {"E": e, "I": ~e}
    return {(a, b): circuit.W[np.ix_(idx[a], idx[b])] for a in POPS for b in POPS}


CONFIGS = {
    "dense": dict(kind="dense"),
    "dense_cv": dict(kind="dense", weight_cv=0.8),
    "sparse": dict(kind="sparse", p=0.1, weight_cv=0.5),
    "spatial_1d": dict(kind="spatial", map_shape=[20], n_E=40, n_I=20, sigma_E=2.0, sigma_I=3.0),
    "spatial_2d_sparse": dict(kind="spatial", map_shape=[5, 4], n_E=40, n_I=20, p=0.5, weight_cv=0.3),
    "balanced": dict(kind="sparse", p=0.3, weight_cv=0.5, balanced=True),
}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_dale_law_holds_by_construction(config):
    c = build_circuit(_spec(**CONFIGS[config]))
    assert np.all(c.W[:, c.is_E] >= 0)
    assert np.all(c.W[:, ~c.is_E] <= 0)
    assert np.all(c.W[~c.mask] == 0)  # absent connections are exactly 0
    check_dale(c.W, c.population)
    assert list(c.population) == ["E"] * c.n_E + ["I"] * c.n_I


@pytest.mark.parametrize("sign,pop", [(-1.0, "E"), (1.0, "I")])
def test_dale_violation_is_refused_naming_the_column(sign, pop):
    c = build_circuit(_spec())
    W = c.W.copy()
    j = 3 if pop == "E" else c.n_E + 3
    W[5, j] = sign * 0.1
    with pytest.raises(SpecError) as info:
        c.with_weights(W=W)
    assert info.value.field == f"W[:, {j}]"
    assert "Dale" in info.value.allowed


@pytest.mark.parametrize("p", [0.05, 0.3, 0.8])
def test_sparse_density_is_binomial(p):
    """Each connection is present with probability p independently: the count in a block of
    n = n_post n_pre candidates is Binomial(n, p); |count - n p| <= 5 sd (false alarm 6e-7)."""
    c = build_circuit(_spec("sparse", n_E=200, n_I=50, p=p, seed=4))
    e = c.is_E
    for a, ma in (("E", e), ("I", ~e)):
        for b, mb in (("E", e), ("I", ~e)):
            n = int(ma.sum() * mb.sum())
            count = int(c.mask[np.ix_(ma, mb)].sum())
            assert abs(count - n * p) <= 5 * math.sqrt(n * p * (1 - p)), (a, b, count, n * p)


@pytest.mark.parametrize("config", ["dense", "spatial_1d"])
def test_row_sums_equal_J_exactly_without_randomness(config):
    """Dense all-to-all (1/n_pre each) and spatial kernels (normalised rows), weight_cv = 0:
    every row's total input from population Y is exactly +-J_XY (float64 sums: 1e-12)."""
    c = build_circuit(_spec(**CONFIGS[config]))
    for (post, pre), block in _blocks(c).items():
        sign = 1.0 if pre == "E" else -1.0
        np.testing.assert_allclose(block.sum(axis=1), sign * J[f"J_{post}{pre}"], rtol=1e-12)


@pytest.mark.parametrize("config", ["dense_cv", "sparse", "spatial_2d_sparse"])
def test_expected_row_sums_equal_J(config):
    """With random weights/connections each row sum has mean J_XY; the average over the n_post
    rows of a block is within 5 standard errors (the standard error estimated from the rows)."""
    c = build_circuit(_spec(**CONFIGS[config]))
    for (post, pre), block in _blocks(c).items():
        sums = np.abs(block.sum(axis=1))
        se = sums.std(ddof=1) / math.sqrt(sums.size)
        assert abs(sums.mean() - J[f"J_{post}{pre}"]) <= 5 * se + 1e-12, (post, pre)


def test_balanced_rows_cancel_exactly():
    """balanced = true: each row's inhibition is rescaled to cancel its excitation: W 1 = 0."""
    c = build_circuit(_spec(**CONFIGS["balanced"]))
    exc = c.W[:, c.is_E].sum(axis=1)
    assert np.all(exc > 0)
    np.testing.assert_allclose(c.W.sum(axis=1), 0.0, atol=1e-12 * exc.max())


def _bulk_radius(W: np.ndarray, is_e: np.ndarray) -> float:
    """Circular-law radius for a block variance profile (Rajan & Abbott 2006): sqrt of the
    spectral radius of S_XY = n_Y Var(W_XY)."""
    idx = (is_e, ~is_e)
    S = np.array([[b.sum() * W[np.ix_(a, b)].var() for b in idx] for a in idx])
    return float(np.sqrt(np.max(np.abs(np.linalg.eigvals(S)))))


def test_balance_removes_the_outlier_eigenvalues():
    """J_EE = J_IE (Rajan & Abbott's condition for the per-row balance to remove the mean
    modes): balanced, every eigenvalue lies in the random bulk (max |eig| <= 1.2 R; finite-N
    edge fluctuations are O(N^-1/2) ~ 6 % at N = 250; measured 1.01-1.10 over seeds 1-6);
    unbalanced, the mean connectivity leaves an outlier far outside (measured 2.1-2.4 R;
    required >= 1.5 R)."""
    spec = parse_spec({
        "seed": 1, "populations": {"E": {"n": 200, "tau_ms": 20.0}, "I": {"n": 50, "tau_ms": 10.0}},
        "connectivity": {"kind": "sparse", "p": 0.2, "J_EE": 1.5, "J_EI": 1.0, "J_IE": 1.5, "J_II": 2.0,
                         "weight_cv": 0.5, "balanced": True}})
    bal = build_circuit(spec)
    unbal = build_circuit(spec.replace(**{"connectivity.balanced": False}))
    assert np.max(np.abs(np.linalg.eigvals(bal.W))) <= 1.2 * _bulk_radius(bal.W, bal.is_E)
    assert np.max(np.abs(np.linalg.eigvals(unbal.W))) >= 1.5 * _bulk_radius(unbal.W, unbal.is_E)


@pytest.mark.parametrize("map_shape,sigma", [((20,), 2.0), ((6, 5), 1.0)])
def test_spatial_kernels_are_local_and_translation_invariant(map_shape, sigma):
    """Weight from j onto i depends only on the periodic displacement (a convolution) and is 0
    beyond 3 sigma (the kernel's truncation)."""
    sites = math.prod(map_shape)
    c = build_circuit(_spec("spatial", n_E=sites, n_I=sites, map_shape=list(map_shape),
                            sigma_E=sigma, sigma_I=sigma))
    pos = spatial_positions(sites, map_shape)
    L = np.asarray(map_shape, dtype=float)
    d = np.abs(pos[:, None, :] - pos[None, :, :])
    dist = np.sqrt(np.sum(np.minimum(d, L - d) ** 2, axis=-1))
    for block in _blocks(c).values():
        assert np.all(block[dist > 3 * sigma + 1e-9] == 0)
        assert np.all(block[dist <= 3 * sigma - 1e-9] != 0)
        # translation: shift every unit by one site along each axis (periodic)
        grid = np.arange(sites).reshape(map_shape)
        for axis in range(len(map_shape)):
            perm = np.roll(grid, 1, axis=axis).ravel()
            np.testing.assert_allclose(block[np.ix_(perm, perm)], block, rtol=1e-12, atol=0)


def test_build_is_reproducible_from_seed_and_generator():
    spec = _spec(**CONFIGS["sparse"])
    a, b = build_circuit(spec), build_circuit(spec, np.random.default_rng(spec.seed))
    assert np.array_equal(a.W, b.W)
    assert not np.array_equal(a.W, build_circuit(spec.replace(seed=1)).W)


@pytest.mark.parametrize("projection,n_inputs,expected", [
    ("uniform", 3, lambda c: np.where(c.is_E, 1.0, 0.5)[:, None].repeat(3, 1)),
    ("by_population", 2, lambda c: np.stack([np.where(c.is_E, 1.0, 0.0), np.where(c.is_E, 0.0, 0.5)], 1)),
])
def test_feedforward_projection(projection, n_inputs, expected):
    spec = _spec().replace(**{"input.projection": projection, "input.n_inputs": n_inputs,
                              "input.gain_E": 1.0, "input.gain_I": 0.5})
    c = build_circuit(spec)
    np.testing.assert_array_equal(c.B, expected(c))


def test_without_recurrence_and_blocks():
    c = build_circuit(_spec(**CONFIGS["dense_cv"]))
    assert not c.without_recurrence().W.any()
    assert np.array_equal(c.without_recurrence().B, c.B)
    assert c.block("I", "E").shape == (c.n_I, c.n_E)
    np.testing.assert_array_equal(c.block("E", "I"), c.W[: c.n_E, c.n_E:])


@pytest.mark.parametrize("field,bad", [("W", np.zeros((3, 3))), ("tau_ms", None)])
def test_circuit_refuses_bad_arrays(field, bad):
    c = build_circuit(_spec())
    if field == "tau_ms":
        bad = c.tau_ms.copy()
        bad[0] = -1.0
    with pytest.raises(SpecError) as info:
        c.with_weights(**{field: bad})
    assert info.value.field == field


@pytest.mark.parametrize("name", ["canonical_microcircuit", "lif_ei", "spatial_ring"])
def test_reprs_are_short_and_informative(name):
    """``print(circuit)`` once dumped 17,601 characters; the circuit, its spec and the unrolled
    net now fit in one line each (< 400 characters), with name, sizes and key parameters."""
    from pathlib import Path

    circuit = load_model(Path(__file__).resolve().parents[2] / "models" / f"{name}.toml")
    net = unroll(circuit, 3, variant="untied")
    for obj in (circuit, circuit.spec, net):
        text = str(obj)
        assert len(text) < 400 and repr(obj) == text, text
        assert name in text and (f"N={circuit.n_units}" in text or f"E n={circuit.n_E}" in text), text
    assert "tau_ms E/I=" in str(circuit) and "connections" in str(circuit)
    assert "J_EE=" in repr(circuit.spec)
    assert f"parameters={sum(p.numel() for p in net.parameters()):,}" in repr(net)


def test_experiment_repr_is_short():
    from pathlib import Path

    spec = load_experiment(Path(__file__).resolve().parents[2] / "experiments" / "digits_tied.toml")
    text = repr(spec)
    assert len(text) < 400 and text == str(spec)
    for part in ("digits_tied", "data=digits", "steps=10", "lr=0.003", "epochs=30"):
        assert part in text, text
