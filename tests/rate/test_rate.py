"""Rate simulator (:mod:`cortex_resnet.rate.simulator`) against exact solutions (:mod:`problems`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from cortex_resnet.cli import app
from cortex_resnet.errors import SpecError, UnknownNameError, UnstableCircuitError
from cortex_resnet.io.results import load_dataset
from cortex_resnet.model.analysis import analyze
from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.model.spec import load_spec
from cortex_resnet.model.stimulus import make_stimulus
from cortex_resnet.rate.simulator import (
    STEP_LIMITS,
    RateSystem,
    StepSizeWarning,
    UnstableStateWarning,
    integrate,
    simulate,
)
from tests import problems as P

ROOT = Path(__file__).resolve().parents[2]

DTYPES = {"float64": torch.float64, "float32": torch.float32}
U = np.ones(2)  # "constant:amp=1" on the two input channels of problems.linear_spec()
STIM = "constant:amp=1.0"


def _run(circuit, method, dt_ms, duration_ms, dtype=torch.float64, **kw):
    stim = make_stimulus(STIM, circuit.n_inputs, dtype)
    return integrate(RateSystem(circuit, dtype), stim, duration_ms, dt_ms, method=method, **kw)


def _eps(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).eps)


@pytest.fixture(scope="module")
def lin():
    return P.linear_circuit()


# ------------------------------------------------------------------ exactness on linear circuits

@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("method,dt_ms", [("euler", 0.1), ("expeuler", 0.1), ("rk4", 0.5)])
@pytest.mark.parametrize("problem", list(P.PROBLEMS))
def test_fixed_step_equals_exact_discrete_map(problem, method, dt_ms, dtype):
    """On a linear circuit a fixed-step method is the linear recurrence r_{k+1} = M r_k + c with
    M known in closed form (problems.discrete_map); every recorded step must equal it.

    Tolerance 1e3 eps of the dtype (relative to max |r|): the two computations differ only by
    rounding. Each step rounds O(eps |r|) (the final r + delta) and the stable map damps old
    errors over ~tau_relax/dt ~ 200 steps (random walk: ~15 eps); near the fixed point the
    cancellation in -r + W r + B u + b is amplified by ||(I - gW)^-1|| ~ 5. Measured: <= 170 eps.
    A formula error (wrong alpha, drive, sign) is O(dt) ~ 1e-3 relative, far outside.
    """
    circuit = P.PROBLEMS[problem]()
    dt = DTYPES[dtype]
    n = int(round(40.0 / dt_ms))
    run = _run(circuit, method, dt_ms, 40.0, dt)
    ref = P.discrete_solution(circuit, U, dt_ms, n, method)
    assert run.r.dtype == dt
    assert P.max_rel_error(run.r[:, 0].double().numpy(), ref) <= 1e3 * _eps(dt)


def _leading_error_bound(circuit, method: str, dt_ms: float, times: np.ndarray) -> float:
    """Max over t of the leading global truncation error term (exact to O(dt^{p+1})).

    For r' = A (r - r*) the methods give r_n - r* = P(dt A)^n (r_0 - r*). With
    P(z) = e^z (1 - z^2/2 + ...) (Euler) and e^z (1 - z^5/120 + ...) (RK4), the
    error at t = n dt is -(t dt/2) A^2 e^{At} d0 resp. -(t dt^4/120) A^5 e^{At} d0.
    Exponential Euler uses alpha = dt/tau - dt^2/(2 tau^2) + ..., which adds roughly
    -(t dt/2) T^-1 A e^{At} d0 to Euler's term (only roughly: T^-1 and A do not commute;
    measured error / this term = 1.00 (Euler), 1.39 (exp. Euler), 1.05 (RK4)).
    """
    A, _, _ = P.linear_parts(circuit, U)
    d0 = -P.linear_steady_state(circuit, U)
    if method == "euler":
        K, scale = A @ A, dt_ms / 2
    elif method == "expeuler":
        K, scale = A @ A + A / circuit.tau_ms[:, None], dt_ms / 2
    else:
        K, scale = np.linalg.matrix_power(A, 5), dt_ms**4 / 120
    return max(scale * t * np.max(np.abs(K @ scipy.linalg.expm(A * t) @ d0)) for t in times)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("method,dt_ms", [("euler", 0.05), ("expeuler", 0.05), ("rk4", 0.5)])
def test_fixed_step_transient_matches_expm(lin, method, dt_ms, dtype):
    """Transient vs r* + expm(A t)(r0 - r*): error <= 2 x the predicted leading truncation term
    (the factor 2 covers the higher-order remainder, O(dt |lambda|_max) <= 0.05 relative here, and
    the non-commuting correction of exponential Euler)
    plus 1e3 eps rounding (see the discrete-map test)."""
    dt = DTYPES[dtype]
    run = _run(lin, method, dt_ms, 40.0, dt, record_stride=int(round(2.0 / dt_ms)))
    exact = P.linear_exact(lin, U, run.times_ms)
    scale = np.max(np.abs(exact))
    bound = 2 * _leading_error_bound(lin, method, dt_ms, run.times_ms) + 1e3 * _eps(dt) * scale
    err = np.max(np.abs(run.r[:, 0].double().numpy() - exact))
    assert err <= bound


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("method,factor", [("dopri5", 10.0), ("bosh3", 300.0), ("dopri8", 300.0)])
def test_adaptive_transient_matches_expm(lin, method, factor, dtype):
    """Adaptive solvers (torchdiffeq) vs expm with rtol = 1e-7 (f64) / 1e-5 (f32), batched (2 stimuli).

    Error control bounds the RMS norm of each step's *local* error by rtol |r| + atol; the global
    error of a stable problem is a small multiple of that (factor 10 for dopri5, whose output
    times use its 4th-order dense output). bosh3 and dopri8 take much longer steps and report
    output times through torchdiffeq's quartic interpolation, whose error dominates (measured
    ~1e2 rtol): factor 300. A wrong right-hand side gives O(1) errors.
    """
    dt = DTYPES[dtype]
    rtol, atol = (1e-7, 1e-9) if dt == torch.float64 else (1e-5, 1e-6)
    stim = make_stimulus("constant:amp=[1.0,-0.5]", lin.n_inputs, dt)
    run = integrate(RateSystem(lin, dt), stim, 40.0, 2.0, method=method, rtol=rtol, atol=atol)
    for b, amp in enumerate((1.0, -0.5)):
        exact = P.linear_exact(lin, amp * U, run.times_ms)
        assert P.max_rel_error(run.r[:, b].double().numpy(), exact) <= factor * rtol


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("method,dt_ms", [("euler", 0.5), ("expeuler", 0.5), ("rk4", 1.0)])
def test_steady_state_equals_linear_solve(method, dt_ms, dtype):
    """After 800 ms (>= 37 relaxation times 1/|max Re eig| ~ 21 ms, so e^-37 ~ 1e-16 of the
    transient remains) every fixed-step method sits on r* = (I - W)^-1 (B u + b): the fixed
    point of each discrete map is exactly r*. Tolerance 1e3 eps as in the discrete-map test."""
    circuit = P.PROBLEMS["linear_isn"]()
    dt = DTYPES[dtype]
    run = _run(circuit, method, dt_ms, 800.0, dt, record_stride=int(round(800.0 / dt_ms)))
    r_star = P.linear_steady_state(circuit, U)
    assert P.max_rel_error(run.r[-1, 0].double().numpy(), r_star) <= 1e3 * _eps(dt)


@pytest.mark.parametrize("method,order,dts", [
    ("euler", 1, [0.4, 0.2, 0.1, 0.05]),
    ("expeuler", 1, [0.4, 0.2, 0.1, 0.05]),
    ("rk4", 4, [1.0, 0.5, 0.25, 0.125]),
])
def test_convergence_order(lin, method, order, dts):
    """Slope of log(error at t = 20 ms vs expm) against log(dt) equals the method's order.

    float64; errors span ~1e-3 .. 5e-11, far above rounding (1e-14). dt |lambda|_max <= 0.1, in
    the asymptotic range, where the slope deviates from the order by O(dt |lambda|): |slope -
    order| <= 0.1 (a method of the wrong order misses by >= 1).
    """
    exact = P.linear_exact(lin, U, np.array([20.0]))[0]
    errors = [np.max(np.abs(_run(lin, method, dt, 20.0, record_stride=int(round(20.0 / dt))).r[-1, 0].numpy()
                            - exact)) for dt in dts]
    slope = np.polyfit(np.log(dts), np.log(errors), 1)[0]
    assert abs(slope - order) <= 0.1, f"errors {errors}, slope {slope:.3f}"


# ------------------------------------------------------------------ decomposition r = x + F(x)

@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_decomposition_sums_to_r(method, dtype):
    """Fx is stored as fl(r - x); fl(x + fl(r - x)) differs from r by at most two roundings,
    each <= eps/2 of a value <= |r| + |x|: |x + Fx - r| <= eps (|r| + |x|)."""
    circuit = build_circuit(P.noisy_spec())
    ds = simulate(circuit, "step:amp=[0.5,1.5],onset_ms=5", duration_ms=30.0, dt_ms=0.1, method=method,
                  dtype=dtype, device="cpu")
    r, x, fx = ds["r"].values, ds["x"].values, ds["Fx"].values
    assert r.dtype == np.dtype(dtype)
    assert np.all(np.abs(x + fx - r) <= _eps(DTYPES[dtype]) * (np.abs(r) + np.abs(x)))
    assert np.max(np.abs(fx)) > 0.1  # recurrence does change the response here


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_without_recurrence_fx_is_exactly_zero(dtype):
    """With W = 0 (all J = 0) and noise on, r and x are the same computation (r @ 0 = 0 exactly,
    0 + drive = drive), with the same noise: Fx must be exactly 0."""
    spec = P.noisy_spec().replace(**{"connectivity.J_EE": 0.0, "connectivity.J_EI": 0.0,
                                     "connectivity.J_IE": 0.0, "connectivity.J_II": 0.0})
    circuit = build_circuit(spec)
    assert not circuit.W.any()
    ds = simulate(circuit, "step:amp=1.0", duration_ms=20.0, dt_ms=0.1, dtype=dtype, device="cpu")
    assert np.array_equal(ds["r"].values, ds["x"].values)
    assert not ds["Fx"].values.any()
    assert np.std(ds["r"].values[-1]) > 0  # the noise is there


# ------------------------------------------------------------------ chunking, seeds, strides

@pytest.mark.parametrize("method", ["euler", "expeuler", "rk4"])
def test_chunked_run_equals_full_run_bitwise(method):
    """Two halves with the RateState (rates, OU noise, its generator) carried over == one run."""
    circuit = build_circuit(P.noisy_spec())
    system = RateSystem(circuit, torch.float64)
    stim = make_stimulus("step:amp=[0.7,1.3],onset_ms=3.3", circuit.n_inputs)
    full = integrate(system, stim, 20.0, 0.1, method=method, seed=5)
    first = integrate(system, stim, 10.0, 0.1, method=method, seed=5)
    second = integrate(system, stim, 10.0, 0.1, method=method, state=first.state)
    joined = torch.cat([first.r, second.r[1:]])
    assert torch.equal(joined, full.r)
    assert torch.equal(second.state.eta, full.state.eta)
    np.testing.assert_allclose(np.concatenate([first.times_ms, second.times_ms[1:]]), full.times_ms,
                               rtol=0, atol=1e-9)


def test_same_seed_same_result_different_seed_differs():
    circuit = build_circuit(P.noisy_spec())
    kw = dict(duration_ms=20.0, dt_ms=0.1, device="cpu", decompose=False)
    a = simulate(circuit, "step:amp=1.0", seed=1, **kw)["r"].values
    b = simulate(circuit, "step:amp=1.0", seed=1, **kw)["r"].values
    c = simulate(circuit, "step:amp=1.0", seed=2, **kw)["r"].values
    assert np.array_equal(a, b)
    assert np.max(np.abs(a - c)) > 1e-2  # noise std 0.5 drives rate differences of this order


@pytest.mark.parametrize("stride", [1, 7, 70])
def test_record_stride_keeps_every_nth_step(stride):
    circuit = build_circuit(P.noisy_spec())
    system = RateSystem(circuit, torch.float64)
    stim = make_stimulus("step:amp=1.0", circuit.n_inputs)
    full = integrate(system, stim, 7.0, 0.1, method="euler", seed=3)
    strided = integrate(system, stim, 7.0, 0.1, method="euler", seed=3, record_stride=stride)
    assert strided.r.shape[0] == 70 // stride + 1
    assert torch.equal(strided.r, full.r[::stride])
    np.testing.assert_allclose(strided.times_ms, full.times_ms[::stride], rtol=0, atol=1e-12)
    assert torch.equal(strided.state.r, full.state.r)


def test_sparse_operator_matches_dense():
    """Large sparse circuits use a CSR product; it must give the dense product's numbers
    (float64; same sums in a different order: 1e-12 relative)."""
    spec = P.noisy_spec().replace(**{"populations.E.n": 480, "populations.I.n": 120,
                                     "connectivity.kind": "sparse", "connectivity.p": 0.1,
                                     "noise.sigma": 0.0})
    circuit = build_circuit(spec)
    system = RateSystem(circuit, torch.float64)
    assert system._sparse is not None
    stim = make_stimulus("step:amp=1.0", circuit.n_inputs)
    sparse = integrate(system, stim, 5.0, 0.1)
    system._sparse = None
    dense = integrate(system, stim, 5.0, 0.1)
    assert P.max_rel_error(sparse.r.numpy(), dense.r.numpy()) <= 1e-12


# ------------------------------------------------------------------ failures

def test_runaway_circuit_raises_with_eigen_diagnosis():
    """J_EE = 3 without inhibition: rates grow like exp(t (J_EE - 1) / tau_E) = exp(t / 10 ms) and
    pass 1e4 near t = 10 ms ln(1e4) ~ 92 ms; the linearisation has max Re(eig) = 2/20 = 0.1 /ms."""
    circuit = build_circuit(P.runaway_spec())
    with pytest.raises(UnstableCircuitError) as info:
        simulate(circuit, "constant:amp=1.0", duration_ms=300.0, dt_ms=0.1, device="cpu", decompose=False)
    err = info.value
    assert err.population == "E"
    assert 800 <= err.step <= 1100
    assert err.max_eig_real == pytest.approx(0.1, rel=1e-6)
    assert "max Re(eig)" in str(err) and "population E" in str(err)


def test_adaptive_method_with_noise_is_refused():
    circuit = build_circuit(P.noisy_spec())
    with pytest.raises(SpecError) as info:
        simulate(circuit, "step:amp=1.0", duration_ms=10.0, dt_ms=0.1, method="dopri5", device="cpu")
    assert info.value.field == "method"
    assert "fixed-step" in str(info.value)


def test_unknown_integrator_lists_known_names(lin):
    with pytest.raises(UnknownNameError) as info:
        _run(lin, "leapfrog", 0.1, 1.0)
    assert info.value.field == "method"
    assert {"euler", "rk4", "dopri5"} <= set(info.value.known)


@pytest.mark.parametrize("dt_ms,duration_ms", [(0.3, 1.0), (0.0, 1.0), (0.1, -1.0)])
def test_bad_step_or_duration_is_a_spec_error(lin, dt_ms, duration_ms):
    with pytest.raises(SpecError):
        _run(lin, "euler", dt_ms, duration_ms)


# ------------------------------------------------------------------ step size (issue 11 section 3)

def _leak_factor(method: str, a: float) -> float:
    """One step's factor on dr/dt = -r / tau with a = dt / tau: the textbook amplification factors."""
    if method == "euler":
        return 1.0 - a
    if method == "rk4":
        z = -a
        return 1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24
    return float(np.exp(-a))  # expeuler: exact on the leak


@pytest.mark.parametrize("method", ["euler", "rk4", "expeuler"])
def test_step_limits_are_the_leak_stability_limits(method):
    """The refusal limit is where the leak's one-step factor reaches |1|; below it the leak decays."""
    warn, refuse = STEP_LIMITS[method]
    if np.isfinite(refuse):
        assert abs(_leak_factor(method, refuse)) == pytest.approx(1.0, abs=1e-9)
        assert abs(_leak_factor(method, refuse * (1 - 1e-6))) < 1
    else:
        assert all(abs(_leak_factor(method, a)) < 1 for a in (1.0, 10.0, 1e3))
    # the warning limit keeps the leak's decay over one tau within 5 % of exp(-1)
    err = abs(_leak_factor(method, warn) ** (1 / warn) - np.exp(-1)) / np.exp(-1)
    assert err <= 0.053


def test_euler_step_beyond_two_tau_is_refused_naming_dt_tau_and_fix():
    """Issue 11: --dt 50 with tau 10-20 ms was diagnosed as a runaway circuit."""
    c = build_circuit(load_spec(ROOT / "models" / "isn.toml"))
    with pytest.raises(SpecError) as info:
        simulate(c, duration_ms=300.0, dt_ms=50.0, device="cpu", decompose=False)
    err = info.value
    assert err.field == "dt_ms" and err.value == 50.0
    msg = str(err)
    assert "tau = 10 ms" in msg and "population I" in msg and "expeuler" in msg and "dt_ms <= 1 ms" in msg


def test_large_step_warns_and_expeuler_takes_it(lin):
    with pytest.warns(StepSizeWarning, match=r"dt_ms = 50 ms is large for method 'expeuler'.*tau = 10 ms"):
        ds = simulate(lin, STIM, duration_ms=500.0, dt_ms=50.0, method="expeuler", device="cpu", decompose=False)
    assert np.isfinite(ds["r"].values).all()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", StepSizeWarning)
        simulate(lin, STIM, duration_ms=1.0, dt_ms=0.1, device="cpu", decompose=False)  # small steps: silent
        _run(lin, "euler", 1.0, 2.0)  # integrate() (the bridge's entry) only refuses, never warns


def test_unstable_step_of_a_stable_circuit_is_blamed_on_the_step():
    """Linear circuit with J_II = 3: stable (max Re < 0) but its fastest mode mu ~ -0.39 /ms makes
    Euler diverge for dt > 2 / |mu| ~ 5.2 ms, below the leak's limit 2 tau_I = 20 ms."""
    c = build_circuit(load_spec(ROOT / "models" / "linear.toml").replace(**{"connectivity.J_II": 3.0}))
    mu = analyze(c, 1.0).eigenvalues
    limit = float(np.min(-2 * mu.real / np.abs(mu) ** 2))  # |1 + dt mu| < 1 for every mode
    assert 5.0 < limit < 6.0
    with pytest.warns(StepSizeWarning), pytest.raises(UnstableCircuitError) as info:
        simulate(c, duration_ms=600.0, dt_ms=6.0, device="cpu", decompose=False)
    err = info.value
    assert err.cause == "integrator" and err.max_eig_real < 0
    assert "not the circuit" in str(err) and f"below {0.9 * limit:.3g} ms" in str(err)
    with pytest.warns(StepSizeWarning):
        simulate(c, duration_ms=600.0, dt_ms=5.0, device="cpu", decompose=False)  # below the limit: runs


# ------------------------------------------------------------------ diagnosis at the first bad state

def test_nonfinite_bias_is_named_as_the_cause_at_the_first_step():
    c = build_circuit(P.runaway_spec())
    c = c.with_weights(b=np.where(np.arange(c.n_units) == 3, np.nan, c.b))
    with pytest.raises(UnstableCircuitError) as info:
        simulate(c, "constant:amp=1.0", duration_ms=10.0, dt_ms=0.1, device="cpu", decompose=False)
    err = info.value
    assert err.cause == "nonfinite-input" and err.step == 1 and "bias" in str(err) and "unit 3" in str(err)
    assert "runaway" not in str(err)


@pytest.mark.parametrize("sync_every", [1, 7, 500])
def test_runaway_is_reported_at_the_first_state_above_max_rate(sync_every):
    """The reported step is the first whose state exceeds max_rate, whatever the chunk length;
    checked against the same trajectory recorded without a limit."""
    c = build_circuit(P.runaway_spec())
    with pytest.raises(UnstableCircuitError) as info:
        _run(c, "euler", 0.1, 300.0, sync_every=sync_every)
    err = info.value
    assert err.cause == "runaway" and err.max_eig_real == pytest.approx(0.1, rel=1e-6)
    free = _run(c, "euler", 0.1, 150.0, max_rate=1e300).r.abs().amax(dim=(1, 2)).numpy()
    first = int(np.argmax(free > 1e4))
    assert err.step == first and err.time_ms == pytest.approx(first * 0.1)


def test_adaptive_blow_up_is_linearised_at_the_last_finite_state():
    """E units start below threshold (stable there: max Re = -1/20 /ms at r = 0) and run away once the
    step input arrives: the diagnosis must use the late state (max Re = (3 - 1) / 20 = +0.1 /ms)."""
    c = build_circuit(P.runaway_spec().replace(**{"bias.E": -0.5}))
    stim = make_stimulus("step:amp=1.5,onset_ms=20", c.n_inputs)
    with pytest.raises(UnstableCircuitError) as info:
        integrate(RateSystem(c), stim, 300.0, 1.0, method="dopri5")
    err = info.value
    assert err.max_eig_real == pytest.approx(0.1, rel=1e-6) and err.cause == "runaway"
    assert 20.0 < err.time_ms < 200.0


# ------------------------------------------------------------------ no host-device sync per step

def test_fixed_step_loop_syncs_once_per_chunk(monkeypatch, lin):
    """Issue 12: no torch.equal / float() per step; one read of the device-side peak per chunk."""
    calls = {"sync": 0}
    for name in ("__float__", "__bool__", "item", "tolist", "__int__"):
        orig = getattr(torch.Tensor, name)

        def counting(self, *a, _orig=orig, **kw):
            calls["sync"] += 1
            return _orig(self, *a, **kw)
        monkeypatch.setattr(torch.Tensor, name, counting)

    def no_equal(*a, **kw):
        raise AssertionError("torch.equal called in the step loop")

    monkeypatch.setattr(torch, "equal", no_equal)
    stim = make_stimulus("step:amp=[0.5,1.0],onset_ms=5,offset_ms=15", lin.n_inputs)
    system = RateSystem(lin)
    calls["sync"] = 0
    integrate(system, stim, 200.0, 0.1, sync_every=500)  # 2000 steps
    assert calls["sync"] == 4


# ------------------------------------------------------------------ unstable end state (issue 11)

def test_run_ending_near_an_unstable_fixed_point_is_flagged(tmp_path):
    """linear.toml with J_EE = 3: the population matrix [[3, -1], [1, -0.5]] minus I has trace +0.5,
    so the unique fixed point (I - W)^-1 h is a saddle/unstable node; 20 ms is too short to diverge.
    The run exits 0 but flags it: dataset attr, warning, JSON "unstable" and steady_state.unstable."""
    import json

    from typer.testing import CliRunner

    text = (ROOT / "models" / "linear.toml").read_text().replace("J_EE = 0.5", "J_EE = 3.0")
    model = tmp_path / "unstable.toml"
    model.write_text(text)
    c = build_circuit(load_spec(model))
    expected = analyze(c, 1.0).max_eig_real  # linear: the same Jacobian everywhere
    assert expected > 0
    with pytest.warns(UnstableStateWarning, match="not a steady state"):
        ds = simulate(c, duration_ms=20.0, device="cpu", decompose=False)
    assert ds.attrs["unstable"] == 1
    assert ds.attrs["final_max_eig_real_per_ms"] == pytest.approx(expected, rel=1e-9)
    out = tmp_path / "run.nc"
    res = CliRunner().invoke(app, ["simulate", str(model), "--duration", "20", "--json", "--out", str(out)])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["unstable"] is True and summary["steady_state"]["unstable"] is True
    assert "unstable" in res.stderr
    assert int(load_dataset(out).attrs["unstable"]) == 1
    stable = simulate(build_circuit(load_spec(ROOT / "models" / "linear.toml")), duration_ms=20.0, device="cpu",
                      decompose=False)
    assert stable.attrs["unstable"] == 0
