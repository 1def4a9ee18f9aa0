"""Statistics helpers on simulated data with known effects: error rates, power, coverage, verdicts.

Rates are checked against exact values (the t-tests' size is alpha; their power
follows the noncentral t distribution) within 3.5 binomial standard errors of
the number of simulated datasets, so a correct implementation fails about once
in 4000 runs and a wrong one (two-sided p for a one-sided test, the wrong
tail, a biased CI) is caught.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from cortex_resnet.errors import SpecError, TooFewSeedsError, UnknownNameError
from cortex_resnet.hypotheses.stats import (VERDICTS, TestResult, cohens_d, combine_verdicts, compare, decide,
                                 hodges_lehmann_interval, hodges_lehmann_shift_interval, holm, mann_whitney,
                                 one_sample, paired, rank_biserial, t_interval, welch, welch_interval, wilcoxon)

ALPHA = 0.05
N_SIM = 600


def _band(p: float, n: int = N_SIM, k: float = 3.5) -> tuple[float, float]:
    se = math.sqrt(p * (1 - p) / n)
    return p - k * se, p + k * se


def _rejection_rate(make, test, rng: np.random.Generator, n_sim: int = N_SIM) -> float:
    hits = 0
    for _ in range(n_sim):
        res = test(*make(rng))
        hits += res.p_value < ALPHA
    return hits / n_sim


# design name -> (data under H0, data with a true effect, test)
N = 10


def _one(rng, shift):
    return (rng.normal(shift, 1.0, N),)


def _two(rng, shift):
    return rng.normal(shift, 1.0, N), rng.normal(0.0, 3.0, 2 * N)


def _pairs(rng, shift):
    base = rng.normal(0.0, 2.0, N)
    return base + shift + rng.normal(0.0, 1.0, N), base


CASES = {
    "one-sample t": (_one, lambda *d: one_sample(*d, 0.0, "greater")),
    "paired t": (_pairs, lambda a, b: paired(a, b, "greater")),
    "welch": (_two, lambda a, b: welch(a, b, "greater")),
    "mann-whitney": (_two, lambda a, b: mann_whitney(a, b, "greater")),
    "wilcoxon": (_one, lambda *d: wilcoxon(*d, 0.0, "greater")),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_false_positive_rate_is_alpha_under_the_null(name):
    """Welch and Mann-Whitney with unequal variances (sd 1 vs 3) and sizes (10 vs 20); the rank
    tests' exact/normal p-values are at most alpha, so only the upper bound applies to them."""
    make, test = CASES[name]
    rate = _rejection_rate(lambda g: make(g, 0.0), test, np.random.default_rng(1))
    lo, hi = _band(ALPHA)
    assert rate <= hi
    if name in ("one-sample t", "paired t", "welch"):
        assert rate >= lo


def test_one_sample_power_matches_the_noncentral_t():
    """A shift of 0.8 sd with n = 10: power = P(T' > t_crit) for T' ~ nct(9, 0.8 sqrt(10))."""
    make, test = CASES["one-sample t"]
    rate = _rejection_rate(lambda g: make(g, 0.8), test, np.random.default_rng(2))
    power = 1 - st.nct.cdf(st.t.ppf(1 - ALPHA, N - 1), N - 1, 0.8 * math.sqrt(N))
    lo, hi = _band(power)
    assert lo <= rate <= hi


@pytest.mark.parametrize("name", sorted(CASES))
def test_true_effect_is_found(name):
    """A shift of 1.5 sd of the noise (one sample, pairs), or of 1 sd of the wider group of the
    two-sample designs (3.0 against sd 1 and 3): detected in at least 85 % of the datasets."""
    make, test = CASES[name]
    shift = 3.0 if name in ("welch", "mann-whitney") else 1.5
    assert _rejection_rate(lambda g: make(g, shift), test, np.random.default_rng(3), 200) >= 0.85


@pytest.mark.parametrize("name", sorted(CASES))
def test_wrong_direction_is_never_supported(name):
    make, test = CASES[name]
    assert _rejection_rate(lambda g: make(g, -1.5), test, np.random.default_rng(4), 200) <= 0.01


# (confidence intervals and their coverage: tests/test_stats_intervals.py)


@pytest.mark.parametrize("a,b,null,expected", [
    ([1.0, 2.0, 3.0], None, 0.0, 2.0),              # mean 2, sd 1
    ([1.0, 2.0, 3.0], None, 2.0, 0.0),
    ([2.0, 3.0, 4.0], [0.0, 1.0, 2.0], 0.0, 2.0),   # difference 2, pooled sd 1
])
def test_cohens_d_known_values(a, b, null, expected):
    assert cohens_d(np.array(a), None if b is None else np.array(b), null) == pytest.approx(expected)


@pytest.mark.parametrize("a,b,expected", [
    ([5.0, 6.0, 7.0], [1.0, 2.0, 3.0], 1.0),        # complete separation
    ([1.0, 2.0, 3.0], [5.0, 6.0, 7.0], -1.0),
    ([1.0, 2.0], [1.0, 2.0], 0.0),
])
def test_rank_biserial_two_samples(a, b, expected):
    assert rank_biserial(np.array(a), np.array(b)) == pytest.approx(expected)


def test_rank_biserial_signed_ranks():
    """d = [1, -2, 3, 4]: ranks 1..4, T+ = 8, T- = 2 -> (8 - 2) / 10."""
    assert rank_biserial(np.array([1.0, -2.0, 3.0, 4.0])) == pytest.approx(0.6)


def test_holm_matches_hand_computation():
    """p = [0.01, 0.04, 0.03, 0.005]: sorted x (4, 3, 2, 1) = 0.02, 0.03, 0.06, 0.04 -> monotone."""
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])


def test_holm_controls_the_family_wise_error_rate():
    """Five true nulls (uniform p-values): P(any adjusted p < alpha) <= alpha."""
    rng = np.random.default_rng(6)
    fwer = np.mean([np.any(holm(rng.uniform(size=5)) < ALPHA) for _ in range(2000)])
    assert fwer <= _band(ALPHA, 2000)[1]


def _result(estimate, ci, p, alternative="greater", null=0.0, n=5, coverage=0.95):
    return TestResult("t", 1.0, p, 1.0, "cohens_d", estimate, ci, 0.95, n, alternative, null, "t", coverage)


@pytest.mark.parametrize("res,min_effect,expected", [
    (_result(1.0, (0.5, 1.5), 0.01), 0.2, "supported"),
    (_result(0.05, (-0.1, 0.15), 0.3), 0.2, "not supported"),       # CI excludes effects >= 0.2
    (_result(0.3, (-0.2, 0.8), 0.2), 0.2, "inconclusive"),
    (_result(-1.0, (-1.5, -0.5), 0.01, "less"), 0.0, "supported"),
    (_result(0.5, (0.2, 0.8), 0.99, "less"), 0.0, "not supported"),
    (_result(0.0, (-0.05, 0.05), 0.9, "two-sided"), 0.1, "not supported"),
])
def test_decide(res, min_effect, expected):
    assert decide(res, alpha=ALPHA, min_effect=min_effect) == expected
    assert expected in VERDICTS


@pytest.mark.parametrize("coverage", [math.nan, 0.83])
def test_decide_never_reads_not_supported_from_an_under_covering_interval(coverage):
    """The same numbers that give "not supported" with a 95 % interval (test_decide, row 2) stay
    inconclusive when the interval's coverage is unknown or below its level (e.g. a percentile
    bootstrap at n = 5)."""
    res = _result(0.05, (-0.1, 0.15), 0.3, coverage=coverage)
    assert decide(res, alpha=ALPHA, min_effect=0.2) == "inconclusive"
    assert decide(_result(1.0, (0.5, 1.5), 0.01, coverage=coverage), alpha=ALPHA) == "supported"


def test_decide_uses_the_adjusted_p_value():
    res = _result(1.0, (0.5, 1.5), 0.03)
    assert decide(res, alpha=ALPHA) == "supported"
    assert decide(res, alpha=ALPHA, p_value=0.09) == "inconclusive"


@pytest.mark.parametrize("values", [[1.0], []])
def test_fewer_than_two_seeds_is_refused(values):
    """A dedicated type (a SpecError: exit 2), so callers need not match the message."""
    with pytest.raises(TooFewSeedsError, match="at least 2 seeds") as err:
        one_sample(values)
    assert isinstance(err.value, SpecError) and err.value.n == len(values)


def test_a_verdict_from_one_seed_is_refused():
    with pytest.raises(TooFewSeedsError, match="at least 2 seeds"):
        decide(_result(1.0, (1.0, 1.0), 0.0, n=1))


def test_zero_spread_gives_a_definite_answer():
    """Deterministic runs (identical seeds): t = +-inf, p = 0 on H1's side, 1 on the other."""
    r = one_sample([2.5, 2.5, 2.5], 1.0, "greater")
    assert r.p_value == 0.0 and math.isinf(r.statistic) and r.ci == (2.5, 2.5)
    assert one_sample([2.5, 2.5, 2.5], 1.0, "less").p_value == 1.0
    assert one_sample([1.0, 1.0], 1.0, "greater").p_value == 1.0


def test_non_finite_values_are_refused():
    with pytest.raises(SpecError, match="finite"):
        one_sample([1.0, float("nan"), 2.0])


@pytest.mark.parametrize("design,family,expected", [
    ("one-sample", "t", "one-sample t-test"), ("one-sample", "rank", "Wilcoxon signed-rank test"),
    ("paired", "t", "paired t-test"), ("paired", "rank", "Wilcoxon signed-rank test (paired)"),
    ("independent", "t", "Welch t-test"), ("independent", "rank", "Mann-Whitney U test"),
])
def test_compare_picks_the_test_for_the_design(design, family, expected):
    a, b = np.arange(6.0) + 2, np.arange(6.0)
    assert compare(a, b, design=design, family=family).test == expected


@pytest.mark.parametrize("kwargs", [{"family": "z"}, {"design": "crossover"}, {"alternative": "bigger"}])
def test_compare_rejects_unknown_names(kwargs):
    with pytest.raises(UnknownNameError):
        compare(np.arange(5.0), np.arange(5.0) + 1, **({"design": "paired"} | kwargs))


@pytest.mark.parametrize("verdicts,expected", [
    (["supported", "supported"], "supported"),
    (["supported", "inconclusive"], "inconclusive"),
    (["supported", "not supported", "inconclusive"], "not supported"),
])
def test_combine_verdicts(verdicts, expected):
    assert combine_verdicts(verdicts) == expected
