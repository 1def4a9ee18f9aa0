"""Hypotheses: each --quick run gives a well-formed verdict and report; verdicts follow the
analytic linear predictions (isn-paradox, amplification); specs are validated; runs resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from cortex_resnet.errors import SpecError, UnknownNameError
from cortex_resnet.hypotheses import get_hypothesis, known_hypotheses, list_hypotheses, rebuild_report, run_hypothesis
from cortex_resnet.hypotheses._circuits import population_prediction
from cortex_resnet.hypotheses.depth_latency import first_stable_index
from cortex_resnet.hypotheses.inhibition_silencing import gain_model_r2, relative_change
from cortex_resnet.io.results import load_dataset
from cortex_resnet.hypotheses.stats import VERDICTS

RATE_HYPOTHESES = ["isn-paradox", "amplification", "depth-latency", "inhibition-silencing"]
CONTRACT = {"name", "verdict", "test", "statistic", "p_value", "effect_size", "ci", "seeds", "out"}


_QUICK: dict[str, tuple] = {}


def _quick(name: str, tmp_path_factory) -> tuple:
    """One --quick run per hypothesis and test session (shared by the tests below)."""
    if name not in _QUICK:
        out = tmp_path_factory.mktemp(name)
        _QUICK[name] = (name, out, run_hypothesis(name, quick=True, workers=0, out=out))
    return _QUICK[name]


@pytest.fixture(scope="module", params=RATE_HYPOTHESES)
def quick_run(request, tmp_path_factory):
    return _quick(request.param, tmp_path_factory)


def _spec(tmp_path: Path, name: str, params: str, seeds: int = 3) -> Path:
    p = tmp_path / f"{name}.toml"
    p.write_text(f'hypothesis = "{name}"\nseeds = {seeds}\n[params]\n{params}\n')
    return p


def test_registry_lists_the_rate_hypotheses():
    assert set(RATE_HYPOTHESES) <= set(known_hypotheses())
    items = list_hypotheses()
    assert [h["name"] for h in items] == known_hypotheses()
    assert all({"name", "claim", "h0", "h1"} <= set(h) and h["claim"] and h["h0"] and h["h1"] for h in items)


def test_unknown_hypothesis_lists_the_known_ones():
    with pytest.raises(UnknownNameError, match="known: .*isn-paradox"):
        get_hypothesis("no-such-claim")


def test_quick_run_is_well_formed(quick_run):
    name, out, s = quick_run
    assert CONTRACT <= set(s) and s["name"] == name and s["out"] == str(out)
    assert s["verdict"] in VERDICTS and s["seeds"] >= 2
    assert 0.0 <= s["p_value"] <= 1.0 and len(s["ci"]) == 2 and s["ci"][0] <= s["ci"][1]
    assert all(c["verdict"] in VERDICTS and c["p_adjusted"] >= c["p_value"] for c in s["comparisons"])
    assert json.loads((out / "report.json").read_text())["verdict"] == s["verdict"]
    md = (out / "report.md").read_text()
    for part in ("**Claim.**", "## Design", "## Results", "## Tests", "## Verdict", f"figures/{name}.png"):
        assert part in md
    assert (out / "figures" / f"{name}.png").stat().st_size > 10_000
    ds = load_dataset(out / "results.nc")
    assert ds.sizes["seed"] == s["seeds"] and ds.attrs["hypothesis"] == name


def test_report_rebuild_gives_the_same_verdict(quick_run):
    name, out, s = quick_run
    again = rebuild_report(out)
    assert (again["verdict"], again["statistic"], again["p_value"]) == (s["verdict"], s["statistic"], s["p_value"])


def test_rerun_into_the_same_folder_reuses_the_task_cache(tmp_path):
    first = run_hypothesis("isn-paradox", quick=True, workers=0, out=tmp_path)
    n_cached = len(list((tmp_path / ".cache").glob("*.json")))
    second = run_hypothesis("isn-paradox", quick=True, workers=0, out=tmp_path)
    assert n_cached == 6 and second["statistic"] == first["statistic"]
    assert second["compute_s"] < 0.5 * max(first["compute_s"], 0.2)


# ----------------------------------------------------------------- analytic agreement

def test_isn_paradox_agrees_with_the_linear_prediction(tmp_path):
    """A small extra drive (0.003) keeps every unit on its side of threshold, so the steady-state
    change equals the unit-level linear response (I - D W)^-1 D B du to round-off (1e-12), and the
    verdict follows the sign of (1 - J_EE)/D: -1/3 (ISN, J_EE = 2) and +1/12 (control, J_EE = 0.5)."""
    spec = _spec(tmp_path, "isn-paradox", "extra_drive = 0.003\nmin_effect = 0.0001\nn_E = 40\nn_I = 10\n"
                                          "duration_ms = 150.0\nonset_ms = 50.0")
    s = run_hypothesis("isn-paradox", spec=spec, workers=0, out=tmp_path / "run")
    ds = load_dataset(tmp_path / "run" / "results.nc")
    np.testing.assert_allclose(ds["delta_rI"], ds["pred_delta_rI"], rtol=0, atol=1e-12)
    assert population_prediction(2.0, 2.5, 2.0, 1.0)["dI_dgI"] == pytest.approx(-1 / 3)
    assert population_prediction(0.5, 2.5, 2.0, 1.0)["dI_dgI"] == pytest.approx(1 / 12)
    assert s["verdict"] == "supported" and s["estimate"] < 0


def test_isn_paradox_is_not_supported_when_the_linear_prediction_says_no_paradox(tmp_path):
    """isn_J_EE = 0.8 < 1: (1 - J_EE)/D = 0.2/6.4 > 0, so r_I rises: the CI lies above 0."""
    spec = _spec(tmp_path, "isn-paradox", "isn_J_EE = 0.8\nn_E = 40\nn_I = 10\nduration_ms = 150.0\nonset_ms = 50.0")
    s = run_hypothesis("isn-paradox", spec=spec, workers=0, out=tmp_path / "run")
    assert population_prediction(0.8, 2.5, 2.0, 1.0)["dI_dgI"] > 0
    assert s["verdict"] == "not supported" and s["comparisons"][0]["verdict"] == "not supported"


def test_amplification_equals_the_two_population_formula_for_homogeneous_weights(tmp_path):
    """weight_cv = 0, uniform projection: every E unit is identical, so r_E/x_E is exactly
    [(1 + J_II) g_E - J_EI g_I] / (D g_E) = (2 - 1)/(0.4) = 2.5 and x_E/r_E = 0.4, in [1/3, 1/2]."""
    spec = _spec(tmp_path, "amplification", "weight_cv = 0.0\nn_E = 40\nn_I = 10\nJ_EE_values = [2.0]\n"
                                            "duration_ms = 50.0")
    s = run_hypothesis("amplification", spec=spec, workers=0, out=tmp_path / "run")
    ds = load_dataset(tmp_path / "run" / "results.nc")
    np.testing.assert_allclose(ds["gain"], 2.5, rtol=1e-10)
    assert s["verdict"] == "supported" and s["estimate"] == pytest.approx(2.5, rel=1e-10)


def test_amplification_with_heterogeneous_weights_stays_near_the_formula(tmp_path_factory):
    """weight_cv = 0.2 over 100 units: per-seed gains within 15 % of 2.5 (observed sd ~ 0.2)."""
    _, out, _ = _quick("amplification", tmp_path_factory)
    ds = load_dataset(out / "results.nc")
    g = ds["gain"].sel(condition="J_EE=2").values
    np.testing.assert_allclose(g, 2.5, rtol=0.15)
    np.testing.assert_allclose(ds["gain"], ds["pred_gain"], rtol=1e-9)


def test_amplification_not_supported_without_enough_recurrent_excitation(tmp_path):
    """J_EE = 1: the formula gives gain (2 - 1)/2.4 = 0.42 < 1: no amplification."""
    spec = _spec(tmp_path, "amplification", "weight_cv = 0.0\nn_E = 40\nn_I = 10\nJ_EE_values = [1.0]\n"
                                            "test_J_EE = 1.0\nduration_ms = 50.0")
    s = run_hypothesis("amplification", spec=spec, workers=0, out=tmp_path / "run")
    assert s["estimate"] == pytest.approx(1 / 2.4, rel=1e-10)
    assert s["verdict"] == "not supported"


# ------------------------------------------------------------------ helpers

@pytest.mark.parametrize("ok,expected", [([0, 1, 1], 1), ([1, 1], 0), ([1, 0, 1, 1], 2), ([1, 1, 0], 3), ([], 0)])
def test_first_stable_index(ok, expected):
    assert first_stable_index(np.array(ok, bool)) == expected


def test_gain_model_r2_is_one_for_a_pure_gain_and_low_for_a_shared_offset():
    x = np.random.default_rng(0).uniform(0.5, 1.5, size=(50, 20))
    r2, g = gain_model_r2(1.5 * x, x)
    assert r2 == pytest.approx(1.0) and g == pytest.approx(2.5)
    r2_offset, _ = gain_model_r2(np.ones_like(x) + 0.0 * x - x.mean(), x - x.mean())
    assert r2_offset < 0.1
    assert relative_change(np.full(4, 1.1), np.ones(4)) == pytest.approx(0.1)


# ------------------------------------------------------------------ bad input

def test_fewer_than_two_seeds_is_refused():
    with pytest.raises(SpecError, match="at least 2 seeds"):
        run_hypothesis("isn-paradox", quick=True, seeds=1, workers=0)


def test_spec_with_one_seed_is_refused(tmp_path):
    with pytest.raises(SpecError, match="at least 2 seeds"):
        run_hypothesis("isn-paradox", spec=_spec(tmp_path, "isn-paradox", "", seeds=1), workers=0)


def test_unknown_parameter_names_the_field(tmp_path):
    with pytest.raises(SpecError, match=r"params\.colour"):
        run_hypothesis("isn-paradox", spec=_spec(tmp_path, "isn-paradox", 'colour = "red"'), workers=0)


def test_spec_for_another_hypothesis_is_refused(tmp_path):
    with pytest.raises(SpecError, match="another hypothesis"):
        run_hypothesis("amplification", spec=_spec(tmp_path, "isn-paradox", ""), workers=0)


def test_missing_model_file_is_refused_before_any_output(tmp_path):
    with pytest.raises(SpecError, match="params.model"):
        run_hypothesis("isn-paradox", spec=_spec(tmp_path, "isn-paradox", 'model = "models/nope.toml"'),
                       workers=0, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_test_fraction_must_be_in_the_sweep(tmp_path):
    with pytest.raises(SpecError, match="test_fraction"):
        run_hypothesis("inhibition-silencing", workers=0,
                       spec=_spec(tmp_path, "inhibition-silencing", "silence_fractions = [0.5]"))


def test_every_quick_verdict_is_reproducible_from_its_seed(quick_run):
    """The statistic is a finite number or +-inf (zero spread); never NaN."""
    _, _, s = quick_run
    assert s["statistic"] is None or not math.isnan(s["statistic"])


def test_a_sub_claim_without_two_usable_seeds_is_inconclusive_not_an_error():
    """E.g. every plain net stayed at chance: the sub-claim cannot be tested; the others are
    still Holm-corrected among themselves and the hypothesis is inconclusive."""
    from cortex_resnet.hypotheses.base import Analysis, comparison
    from cortex_resnet.hypotheses.stats import one_sample

    ok = comparison("testable", lambda: one_sample([1.0, 1.1, 0.9], 0.0, "greater"))
    bad = comparison("untestable", lambda: one_sample([1.0], 0.0, "greater"))
    a = Analysis([ok, bad], []).finalize(0.05)
    assert ok.verdict == "supported" and ok.p_adjusted == ok.result.p_value
    assert bad.verdict == "inconclusive" and "not testable" in bad.note
    assert a.verdict == "inconclusive" and any("untestable" in n for n in a.notes)


def test_only_the_too_few_seeds_error_makes_a_sub_claim_untestable():
    """The type decides, not the message: another input error that happens to mention seeds
    propagates (exit 2) instead of being turned into an inconclusive sub-claim."""
    from cortex_resnet.errors import TooFewSeedsError
    from cortex_resnet.hypotheses.base import comparison

    def other() -> None:
        raise SpecError("params.depths", [2], "at least 2 seeds per depth")

    with pytest.raises(SpecError, match="params.depths"):
        comparison("other", other)

    def too_few() -> None:
        raise TooFewSeedsError("loss in condition plain", 1)

    assert not comparison("few", too_few).testable


def test_rebuild_accepts_runs_that_stored_a_bootstrap_size(tmp_path):
    """Runs from before the exact intervals stored ``n_boot`` in their spec: still re-analysable."""
    from cortex_resnet.io.results import save_dataset

    run_hypothesis("isn-paradox", quick=True, workers=0, out=tmp_path, figure=False)
    ds = load_dataset(tmp_path / "results.nc")
    ds.attrs["spec"] = json.dumps(json.loads(ds.attrs["spec"]) | {"n_boot": 2000})
    save_dataset(ds, tmp_path / "results.nc")
    s = rebuild_report(tmp_path)
    assert s["verdict"] in VERDICTS


@pytest.mark.parametrize("field,value", [("extra_drive", float("nan")), ("onset_ms", float("inf")),
                                         ("min_effect", True), ("duration_ms", "300.0")])
def test_hypothesis_params_refuse_non_finite_and_non_numbers(field, value):
    """Hypothesis files get the checks of every spec table (specbase.Frozen): NaN/inf, booleans
    and numeric strings where a number goes are refused naming the field."""
    from cortex_resnet.errors import SpecError
    from cortex_resnet.hypotheses.isn_paradox import HYPOTHESIS

    with pytest.raises(SpecError, match=field):
        HYPOTHESIS.parse_params({field: value})


def test_a_singular_circuit_stops_a_hypothesis_with_one_clear_line(tmp_path):
    """isn.toml with J_EE = 3.5 and uniform weights: D = (1 - J_EE)(1 + J_II) + J_EI J_IE = 0,
    so I - W is singular. The run stops with one line naming the condition and saying a rerun
    will not help, instead of reporting NaN eigenvalues as numbers or a worker traceback."""
    from cortex_resnet.errors import SimulationError

    spec = tmp_path / "singular.toml"
    models = Path(__file__).resolve().parents[2] / "models"
    spec.write_text(f'hypothesis = "isn-paradox"\nseeds = 2\n[params]\nmodel = "{models / "isn.toml"}"\n'
                    'weight_cv = 0.0\nisn_J_EE = 3.5\nn_E = 20\nn_I = 5\nduration_ms = 50.0\nonset_ms = 20.0\n')
    with pytest.raises(SimulationError) as info:
        run_hypothesis("isn-paradox", spec=spec, out=tmp_path / "out", workers=1, figure=False)
    msg = str(info.value)
    assert "\n" not in msg.strip() and "Traceback" not in msg
    assert "deterministic" in msg and any(w in msg for w in ("singular", "marginal", "steady state", "fixed point"))
