"""Confidence intervals of the tests: agreement with independent references and coverage by simulation.

References: SciPy's ``ttest_*(...).confidence_interval()`` for the t-intervals; inversion of
SciPy's exact Wilcoxon / Mann-Whitney tests and published critical values for the rank
intervals.

Coverage is measured on D = 4000 simulated datasets per seed count (vectorised, fixed seeds).
Its binomial standard error at 0.95 is sqrt(0.95 * 0.05 / 4000) = 0.0034; the bands are
+-4 SE (0.0138) around the coverage the method guarantees, so a correct method fails about
once in 16 000 runs, while the percentile bootstrap the intervals replace (0.73 / 0.82 / 0.89
at n = 3 / 5 / 10) and a normal-quantile interval (0.86 at n = 3) lie > 20 SE outside.
For the t-family the band [0.936, 0.964] implies the required coverage >= 0.93.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from cortex_resnet.hypotheses.stats import (compare, decide, hodges_lehmann_interval, hodges_lehmann_shift_interval,
                                 mann_whitney, one_sample, paired, t_interval, welch, welch_interval, wilcoxon)

D = 4000
SE = math.sqrt(0.95 * 0.05 / D)
BAND = 4 * SE


def _covered(lo: np.ndarray, hi: np.ndarray, truth: float) -> float:
    return float(np.mean((lo <= truth) & (truth <= hi)))


# ------------------------------------------------------------------ references

@pytest.mark.parametrize("n", [2, 3, 7])
def test_t_intervals_equal_scipy(n):
    g = np.random.default_rng(n)
    a, b = g.normal(1.0, 2.0, n), g.normal(0.0, 0.5, n + 3)
    np.testing.assert_allclose(t_interval(a), tuple(st.ttest_1samp(a, 0.0).confidence_interval()), rtol=1e-12)
    np.testing.assert_allclose(welch_interval(a, b),
                               tuple(st.ttest_ind(a, b, equal_var=False).confidence_interval()), rtol=1e-12)
    np.testing.assert_allclose(one_sample(a).ci, t_interval(a), rtol=0)
    np.testing.assert_allclose(paired(a, a[::-1]).ci, t_interval(a - a[::-1]), rtol=0)
    np.testing.assert_allclose(welch(a, b).ci, welch_interval(a, b), rtol=0)


@pytest.mark.parametrize("n,k", [(6, 1), (8, 4), (10, 9), (15, 26), (20, 53)])
def test_signed_rank_interval_uses_the_published_critical_values(n, k):
    """Two-sided 5 % critical values of the signed-rank statistic (tables, e.g. Hollander & Wolfe):
    T <= 0, 3, 8, 25, 52 at n = 6, 8, 10, 15, 20, so the bounds are the (T+1)-th smallest and
    largest Walsh averages."""
    x = np.random.default_rng(0).normal(size=n)
    walsh = np.sort([(x[i] + x[j]) / 2 for i in range(n) for j in range(i, n)])
    _, lo, hi, _ = hodges_lehmann_interval(x)
    assert (lo, hi) == (walsh[k - 1], walsh[-k])


@pytest.mark.parametrize("n", [6, 9, 12])
def test_signed_rank_interval_inverts_scipys_exact_test(n):
    """A centre just inside a bound is not rejected by SciPy's exact two-sided Wilcoxon test at 5 %,
    one just outside is (the interval is the set of centres the test accepts)."""
    x = np.random.default_rng(10 + n).normal(size=n)
    _, lo, hi, _ = hodges_lehmann_interval(x)
    eps = 1e-9
    p = lambda c: st.wilcoxon(x - c, method="exact").pvalue  # noqa: E731
    assert p(lo + eps) > 0.05 and p(hi - eps) > 0.05
    assert p(lo - eps) <= 0.05 and p(hi + eps) <= 0.05


@pytest.mark.parametrize("n1,n2", [(4, 4), (5, 7), (10, 10)])
def test_rank_sum_interval_inverts_scipys_exact_test(n1, n2):
    g = np.random.default_rng(n1 * n2)
    a, b = g.normal(1.0, 1.0, n1), g.normal(0.0, 1.0, n2)
    _, lo, hi, _ = hodges_lehmann_shift_interval(a, b)
    eps = 1e-9
    p = lambda c: st.mannwhitneyu(a - c, b, method="exact").pvalue  # noqa: E731
    assert p(lo + eps) > 0.05 and p(hi - eps) > 0.05
    assert p(lo - eps) <= 0.05 and p(hi + eps) <= 0.05


def test_hodges_lehmann_estimates():
    """x = [0, 1, 5]: Walsh averages 0, 0.5, 2.5, 1, 3, 5 -> median 1.75; a - b with a = [3, 4],
    b = [0, 1]: differences 3, 2, 4, 3 -> median 3."""
    assert float(hodges_lehmann_interval(np.array([0.0, 1.0, 5.0]))[0]) == pytest.approx(1.75)
    assert float(hodges_lehmann_shift_interval(np.array([3.0, 4.0]), np.array([0.0, 1.0]))[0]) == 3.0


# ------------------------------------------------------------------ coverage

def test_coverage_band_rejects_the_percentile_bootstrap():
    """The band can fail: the percentile bootstrap of the mean (what the intervals replace) at n = 5
    and a t-interval with the normal quantile at n = 3 both lie far below it."""
    g = np.random.default_rng(1)
    d = 1000  # 1000 datasets x 200 resamples keep it fast; band 4 SE at d = 1000: 0.028
    x = g.normal(0.0, 1.0, (d, 5))
    idx = g.integers(0, 5, (d, 200, 5))
    boot = np.sort(np.take_along_axis(np.broadcast_to(x[:, None, :], idx.shape), idx, -1).mean(-1), axis=1)
    assert _covered(boot[:, 4], boot[:, 194], 0.0) < 0.95 - 4 * math.sqrt(0.95 * 0.05 / d)
    x3 = g.normal(0.0, 1.0, (D, 3))
    half = 1.96 * x3.std(-1, ddof=1) / math.sqrt(3)
    assert _covered(x3.mean(-1) - half, x3.mean(-1) + half, 0.0) < 0.95 - BAND


@pytest.mark.parametrize("n", [3, 5, 10])
def test_t_interval_coverage(n):
    """Normal data (mean 0.3, sd 2; the paired test is this interval on the differences)."""
    x = np.random.default_rng(100 + n).normal(0.3, 2.0, (D, n))
    cov = _covered(*t_interval(x), 0.3)
    assert abs(cov - 0.95) <= BAND and cov >= 0.93


@pytest.mark.parametrize("n", [3, 5, 10])
def test_welch_interval_coverage(n):
    """Normal groups of n each with sd 1 and 3 (true difference 1). Welch-Satterthwaite is an
    approximation; with equal group sizes it covers 0.95 within the band at n = 3 already."""
    g = np.random.default_rng(200 + n)
    a, b = g.normal(1.0, 1.0, (D, n)), g.normal(0.0, 3.0, (D, n))
    cov = _covered(*welch_interval(a, b), 1.0)
    assert abs(cov - 0.95) <= BAND and cov >= 0.93


@pytest.mark.parametrize("n,exists,exact", [(3, False, 1.0), (5, False, 1.0), (6, True, 0.96875),
                                            (10, True, 0.951171875)])
def test_signed_rank_interval_coverage(n, exists, exact):
    """Symmetric heavy-tailed data (Laplace, centre 0.5). The exact coverage 1 - 2 P(T+ <= k - 1) is
    1 - 2/64 at n = 6 and 1 - 2 * 25/1024 at n = 10; at n <= 5 no finite interval reaches 95 %
    (the smallest tail, 2^-n, exceeds 0.025), so the interval is (-inf, inf) with coverage 1."""
    x = np.random.default_rng(300 + n).laplace(0.5, 1.0, (D, n))
    _, lo, hi, coverage = hodges_lehmann_interval(x)
    assert coverage == pytest.approx(exact, abs=1e-12)
    assert bool(np.all(np.isfinite(lo))) is exists
    cov = _covered(lo, hi, 0.5)
    assert abs(cov - exact) <= 4 * math.sqrt(exact * (1 - exact) / D) + 1e-12


@pytest.mark.parametrize("n,exists,exact", [(3, False, 1.0), (5, True, 1 - 2 * 4 / 252),
                                            (10, True, None)])
def test_rank_sum_interval_coverage(n, exists, exact):
    """Two skewed groups differing by a shift (exponential + 1 vs exponential), n per group. No
    finite interval at 3 vs 3 (smallest tail 1/20 > 0.025); at 5 vs 5 P(U <= 2) = 4/252."""
    g = np.random.default_rng(400 + n)
    a, b = g.exponential(1.0, (D, n)) + 1.0, g.exponential(1.0, (D, n))
    _, lo, hi, coverage = hodges_lehmann_shift_interval(a, b)
    if exact is not None:
        assert coverage == pytest.approx(exact, abs=1e-12)
    assert coverage >= 0.95 and bool(np.all(np.isfinite(lo))) is exists
    cov = _covered(lo, hi, 1.0)
    assert abs(cov - coverage) <= 4 * math.sqrt(coverage * (1 - coverage) / D) + 1e-12


# ------------------------------------------------------------------ through the tests and the verdict

def test_rank_tests_report_a_missing_interval():
    """n = 3: Wilcoxon and Mann-Whitney say that no finite 95 % interval exists, and a claim with
    such an interval can be supported or inconclusive but never "not supported"."""
    w = wilcoxon([0.1, -0.2, 0.05], 0.0, "greater")
    m = mann_whitney([1.0, 2.0, 3.0], [0.0, 0.5, 1.5], "greater")
    for r in (w, m):
        assert r.ci == (-math.inf, math.inf) and r.ci_coverage == 1.0 and "no finite" in r.ci_method
        assert decide(r, min_effect=10.0) == "inconclusive"
    r = compare(np.arange(8.0), np.arange(8.0) + 0.5, design="paired", family="rank", alternative="greater")
    assert r.ci == (-0.5, -0.5) and r.estimate == -0.5 and "exact Hodges-Lehmann" in r.ci_method


# ------------------------------------------------------------- paired accuracies (compare's gap)
def test_paired_accuracy_interval_is_bonett_price():
    """By hand: n = 10, a alone right on 3, b alone right on 1: p12 = 4/12, p21 = 2/12."""
    from cortex_resnet.hypotheses.intervals import paired_accuracy_interval

    a = np.array([1, 1, 1, 0, 1, 1, 0, 0, 1, 0], bool)
    b = np.array([0, 0, 0, 1, 1, 1, 0, 0, 1, 0], bool)
    d, var = 2 / 12, (6 / 12 - (2 / 12) ** 2) / 12
    lo, hi = paired_accuracy_interval(a, b)
    assert lo == pytest.approx(d - 1.959963984540054 * var ** 0.5, abs=1e-12)
    assert hi == pytest.approx(d + 1.959963984540054 * var ** 0.5, abs=1e-12)
    with pytest.raises(ValueError, match="equal 1-d"):
        paired_accuracy_interval(a, b[:5])


@pytest.mark.parametrize("p12, p21, low, high", [
    (0.05, 0.04, 0.95 - BAND, 0.95 + BAND),  # compare's case: ~90 discordant examples of 1000
    (0.06, 0.06, 0.95 - BAND, 0.95 + BAND),
    (0.004, 0.001, 0.95 - BAND, 0.99),  # ~5 discordant: conservative (Bonett & Price), measured 0.970
    (0.0, 0.0, 1.0, 1.0),  # no discordant pair: the interval always holds 0
])
def test_paired_accuracy_interval_covers_the_true_difference(p12, p21, low, high):
    """Coverage at compare's size (n = 1000 test examples), D simulated pairs of predictions per
    setting, in the module's +-4 SE band around 95 % where discordant pairs are many."""
    from cortex_resnet.hypotheses.intervals import paired_accuracy_interval

    rng = np.random.default_rng(7)
    n, hits = 1000, 0
    for _ in range(D):
        cell = rng.choice(3, size=n, p=[p12, p21, 1 - p12 - p21])  # 0: only a right, 1: only b right, 2: same
        lo, hi = paired_accuracy_interval(cell == 0, cell == 1)
        hits += lo <= p12 - p21 <= hi
    assert low <= hits / D <= high
