"""to_circuit and circuit files: round trips are exact; bad files give clear errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from cortex_resnet.bridge import load_circuit, load_state, save_circuit, save_state, spec_to_toml, to_circuit, unroll
from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.errors import SpecError
from cortex_resnet.rate.simulator import RateSystem, integrate, simulate
from cortex_resnet.model.spec import load_spec
from cortex_resnet.model.stimulus import Stimulus

from tests.bridge_cases import DT_MS, case_circuit, case_input, one_thread  # noqa: F401 (autouse)

K = 30
MODELS = sorted(Path(__file__).resolve().parents[2].joinpath("models").glob("*.toml"))


def _sim(circuit, u: torch.Tensor, steps: int = K) -> torch.Tensor:
    return integrate(RateSystem(circuit), Stimulus.from_array(u[None], DT_MS), steps * DT_MS, DT_MS).r


def _perturb(net, seed: int = 0) -> None:
    """Stand-in for training: change every parameter (W_k differently per step)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


@pytest.mark.parametrize("case", ["dense_relu", "sparse_relu", "spatial_relu", "dense_powerlaw"])
def test_simulate_to_circuit_of_unroll_equals_simulate(case):
    """The contract: simulate(to_circuit(unroll(c, dtype=torch.float64))) == simulate(c)."""
    c = case_circuit(case)
    back = to_circuit(unroll(c, K, DT_MS, dtype=torch.float64))
    kw = dict(duration_ms=K * DT_MS, dt_ms=DT_MS, method="euler", device="cpu", decompose=False)
    a = simulate(back, "constant:amp=[0.5,1.0]", **kw)["r"].values
    b = simulate(c, "constant:amp=[0.5,1.0]", **kw)["r"].values
    assert np.max(np.abs(a - b)) <= 1e-10
    assert back.spec.simulation.dt_ms == DT_MS and back.spec.simulation.method == "euler"


@pytest.mark.parametrize("variant", ["tied", "untied", "plain", "gated"])
def test_trained_net_and_its_circuit_agree(variant):
    c = case_circuit("dense_relu", **{"connectivity.J_EE": 0.8}) if variant == "plain" else case_circuit("dense_relu")
    net = unroll(c, K, DT_MS, variant=variant, dale="relu", dtype=torch.float64)
    _perturb(net)
    if variant == "gated":
        with torch.no_grad():
            net.gate_logit.copy_(torch.linspace(-4, 0, c.n_units, dtype=torch.float64))
    u = case_input("dense_relu")
    back = to_circuit(net)
    with torch.no_grad():
        assert (net(u) - _sim(back, u)).abs().max() <= 1e-10
    assert (back.step_weights is not None) == (variant == "untied")
    if variant == "plain":
        assert np.all(back.tau_ms == DT_MS)


@pytest.mark.parametrize("variant,kwargs", [("projection", {}), ("gated", {"state_gate": True}),
                                            ("tied", {"norm": "layer"})])
def test_variants_without_a_circuit_are_refused(variant, kwargs):
    with pytest.raises(SpecError):
        to_circuit(unroll(case_circuit("dense_relu"), 3, DT_MS, variant=variant, **kwargs, dtype=torch.float64))


@pytest.mark.parametrize("variant", ["tied", "untied"])
def test_saved_files_round_trip_exactly(tmp_path, variant):
    c = case_circuit("spatial_relu")
    net = unroll(c, K, DT_MS, variant=variant, dtype=torch.float64)
    _perturb(net, seed=1)
    circ = to_circuit(net)
    toml_path = save_circuit(circ, tmp_path / "trained")
    assert toml_path == tmp_path / "trained.toml" and (tmp_path / "trained.npz").is_file()
    loaded = load_circuit(toml_path)
    for name in ("W", "B", "b", "tau_ms", "mask", "population"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(circ, name))
    if variant == "untied":
        np.testing.assert_array_equal(loaded.step_weights, circ.step_weights)
    assert loaded.spec.model_dump() == circ.spec.model_copy(update={"weights": "trained.npz"}).model_dump()
    u = case_input("spatial_relu")
    assert torch.equal(_sim(loaded, u), _sim(circ, u))
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind


@pytest.mark.parametrize("model", MODELS, ids=lambda p: p.stem)
def test_spec_to_toml_round_trip(tmp_path, model):
    spec = load_spec(model)
    path = tmp_path / "m.toml"
    path.write_text(spec_to_toml(spec, "header\nline two"))
    assert load_spec(path) == spec


def test_model_file_is_data_only(tmp_path):
    path = save_circuit(to_circuit(unroll(case_circuit("dense_relu"), 3, DT_MS, dtype=torch.float64)), tmp_path / "m")
    data = tomllib.loads(path.read_text())
    assert data["weights"] == "m.npz" and data["populations"]["E"]["n"] == 24
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)


def test_load_circuit_without_weights_builds_the_model():
    model = MODELS[0]
    a, b = load_circuit(model), build_circuit(load_spec(model))
    np.testing.assert_array_equal(a.W, b.W)


def test_build_circuit_refuses_a_spec_with_weights(tmp_path):
    path = save_circuit(to_circuit(unroll(case_circuit("dense_relu"), 3, DT_MS, dtype=torch.float64)), tmp_path / "m")
    with pytest.raises(SpecError, match="load_circuit"):
        build_circuit(load_spec(path))


def _write_bad(tmp_path: Path, **arrays) -> Path:
    path = save_circuit(case_circuit("dense_relu"), tmp_path / "m")
    with np.load(tmp_path / "m.npz") as z:
        data = {k: z[k] for k in z.files}
    for k, v in arrays.items():
        if v is None:
            data.pop(k)
        else:
            data[k] = v
    np.savez(tmp_path / "m.npz", **data)
    return path


def test_weight_file_with_mismatched_shape(tmp_path):
    path = _write_bad(tmp_path, W=np.zeros((31, 32)))
    with pytest.raises(SpecError) as err:
        load_circuit(path)
    assert err.value.field == "weights.W" and "(32, 32)" in err.value.allowed and str(path) in str(err.value)


def test_weight_file_missing_an_array(tmp_path):
    with pytest.raises(SpecError, match="missing B"):
        load_circuit(_write_bad(tmp_path, B=None))


def test_weight_file_with_mixed_sign_column(tmp_path):
    W = case_circuit("dense_relu").W.copy()
    W[5, 0] = -1.0
    with pytest.raises(SpecError) as err:
        load_circuit(_write_bad(tmp_path, W=W))
    assert err.value.field == "weights.W[:, 0]"


def test_weight_file_with_pickled_objects_is_refused(tmp_path):
    path = _write_bad(tmp_path, b=np.array([{"evil": 1}] * 32, dtype=object))
    with pytest.raises(SpecError, match="plain arrays"):
        load_circuit(path)


def test_missing_weight_file(tmp_path):
    path = save_circuit(case_circuit("dense_relu"), tmp_path / "m")
    (tmp_path / "m.npz").unlink()
    with pytest.raises(SpecError, match="existing .npz"):
        load_circuit(path)


def test_state_dict_round_trip_with_weights_only(tmp_path):
    c = case_circuit("dense_relu")
    net = unroll(c, 5, DT_MS, variant="untied", dtype=torch.float64)
    _perturb(net)
    save_state(net, tmp_path / "s.pt")
    assert set(torch.load(tmp_path / "s.pt", weights_only=True)) == set(net.state_dict())
    fresh = load_state(unroll(c, 5, DT_MS, variant="untied", dtype=torch.float64), tmp_path / "s.pt")
    u = case_input("dense_relu")
    with torch.no_grad():
        assert torch.equal(fresh(u), net(u))


def test_state_dict_of_another_shape_is_refused(tmp_path):
    c = case_circuit("dense_relu")
    save_state(unroll(c, 5, DT_MS, variant="untied", dtype=torch.float64), tmp_path / "s.pt")
    with pytest.raises(SpecError, match="shape"):
        load_state(unroll(c, 4, DT_MS, variant="untied", dtype=torch.float64), tmp_path / "s.pt")
