"""Circuits of any number of named populations (issue 15, part 1).

References used here are independent of the builder: the population-level linear
equations solved with ``numpy.linalg.solve`` (dense uniform weights reduce exactly
to them), and the two-population shorthand (the same draws must come out of an
equivalent named-population file).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cortex_resnet.errors import SpecError
from cortex_resnet.io.results import population_mean
from cortex_resnet.model.analysis import analyze
from cortex_resnet.model.circuit import build_circuit, population_layout
from cortex_resnet.model.fixedpoint import steady_state
from cortex_resnet.model.spec import load_spec, parse_spec
from tests.model.test_fuzz_spec import _set  # the one dotted-set helper of the spec tests
from cortex_resnet.rate.simulator import simulate

MODELS = Path(__file__).resolve().parents[2] / "models"
NAMES = ["E", "PV", "SOM"]
# signed population couplings of models/e_pv_som.toml (post x pre), background and input gains
W_POP = np.array([[2.0, -1.5, -0.5], [2.0, -1.0, -0.5], [1.0, 0.0, 0.0]])
BIAS = np.array([1.5, 1.0, 0.0])
GAIN = np.array([1.0, 0.5, 0.0])


@pytest.fixture(scope="module")
def epvsom():
    return build_circuit(load_spec(MODELS / "e_pv_som.toml"))


def test_three_population_file_layout(epvsom):
    c = epvsom
    assert c.population_names == NAMES
    assert [c.spec.populations.type_of(k) for k in NAMES] == ["excitatory", "inhibitory", "inhibitory"]
    assert {k: (s.start, s.stop) for k, s in c.layout.items()} == {"E": (0, 170), "PV": (170, 187), "SOM": (187, 200)}
    assert list(c.population[:170]) == ["E"] * 170 and set(c.population[170:]) == {"I"}
    assert c.unit_population[180] == "PV" and c.unit_population[195] == "SOM"


def test_dense_blocks_sum_to_the_signed_couplings(epvsom):
    """Each row of block (post, pre) sums to +-J_post,pre (dense, weight_cv = 0): exact to rounding."""
    for i, post in enumerate(NAMES):
        for j, pre in enumerate(NAMES):
            rows = epvsom.block(post, pre).sum(axis=1)
            np.testing.assert_allclose(rows, W_POP[i, j], rtol=0, atol=1e-12)
    assert epvsom.block("SOM", "PV").size and not epvsom.mask[np.ix_(epvsom.select("SOM"), epvsom.select("PV"))].any()


def test_steady_state_matches_the_population_equations(epvsom):
    """Above threshold the relu circuit is linear: r* = (I - W_pop)^-1 (b + g u) per population."""
    for u in (0.0, 0.5, 1.0):
        expected = np.linalg.solve(np.eye(3) - W_POP, BIAS + GAIN * u)  # (1.2, 1.4, 1.2) + u
        r = steady_state(epvsom, np.array([u])).numpy()[0]
        got = [r[epvsom.layout[k]].mean() for k in NAMES]
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
        np.testing.assert_allclose(expected, np.array([1.2, 1.4, 1.2]) + u, atol=1e-12)


def test_simulation_reaches_it_and_results_carry_the_names(epvsom):
    ds = simulate(epvsom, "constant:amp=0.5", duration_ms=400.0, dt_ms=0.5, device="cpu")
    assert list(dict.fromkeys(ds["population"].values.tolist())) == NAMES
    assert set(ds["cell_type"].values.tolist()) == {"E", "I"}
    mean = population_mean(ds, "r", last_fraction=0.1)
    assert list(mean) == NAMES
    # slowest mode decays as exp(-0.05 t/ms): after 360 ms the gap is ~e^-18 of the initial one
    np.testing.assert_allclose([mean[k] for k in NAMES], [1.7, 1.9, 1.7], atol=1e-6)


def test_paradoxical_pv_and_isn_per_population(epvsom):
    """Extra drive to PV lowers PV by 0.4 per unit (the E-SOM loop is unstable: Cramer's rule)."""
    base = steady_state(epvsom, np.array([0.0])).numpy()[0]
    more = build_circuit(epvsom.spec.replace(**{"bias.PV": 1.1}))
    after = steady_state(more, np.array([0.0])).numpy()[0]
    sl = epvsom.layout["PV"]
    assert after[sl].mean() - base[sl].mean() == pytest.approx(-0.04, abs=1e-9)
    lin = analyze(epvsom, 0.0)
    # population-level Jacobian eigenvalues are eigenvalues of the unit-level one (uniform dense blocks)
    tau = np.array([20.0, 10.0, 20.0])
    pop_eig = np.linalg.eigvals((-np.eye(3) + W_POP) / tau[:, None])
    for ev in pop_eig:
        assert np.min(np.abs(lin.eigenvalues - ev)) < 1e-9
    assert lin.max_eig_real == pytest.approx(-0.05, abs=1e-9)
    assert lin.ee_loop_gain_by_population == {"E": pytest.approx(2.0)}
    assert lin.isn_by_population == {"E": True} and lin.inhibition_stabilized


# ------------------------------------------------------------- shorthand equivalence
SHORT = {
    "seed": 7,
    "populations": {"E": {"n": 12, "tau_ms": 20.0}, "I": {"n": 5, "tau_ms": 10.0}},
    "connectivity": {"kind": "sparse", "p": 0.4, "weight_cv": 0.3,
                     "J_EE": 1.1, "J_EI": 1.7, "J_IE": 0.9, "J_II": 0.6},
    "input": {"n_inputs": 2, "gain_E": 1.0, "gain_I": 0.4, "projection": "random"},
    "bias": {"E": 0.3, "I": -0.2},
}


def _named(data: dict[str, Any], e: str = "Pyr", i: str = "Inh") -> dict[str, Any]:
    """The same circuit with populations renamed and the couplings as a pathway table."""
    out = copy.deepcopy(data)
    pops = out.pop("populations")
    out["populations"] = {e: dict(pops["E"], type="excitatory"), i: dict(pops["I"], type="inhibitory")}
    conn = out["connectivity"]
    J = {k: conn.pop(k) for k in ("J_EE", "J_EI", "J_IE", "J_II")}
    conn["pathways"] = {e: {e: {"J": J["J_EE"]}, i: {"J": J["J_EI"]}}, i: {e: {"J": J["J_IE"]}, i: {"J": J["J_II"]}}}
    out["bias"] = {e: data["bias"]["E"], i: data["bias"]["I"]}
    return out


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_named_populations_reproduce_the_shorthand_exactly(kind):
    short = copy.deepcopy(SHORT)
    short["connectivity"]["kind"] = kind
    a = build_circuit(parse_spec(short))
    b = build_circuit(parse_spec(_named(short)))
    for k in ("W", "B", "b", "tau_ms", "mask", "population"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k), err_msg=k)
    assert b.population_names == ["Pyr", "Inh"] and a.population_names == ["E", "I"]


def test_file_order_inhibitory_first_still_puts_excitatory_units_first():
    data = _named(SHORT)
    data["populations"] = dict(reversed(list(data["populations"].items())))
    c = build_circuit(parse_spec(data))
    assert c.population_names == ["Pyr", "Inh"] and c.n_E == 12 and list(c.population[:12]) == ["E"] * 12


def test_per_pathway_probability_and_by_population_input():
    data = _named(SHORT)
    data["connectivity"]["pathways"]["Inh"]["Pyr"]["p"] = 1.0
    data["connectivity"]["pathways"]["Pyr"]["Pyr"]["p"] = 0.0
    data["input"] = {"n_inputs": 2, "projection": "by_population", "gain": {"Pyr": 2.0, "Inh": 3.0}}
    c = build_circuit(parse_spec(data))
    assert c.mask[np.ix_(c.select("Inh"), c.select("Pyr"))].all()
    assert not c.mask[np.ix_(c.select("Pyr"), c.select("Pyr"))].any()
    np.testing.assert_array_equal(c.B[:12], np.tile([2.0, 0.0], (12, 1)))
    np.testing.assert_array_equal(c.B[12:], np.tile([0.0, 3.0], (5, 1)))


def test_distinct_transfers_per_population():
    data = _named(SHORT)
    data["populations"]["Inh"]["transfer"] = {"name": "relu", "gain": 2.0}
    data["populations"]["Pyr"]["transfer"] = {"name": "linear", "gain": 0.5}
    c = build_circuit(parse_spec(data))
    z = torch.linspace(-1, 1, c.n_units, dtype=torch.float64)
    want = torch.cat([0.5 * z[:12], 2.0 * torch.clamp(z[12:], min=0)])
    assert torch.equal(c.phi(z), want)


# ------------------------------------------------------------------- refusals
THREE = {
    "populations": {"E": {"n": 4, "tau_ms": 20.0}, "PV": {"n": 2, "tau_ms": 10.0, "type": "inhibitory"},
                    "SOM": {"n": 2, "tau_ms": 20.0, "type": "inhibitory"}},
    "connectivity": {"pathways": {"E": {"E": {"J": 1.0}, "PV": {"J": 1.0}}, "PV": {"E": {"J": 1.0}}}},
}


REFUSED = [
    ("connectivity.pathways.VIP", {"E": {"J": 1.0}}, "connectivity.pathways.VIP", "a population name: E, PV, SOM"),
    ("connectivity.pathways.PV.VIP", {"J": 1.0}, "connectivity.pathways.PV.VIP", "a population name"),
    ("populations.SOM.type", "modulatory", "populations.SOM.type", "'excitatory' or 'inhibitory'"),
    ("populations.VIP", {"n": 2, "tau_ms": 10.0}, "populations.VIP.type", "'excitatory' or 'inhibitory'"),
    ("populations.E.type", "inhibitory", "populations.E.type", "'excitatory' for a population named E"),
    ("populations.PV.n", 0, "populations.PV.n", "greater than or equal to 1"),
    ("populations.SOM.n", 10**9, "populations.SOM.n", "less than or equal to"),
    ("connectivity.J_EE", 1.0, "connectivity.J_EE", "only for a circuit of populations E and I"),
    ("connectivity.pathways.E.PV.J", -1.0, "connectivity.pathways.E.PV.J", "greater than or equal to 0"),
    ("connectivity.pathways.E.PV.p", 1.5, "connectivity.pathways.E.PV.p", "less than or equal to 1"),
    ("connectivity.pathways.E.PV.w", 1.0, "connectivity.pathways.E.PV.w", "unknown field"),
    ("bias.VIP", 1.0, "bias.VIP", "a population name"),
    ("bias.PV", "high", "bias.PV", "a number"),
    ("input.gain.VIP", 1.0, "input.gain.VIP", "a population name"),
    ("input.gain.PV", -1.0, "input.gain.PV", "greater than or equal to 0"),
    ("spiking.populations.VIP", {"tau_m_ms": 10.0}, "spiking.populations.VIP", "a population name"),
    ("spiking.pathways.VIP", {"E": 0.1}, "spiking.pathways.VIP", "a population name"),
    ("spiking.pathways.E.VIP", 0.1, "spiking.pathways.E.VIP", "a population name"),
    ("spiking.pathways.E.PV", 1.5, "spiking.pathways.E.PV", "less than or equal to 1"),
    ("spiking.pathways.E.PV", 0.0, "spiking.pathways.E.PV", "greater than 0"),
    ("populations.names", {"n": 1, "tau_ms": 1.0, "type": "inhibitory"}, "populations.names", "reserved"),
    ("populations.a b", {"n": 1, "tau_ms": 1.0, "type": "inhibitory"}, "populations.a b", "a population name"),
    ("input.projection", "by_population", "input.n_inputs", "3 for projection = 'by_population'"),
]


@pytest.mark.parametrize("dotted,value,field,allowed", REFUSED, ids=[r[0] + "=" + str(r[1])[:12] for r in REFUSED])
def test_bad_population_tables_name_the_field(dotted, value, field, allowed):
    with pytest.raises(SpecError) as err:
        parse_spec(_set(THREE, dotted, value))
    assert err.value.field == field
    assert allowed in err.value.allowed


def test_no_excitatory_population_and_missing_shorthand_half():
    data = copy.deepcopy(THREE)
    data["populations"] = {"PV": THREE["populations"]["PV"]}
    data["connectivity"] = {}
    with pytest.raises(SpecError, match="at least one excitatory population"):
        parse_spec(data)
    with pytest.raises(SpecError) as err:
        parse_spec({"populations": {"I": {"n": 2, "tau_ms": 10.0}}})
    assert err.value.field == "populations.E" and "missing" in err.value.allowed


def test_typo_inside_a_named_population_gets_a_suggestion():
    with pytest.raises(SpecError) as err:
        parse_spec(_set(THREE, "populations.SOM.tau_mss", 3.0))
    assert err.value.field == "populations.SOM.tau_mss" and "did you mean 'tau_ms'" in err.value.allowed


# ------------------------------------------------------------------- fuzzing
FUZZ = settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
_POP = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", min_size=1, max_size=6)


@st.composite
def named_specs(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(_POP.filter(lambda s: s not in ("E", "I")), min_size=1, max_size=5, unique=True))
    types = ["excitatory"] + [draw(st.sampled_from(["excitatory", "inhibitory"])) for _ in names[1:]]
    pops = {k: {"n": draw(st.integers(1, 6)), "tau_ms": draw(st.floats(2.0, 30.0)), "type": t}
            for k, t in zip(names, types)}
    pathways = {post: {pre: {"J": draw(st.floats(0.0, 2.0))} for pre in names if draw(st.booleans())}
                for post in names}
    kind = draw(st.sampled_from(["dense", "sparse"]))
    return {"seed": draw(st.integers(0, 2**31)), "populations": pops,
            "connectivity": {"kind": kind, "p": draw(st.floats(0.1, 1.0)), "pathways": pathways},
            "input": {"gain": {k: draw(st.floats(0.0, 1.0)) for k in names}},
            "bias": {k: draw(st.floats(-1.0, 1.0)) for k in names}}


@pytest.mark.filterwarnings("ignore::UserWarning")  # short, coarse runs of random circuits warn by design
@FUZZ
@given(data=named_specs())
def test_random_named_circuits_keep_dale_sizes_and_order(data: dict[str, Any]) -> None:
    spec = parse_spec(data)
    c = build_circuit(spec)
    lay = population_layout(spec)
    assert c.n_units == sum(p["n"] for p in data["populations"].values())
    exc = [k for k in data["populations"] if data["populations"][k]["type"] == "excitatory"]
    assert list(lay)[: len(exc)] == exc  # excitatory populations first, in file order
    for k, sl in lay.items():
        sign = 1 if k in exc else -1
        assert np.all(sign * c.W[:, sl] >= 0)
        assert np.all(c.b[sl] == data["bias"][k])
    ds = simulate(c, "constant:amp=0.1", duration_ms=2.0, dt_ms=0.5, device="cpu")
    assert list(dict.fromkeys(ds["population"].values.tolist())) == list(lay)


@FUZZ
@given(data=named_specs(), bad=_POP.filter(lambda s: s not in ("E", "I")), where=st.integers(0, 3))
def test_random_unknown_names_are_refused_by_field(data: dict[str, Any], bad: str, where: int) -> None:
    if bad in data["populations"]:
        return
    first = next(iter(data["populations"]))
    dotted = [f"connectivity.pathways.{bad}", f"connectivity.pathways.{first}.{bad}", f"bias.{bad}",
              f"input.gain.{bad}"][where]
    value = {"J": 1.0} if where == 1 else ({first: {"J": 1.0}} if where == 0 else 0.5)
    with pytest.raises(SpecError) as err:
        parse_spec(_set(data, dotted, value))
    assert err.value.field == dotted and "a population name" in err.value.allowed
