"""Linear analysis (:mod:`cortex_resnet.model.analysis`): ISN paradox, spectra, model classification."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cortex_resnet.model.analysis import analyze
from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.model.fixedpoint import steady_state
from cortex_resnet.rate.simulator import simulate
from cortex_resnet.model.spec import load_spec

from tests import problems as P

MODELS = Path(__file__).resolve().parents[2] / "models"
J_EI, J_IE, J_II = 2.5, 2.0, 1.0


def _dri_dgi_analytic(J_EE: float) -> float:
    """d r_I / d g_I = [(I - J)^-1]_II = (1 - J_EE) / det(I - J), det = (1 - J_EE)(1 + J_II) + J_EI J_IE."""
    det = (1 - J_EE) * (1 + J_II) + J_EI * J_IE
    return (1 - J_EE) / det


@pytest.mark.parametrize("J_EE", [0.5, 0.9, 1.5, 2.0])
def test_isn_paradox_matches_analytic_derivative(J_EE):
    """Extra drive to I lowers r_I when J_EE > 1 (ISN) and raises it when J_EE < 1.

    ReLU E-I pair kept above threshold by the bias, so the steady state is linear in the drive
    and a finite difference (delta = 0.05) is exact up to the solver tolerance (1e-12):
    rel. tolerance 1e-9. Checked on the Newton steady state and on the simulated
    dynamics (RK4, whose fixed point is exactly r*) after 600 ms: the slowest mode decays like
    exp(-t / 20 ms) here, so e^-30 ~ 1e-13 of the transient remains: slope tolerance 1e-9.
    """
    circuit = build_circuit(P.ei_pair_spec(J_EE, J_EI=J_EI, J_IE=J_IE, J_II=J_II))
    delta = 0.05
    u = np.array([[0.0, 0.0], [0.0, delta]])
    r = steady_state(circuit, u).numpy()
    assert np.all(r > 0)  # above threshold: the linear analysis applies
    i_units = ~circuit.is_E
    slope = (r[1, i_units] - r[0, i_units]) / delta
    expected = _dri_dgi_analytic(J_EE)
    np.testing.assert_allclose(slope, expected, rtol=1e-9)
    assert np.sign(slope[0]) == (-1 if J_EE > 1 else 1)
    assert analyze(circuit, u[0]).inhibition_stabilized == (J_EE > 1)

    ds = simulate(circuit, f"constant:amp=[0,{delta}],channels=[1]", duration_ms=600.0, dt_ms=1.0,
                  method="rk4", device="cpu", decompose=False, record_stride=600)
    r_end = ds["r"].values[-1]
    sim_slope = (r_end[1, i_units] - r_end[0, i_units]) / delta
    np.testing.assert_allclose(sim_slope, expected, atol=1e-9)


@pytest.mark.parametrize("J_EE", [0.5, 2.0])
def test_eigenvalues_match_population_2x2(J_EE):
    """Uniform dense weights: the Jacobian's spectrum is that of the 2 x 2 population Jacobian
    T_pop^-1 (J - I), plus -1/tau_E (n_E - 1 times) and -1/tau_I (n_I - 1 times) for the
    modes that differ between units of one population (they see no recurrent input).
    float64 eigensolvers on a 10 x 10 matrix: 1e-10 absolute (1/ms)."""
    circuit = build_circuit(P.ei_pair_spec(J_EE, J_EI=J_EI, J_IE=J_IE, J_II=J_II))
    lin = analyze(circuit, np.zeros(2))
    J = P.ei_pair_matrix(J_EE, J_EI, J_IE, J_II)
    tau = np.array([20.0, 10.0])
    pop = np.linalg.eigvals((J - np.eye(2)) / tau[:, None])
    expected = np.concatenate([pop, np.full(circuit.n_E - 1, -1 / 20.0), np.full(circuit.n_I - 1, -1 / 10.0)])
    key = lambda z: (round(z.real, 8), round(z.imag, 8))  # noqa: E731
    got = np.array(sorted(lin.eigenvalues, key=key))
    np.testing.assert_allclose(got, np.array(sorted(expected, key=key)), atol=1e-10)
    assert lin.max_eig_real == pytest.approx(expected.real.max(), abs=1e-10)
    assert lin.stable
    assert lin.ee_loop_gain == pytest.approx(J_EE, rel=1e-10)


def test_jacobian_matches_finite_differences():
    """J = T^-1 (-I + D W) against central differences of the right-hand side (SSN, powerlaw
    phi: a state-dependent gain). Step 1e-6 on O(1) inputs: error O(h^2) + O(eps/h) ~ 1e-10."""
    circuit = build_circuit(load_spec(MODELS / "ssn.toml"))
    u = np.array([10.0])
    lin = analyze(circuit, u)
    fe = circuit.transfer_E

    def rhs(r):
        return (-r + fe.numpy(circuit.W @ r + circuit.B @ u + circuit.b)) / circuit.tau_ms

    h = 1e-6
    cols = [(rhs(lin.r_star + h * e) - rhs(lin.r_star - h * e)) / (2 * h) for e in np.eye(circuit.n_units)]
    np.testing.assert_allclose(lin.jacobian, np.stack(cols, axis=1), atol=1e-8)


@pytest.mark.parametrize("model,isn", [("isn.toml", True), ("linear.toml", False),
                                       ("canonical_microcircuit.toml", True)])
def test_model_files_are_classified(model, isn):
    lin = analyze(build_circuit(load_spec(MODELS / model)), 1.0 if model != "isn.toml" else np.zeros(2))
    assert lin.stable
    assert lin.inhibition_stabilized is isn


def test_isn_model_paradox_numbers():
    """models/isn.toml documents r_E = 0.5, r_I = 1.0 at rest and r_I -> 0.9 with +0.3 I drive
    (d r_I / d g_I = -1/3); the linear solve of the population equations is exact: 1e-10."""
    circuit = build_circuit(load_spec(MODELS / "isn.toml"))
    r = steady_state(circuit, np.array([[0.0, 0.0], [0.0, 0.3]])).numpy()
    np.testing.assert_allclose(r[0, circuit.is_E], 0.5, atol=1e-10)
    np.testing.assert_allclose(r[0, ~circuit.is_E], 1.0, atol=1e-10)
    np.testing.assert_allclose(r[1, ~circuit.is_E], 0.9, atol=1e-10)


def test_canonical_microcircuit_keeps_40_percent_without_recurrence():
    """models/canonical_microcircuit.toml: x_E / r_E = 0.40 in the population equations
    (Chung & Ferster 1998: 46 %); weight_cv = 0.1 perturbs unit gains by O(cv^2/N) only:
    population mean within 0.02."""
    circuit = build_circuit(load_spec(MODELS / "canonical_microcircuit.toml"))
    r = steady_state(circuit, 1.0).numpy()[0]
    x = steady_state(circuit.without_recurrence(), 1.0).numpy()[0]
    e = circuit.is_E
    assert x[e].mean() / r[e].mean() == pytest.approx(0.40, abs=0.02)


# ------------------------------------------------------------------ degenerate circuits (issue 11)

def _linear(**changes: float):
    spec = load_spec(MODELS / "linear.toml")
    return build_circuit(spec.replace(**{f"connectivity.{k}": v for k, v in changes.items()}))


def test_singular_circuit_is_classified_not_reported_as_stable():
    """Linear, population matrix [[2, -1], [2, -1]]: det(I - J) = (1 - 2)(1 + 1) + 1 * 2 = 0, so the steady
    state is not unique (Newton still "converges" to some huge vector); the analysis says singular."""
    c = _linear(J_EE=2.0, J_EI=1.0, J_IE=2.0, J_II=1.0)
    lin = analyze(c, 1.0)
    assert lin.condition == "singular" and lin.condition_number > 1e12
    assert not lin.stable and not lin.inhibition_stabilized


def test_marginal_circuit_is_classified():
    """Equal tau (20 ms), population matrix [[2.5, -2], [2, -0.5]]: W - I has trace 0 and det 1.75, so the
    spectrum has the pair +-i sqrt(1.75) / 20 /ms (the other N - 2 eigenvalues are -1/20): marginal,
    but I - W is regular (det 1.75)."""
    spec = load_spec(MODELS / "linear.toml").replace(**{
        "populations.I.tau_ms": 20.0, "connectivity.J_EE": 2.5, "connectivity.J_EI": 2.0,
        "connectivity.J_IE": 2.0, "connectivity.J_II": 0.5})
    lin = analyze(build_circuit(spec), 1.0)
    top = lin.eigenvalues[np.argsort(-np.abs(lin.eigenvalues.imag))[:2]]
    np.testing.assert_allclose(sorted(top.imag), [-np.sqrt(1.75) / 20, np.sqrt(1.75) / 20], rtol=1e-9)
    assert lin.condition == "marginal" and lin.condition_number < 1e3
    assert not lin.stable


@pytest.mark.parametrize("model", ["linear", "isn", "ssn"])
def test_regular_models_are_stable(model):
    lin = analyze(build_circuit(load_spec(MODELS / f"{model}.toml")), 1.0)
    assert lin.condition == "stable" and lin.stable
