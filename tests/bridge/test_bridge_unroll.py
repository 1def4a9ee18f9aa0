"""unroll: the unrolled net equals the rate simulator step for step; the variants; bad input.

Tolerances (DESIGN "Exactness"): max abs difference <= 1e-10 in float64 and max
relative difference (per step, relative to that step's largest rate) <= 1e-5 in
float32, at every step. Both sides call rate.euler_step on the same tensors, so
the float64 differences are rounding only (~1e-15); 1e-10 leaves room for the
softplus round trip of the Dale parametrisation (relative 1e-16 per weight).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortex_resnet.bridge import UnrollOptions, unroll
from cortex_resnet.bridge.check import (
    TOLERANCE,
    check_unroll,
    compare_with_simulator,
    source_reference,
)
from cortex_resnet.errors import SpecError, UnknownNameError
from cortex_resnet.model.stimulus import Stimulus
from cortex_resnet.rate.simulator import RateState, RateSystem, integrate, simulate
from tests.bridge_cases import CASES, DT_MS, case_circuit, case_input, one_thread  # noqa: F401 (autouse)

K = 40


def _step_errors(net_traj: torch.Tensor, sim_traj: torch.Tensor) -> tuple[float, float]:
    diff = (net_traj - sim_traj).abs().flatten(1).max(dim=1).values.double()
    scale = sim_traj.abs().flatten(1).max(dim=1).values.double().clamp_min(1e-300)
    return float(diff.max()), float((diff / scale).max())


def _simulator(circuit, u: torch.Tensor, steps: int, mode: str) -> torch.Tensor:
    """The rate simulator's Euler loop with the net's input convention; x_0 computed in NumPy."""
    dtype = u.dtype
    system = RateSystem(circuit, dtype, "cpu")
    state = None
    if mode == "pulse":
        x0 = circuit.phi(torch.as_tensor(u.double().numpy() @ circuit.B.T + circuit.b)).to(dtype)
        state = RateState(0.0, 0, x0)
        stim = Stimulus.from_array(torch.zeros(1, *u.shape, dtype=dtype), DT_MS, dtype=dtype)
    else:
        stim = Stimulus.from_array(u[None], DT_MS, dtype=dtype)
    return integrate(system, stim, steps * DT_MS, DT_MS, method="euler", state=state).r


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mode", ["sustained", "pulse"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_tied_equals_simulator_every_step(case, mode, dtype):
    c = case_circuit(case)
    u = case_input(case, dtype=dtype)
    net = unroll(c, K, DT_MS, input_mode=mode, dtype=dtype)
    with torch.no_grad():
        got = net(u)
    ref = _simulator(c, u, K, mode)
    assert got.shape == ref.shape == (K + 1, u.shape[0], c.n_units)
    abs_err, rel_err = _step_errors(got, ref)
    assert float(ref[-1].abs().max()) > 0.1  # a non-trivial trajectory
    if dtype == torch.float64:
        assert abs_err <= TOLERANCE["float64"]["abs"]
    else:
        assert rel_err <= TOLERANCE["float32"]["rel"]


def test_tied_equals_public_simulate():
    """The contract form: simulate(c, constant u, method="euler", dt, duration K dt)."""
    c = case_circuit("dense_relu")
    amps = [0.5, 1.0, 2.0]
    net = unroll(c, K, DT_MS, dtype=torch.float64)
    u = torch.tensor(amps, dtype=torch.float64)[:, None].expand(-1, c.n_inputs)
    with torch.no_grad():
        got = net(u).numpy()
    ds = simulate(c, "constant:amp=[0.5,1,2]", duration_ms=K * DT_MS, dt_ms=DT_MS, method="euler",
                  dtype="float64", device="cpu", decompose=False)
    assert np.max(np.abs(got - ds["r"].values)) <= 1e-10


def test_per_step_input_equals_simulator_with_array_stimulus():
    c = case_circuit("dense_relu")
    rng = np.random.default_rng(1)
    u = torch.as_tensor(rng.uniform(0, 2, size=(2, K, c.n_inputs)))
    net = unroll(c, K, DT_MS, dtype=torch.float64)
    with torch.no_grad():
        got = net(u)
    ref = integrate(RateSystem(c), Stimulus.from_array(u.transpose(0, 1), DT_MS), K * DT_MS, DT_MS).r
    assert _step_errors(got, ref)[0] <= 1e-10


@pytest.mark.parametrize("mode", ["sustained", "pulse"])
def test_plain_iterates_phi(mode):
    c = case_circuit("dense_relu", **{"connectivity.J_EE": 0.5, "connectivity.J_IE": 0.5})
    u = case_input("dense_relu")
    net = unroll(c, 15, DT_MS, variant="plain", input_mode=mode, dtype=torch.float64)
    W, B, b = (torch.as_tensor(a) for a in (c.W, c.B, c.b))
    r = torch.relu(u @ B.T + b) if mode == "pulse" else torch.zeros(u.shape[0], c.n_units, dtype=torch.float64)
    drive = b if mode == "pulse" else u @ B.T + b
    expected = [r]
    for _ in range(15):
        r = torch.relu(r @ W.T + drive)
        expected.append(r)
    with torch.no_grad():
        assert torch.allclose(net(u), torch.stack(expected), rtol=0, atol=1e-12)


@pytest.mark.parametrize("variant,kwargs", [("untied", {}), ("projection", {}), ("gated", {}),
                                            ("gated", {"state_gate": True}), ("projection", {"tied": False})])
def test_variants_equal_tied_at_initialisation(variant, kwargs):
    c = case_circuit("sparse_relu")
    u = case_input("sparse_relu")
    with torch.no_grad():
        tied = unroll(c, K, DT_MS, dtype=torch.float64)(u)
        other = unroll(c, K, DT_MS, variant=variant, **kwargs, dtype=torch.float64)(u)
    assert torch.allclose(other, tied, rtol=0, atol=1e-12)


def test_untied_has_one_matrix_per_step_each_with_its_own_gradient():
    c = case_circuit("dense_relu")
    net = unroll(c, 5, DT_MS, variant="untied", dtype=torch.float64)
    assert len(net.W) == 5
    net(case_input("dense_relu"))[-1].sum().backward()
    g = net.W.theta_T.grad
    assert g.shape == (5, c.n_units, c.n_units)
    assert float(g[0].abs().max()) == 0.0  # W_0 acts on r_0 = 0 (sustained input): no gradient
    assert float(g[1].abs().max()) > 0 and float(g[-1].abs().max()) > 0
    assert float((g[1] - g[-1]).abs().max()) > 0


@pytest.mark.parametrize("norm", ["layer", "batch"])
def test_per_step_normalisation_is_untied_and_weights_stay_tied(norm):
    c = case_circuit("dense_relu")
    net = unroll(c, 6, DT_MS, norm=norm, dtype=torch.float64)
    assert len(net.norms) == 6 and len(net.W) == 1
    out = net(case_input("dense_relu", batch=4))
    assert out.shape == (7, 4, c.n_units) and torch.isfinite(out).all()
    out[-1].sum().backward()
    assert all(p.grad is not None for p in net.norms[1].parameters())


def test_param_count_counts_connections_inside_masks():
    c = case_circuit("sparse_relu")
    n, n_in = c.n_units, c.n_inputs
    assert unroll(c, 4, DT_MS, dtype=torch.float64).param_count() == int(c.mask.sum()) + int((c.B != 0).sum()) + n
    assert unroll(c, 4, DT_MS, variant="untied", dtype=torch.float64).param_count() == 4 * int(c.mask.sum()) + int((c.B != 0).sum()) + n
    assert unroll(c, 4, DT_MS, dtype=torch.float64).param_count(effective=False) == n * n + n * n_in + n
    assert unroll(c, 4, DT_MS, learnable=False, dtype=torch.float64).param_count() == 0


def test_gradcheck_small_unrolled_net():
    """Autograd through K blocks (Dale parametrisation included) against finite differences."""
    c = case_circuit("dense_relu", **{"populations.E.n": 4, "populations.I.n": 2,
                                      "populations.E.transfer": {"name": "tanh"},
                                      "populations.I.transfer": {"name": "tanh"}})
    net = unroll(c, 6, DT_MS, variant="gated", state_gate=True, dtype=torch.float64)
    u = case_input("dense_relu", batch=2).requires_grad_(True)
    params = dict(net.named_parameters())

    def f(theta, B, gate, uu):
        return torch.func.functional_call(net, {**params, "W.theta_T": theta, "B": B, "W_gate": gate}, (uu,))

    inputs = (params["W.theta_T"].detach().clone().requires_grad_(True),
              params["B"].detach().clone().requires_grad_(True),
              (0.1 * torch.ones_like(params["W_gate"])).requires_grad_(True), u)
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-8, rtol=1e-6)


# ------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("steps", [0, -3, 2.5, True])
def test_bad_steps(steps):
    with pytest.raises(SpecError, match="steps"):
        unroll(case_circuit("dense_relu"), steps, DT_MS, dtype=torch.float64)


def test_dt_above_tau_says_the_euler_step_overshoots():
    with pytest.raises(SpecError) as err:
        unroll(case_circuit("dense_relu"), 10, 12.0, dtype=torch.float64)  # tau_I = 10 ms
    msg = str(err.value)
    assert err.value.field == "dt_ms" and "overshoot" in msg and "alpha" in msg and "dt_ms <= 10" in msg


def test_plain_ignores_tau():
    net = unroll(case_circuit("dense_relu"), 3, 12.0, variant="plain", dtype=torch.float64)
    assert torch.all(net.alpha == 1)


@pytest.mark.parametrize("field,kwargs", [
    ("variant", {"variant": "resnet"}), ("input_mode", {"input_mode": "burst"}), ("norm", {"norm": "group"}),
    ("state_gate", {"state_gate": True}), ("tied", {"variant": "untied", "tied": True}),
    ("dale", {"dale": "exp"}), ("dt_ms", {"dt_ms": float("nan")})])
def test_bad_options(field, kwargs):
    base = {"steps": 3, "dt_ms": 0.5}
    with pytest.raises(SpecError) as err:
        UnrollOptions(**{**base, **kwargs})
    assert err.value.field == field


def test_unknown_variant_lists_the_known_ones():
    with pytest.raises(UnknownNameError, match="gated.*plain.*projection.*tied.*untied"):
        unroll(case_circuit("dense_relu"), 3, 0.5, variant="resnet", dtype=torch.float64)


@pytest.mark.parametrize("shape,mode", [((3, 5), "sustained"), ((3, 7, 3), "sustained"), ((3, K, 3), "pulse")])
def test_bad_input_shapes(shape, mode):
    net = unroll(case_circuit("dense_relu"), K, DT_MS, input_mode=mode, dtype=torch.float64)
    with pytest.raises(SpecError, match="u"):
        net(torch.zeros(shape, dtype=torch.float64))


def test_wrong_input_dtype():
    net = unroll(case_circuit("dense_relu"), 3, DT_MS, dtype=torch.float64)
    with pytest.raises(SpecError, match="dtype"):
        net(torch.zeros(2, 3, dtype=torch.float32))


def test_default_dtype_follows_torch():
    """Like any torch module: ``unroll`` builds in torch's default dtype and takes its tensors."""
    c = case_circuit("dense_relu")
    assert unroll(c, 3, DT_MS).dtype == torch.float32
    assert unroll(c, 3, DT_MS)(torch.zeros(2, 3)).dtype == torch.float32
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        assert unroll(c, 3, DT_MS).dtype == torch.float64
    finally:
        torch.set_default_dtype(before)


# ------------------------------------------------------------------------------ the checker itself

def test_check_unroll_reports_within_tolerance():
    c = case_circuit("spatial_relu")
    res = check_unroll(c, 20, DT_MS, case_input("spatial_relu").numpy())
    assert res["within_tolerance"]
    assert res["max_abs_error"]["float64"] <= 1e-10 and res["max_rel_error"]["float32"] <= 1e-5


def test_checker_detects_a_wrong_net():
    """A net whose weights were changed after unrolling no longer matches the source circuit."""
    c = case_circuit("dense_relu")
    net = unroll(c, 20, DT_MS, dtype=torch.float64)
    with torch.no_grad():
        net.b += 1e-6
    res = compare_with_simulator(net, case_input("dense_relu"), source_reference(net))
    assert res["max_abs_error"] > 1e-8
    assert res["abs_per_step"][0] == 0.0 and len(res["abs_per_step"]) == 21


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_conv_recurrence_equals_simulator(dtype):
    c = case_circuit("spatial_relu")
    u = case_input("spatial_relu", dtype=dtype)
    with torch.no_grad():
        got = unroll(c, K, DT_MS, recurrence="conv", dtype=dtype)(u)
    abs_err, rel_err = _step_errors(got, _simulator(c, u, K, "sustained"))
    assert abs_err <= 1e-10 if dtype == torch.float64 else rel_err <= 1e-5


@pytest.mark.parametrize("case", ["dense_relu", "sparse_relu"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_relu_dale_parametrisation_is_bit_exact_with_simulate(case, dtype):
    """Issue 12: with dale="relu" the net's weights are |W| x sign exactly, and the net and the
    simulator share euler_step and the drive function input_drive: the trajectories are equal
    bit for bit (torch.equal), not only within 1e-10."""
    c = case_circuit(case)
    tdt = getattr(torch, dtype)
    net = unroll(c, K, DT_MS, dale="relu", dtype=tdt)
    u = torch.tensor([0.5, 1.0, 2.0], dtype=tdt)[:, None].expand(-1, c.n_inputs)
    with torch.no_grad():
        got = net(u)
    ds = simulate(c, "constant:amp=[0.5,1,2]", duration_ms=K * DT_MS, dt_ms=DT_MS, method="euler",
                  dtype=dtype, device="cpu", decompose=False)
    assert torch.equal(got, torch.as_tensor(ds["r"].values))


def test_relu_dale_per_step_input_is_bit_exact_with_array_stimulus():
    c = case_circuit("dense_relu")
    u = torch.as_tensor(np.random.default_rng(1).uniform(0, 2, size=(2, K, c.n_inputs)))
    net = unroll(c, K, DT_MS, dale="relu", dtype=torch.float64)
    with torch.no_grad():
        got = net(u)
    ref = integrate(RateSystem(c), Stimulus.from_array(u.transpose(0, 1), DT_MS), K * DT_MS, DT_MS).r
    assert torch.equal(got, ref)
