"""Confidence intervals of the hypothesis tests: t and Welch intervals, and the exact
Hodges-Lehmann intervals of the rank tests (Walsh averages / pairwise differences, from the
exact null distributions of the signed-rank and rank-sum statistics; normal approximation
beyond the exact sizes). Re-exported by :mod:`cortex_resnet.hypotheses.stats`.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import stats as _st

__all__ = ["t_interval", "welch_interval", "hodges_lehmann_interval", "hodges_lehmann_shift_interval",
           "paired_accuracy_interval", "rank_ci_method"]


def t_interval(x: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Student t-interval of the mean of ``x`` along its last axis.

    ``mean +- t_{(1+level)/2, n-1} sd / sqrt(n)``; the same numbers as
    ``scipy.stats.ttest_1samp(x).confidence_interval(level)``, for a whole batch of samples.
    Zero spread gives the point interval ``(mean, mean)``.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    m = x.mean(axis=-1)
    half = _st.t.ppf((1 + level) / 2, n - 1) * x.std(axis=-1, ddof=1) / math.sqrt(n)
    return m - half, m + half


def welch_interval(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Welch (unequal-variance) t-interval of ``mean(a) - mean(b)`` along the last axis.

    Welch-Satterthwaite degrees of freedom; the same numbers as
    ``scipy.stats.ttest_ind(a, b, equal_var=False).confidence_interval(level)``.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    na, nb = a.shape[-1], b.shape[-1]
    va, vb = a.var(axis=-1, ddof=1) / na, b.var(axis=-1, ddof=1) / nb
    se2 = va + vb
    with np.errstate(invalid="ignore", divide="ignore"):
        df = se2**2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
        half = np.where(se2 > 0, _st.t.ppf((1 + level) / 2, df) * np.sqrt(se2), 0.0)
    d = a.mean(axis=-1) - b.mean(axis=-1)
    return d - half, d + half


# --- exact rank intervals -------------------------------------------------------------------

_EXACT_SIGNED_RANK_MAX_N = 400
_EXACT_RANK_SUM_MAX_CELLS = 10_000


@functools.lru_cache(maxsize=64)
def _signed_rank_cdf(n: int) -> np.ndarray:
    """Exact null CDF of the signed-rank statistic T+ (no ties): ``P(T+ <= t)``, t = 0 .. n(n+1)/2."""
    p = np.zeros(n * (n + 1) // 2 + 1)
    p[0] = 1.0
    for r in range(1, n + 1):  # rank r carries a + sign with probability 1/2
        new = 0.5 * p
        new[r:] += 0.5 * p[:-r]
        p = new
    return np.cumsum(p)


@functools.lru_cache(maxsize=64)
def _rank_sum_cdf(n1: int, n2: int) -> np.ndarray:
    """Exact null CDF of the Mann-Whitney U (no ties): ``P(U <= u)``, u = 0 .. n1 n2.

    Recursion p(m, n; u) = m/(m+n) p(m-1, n; u-n) + n/(m+n) p(m, n-1; u) (Mann & Whitney 1947).
    """
    size = n1 * n2 + 1
    prev = [np.eye(1, size).ravel() for _ in range(n2 + 1)]  # m = 0: U = 0 for every n
    for m in range(1, n1 + 1):
        cur = [np.eye(1, size).ravel()]  # n = 0: U = 0
        for n in range(1, n2 + 1):
            shifted = np.zeros(size)
            shifted[n:] = prev[n][:size - n]
            cur.append(m / (m + n) * shifted + n / (m + n) * cur[n - 1])
        prev = cur
    return np.cumsum(prev[n2])


def _order_k(cdf: np.ndarray | None, mean: float, var: float, level: float) -> tuple[int, float]:
    """Largest k >= 1 with ``P(S <= k - 1) <= (1 - level) / 2`` and the coverage ``1 - 2 P(S <= k - 1)``;
    ``(0, 1.0)`` when none exists. Without an exact ``cdf``, the normal approximation with
    continuity correction (large samples only)."""
    tail = (1 - level) / 2
    if cdf is None:
        k = math.floor(mean - _st.norm.ppf(1 - tail) * math.sqrt(var) - 0.5) + 1
        return (k, level) if k >= 1 else (0, 1.0)
    ok = np.nonzero(cdf <= tail * (1 + 1e-12))[0]
    if ok.size == 0:
        return 0, 1.0
    k = int(ok[-1]) + 1
    return k, float(1 - 2 * cdf[k - 1])


def _interval_from_sorted(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if k == 0:
        shape = values.shape[:-1]
        return np.full(shape, -np.inf), np.full(shape, np.inf)
    return values[..., k - 1], values[..., values.shape[-1] - k]


def hodges_lehmann_interval(x: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Hodges-Lehmann pseudo-median of ``x`` (last axis) with its exact signed-rank interval.

    The interval is ``[W_(k), W_(M+1-k)]`` over the sorted M = n(n+1)/2 Walsh averages
    ``(x_i + x_j) / 2, i <= j``, with k from the exact null distribution of the signed-rank
    statistic (the set of centres the two-sided Wilcoxon test does not reject).

    Returns
    -------
    estimate, low, high : arrays over the leading axes
    coverage : the exact coverage ``1 - 2 P(T+ <= k - 1)`` for continuous symmetric data;
        ``1.0`` with ``(-inf, inf)`` when no finite interval reaches ``level`` (n <= 5 at 95 %)
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    i, j = np.triu_indices(n)
    walsh = np.sort((x[..., i] + x[..., j]) / 2, axis=-1)
    m = walsh.shape[-1]
    cdf = _signed_rank_cdf(n) if n <= _EXACT_SIGNED_RANK_MAX_N else None
    k, coverage = _order_k(cdf, m / 2, n * (n + 1) * (2 * n + 1) / 24, level)
    lo, hi = _interval_from_sorted(walsh, k)
    return np.median(walsh, axis=-1), lo, hi, coverage


def hodges_lehmann_shift_interval(a: np.ndarray, b: np.ndarray, level: float = 0.95
                                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Hodges-Lehmann shift ``a - b`` (median of all n1 n2 differences) with its exact interval.

    ``[D_(k), D_(n1 n2 + 1 - k)]`` over the sorted differences, k from the exact null distribution
    of the Mann-Whitney U; coverage as for :func:`hodges_lehmann_interval` (continuous data
    differing by a shift); ``(-inf, inf)`` and 1.0 when no finite interval reaches ``level``.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    n1, n2 = a.shape[-1], b.shape[-1]
    diffs = np.sort((a[..., :, None] - b[..., None, :]).reshape(*a.shape[:-1], n1 * n2), axis=-1)
    cdf = _rank_sum_cdf(n1, n2) if n1 * n2 <= _EXACT_RANK_SUM_MAX_CELLS else None
    k, coverage = _order_k(cdf, n1 * n2 / 2, n1 * n2 * (n1 + n2 + 1) / 12, level)
    lo, hi = _interval_from_sorted(diffs, k)
    return np.median(diffs, axis=-1), lo, hi, coverage


def rank_ci_method(coverage: float, k_exists: bool, kind: str) -> str:
    if k_exists:
        return f"exact Hodges-Lehmann interval ({kind}; coverage {coverage:.3f})"
    return f"no finite exact {kind} interval at this n: (-inf, inf)"


def paired_accuracy_interval(correct_a: np.ndarray, correct_b: np.ndarray,
                             level: float = 0.95) -> tuple[float, float]:
    """Two-sided interval of ``accuracy(a) - accuracy(b)`` on the same examples (paired proportions).

    Bonett & Price (2012, Stat. Med. 31:2920), the adjusted Wald interval: with ``n12`` examples
    only ``a`` gets right and ``n21`` only ``b``, ``p12 = (n12 + 1) / (n + 2)``, ``p21 = (n21 + 1) /
    (n + 2)``, ``(p12 - p21) +- z sqrt((p12 + p21 - (p12 - p21)^2) / (n + 2))``, clipped to [-1, 1].
    Its coverage stays near the nominal level where the plain Wald interval's does not (few
    discordant pairs); checked by simulation in the tests.
    """
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"paired_accuracy_interval: two equal 1-d samples needed, got {a.shape} and {b.shape}")
    n = a.size
    p12, p21 = (np.sum(a & ~b) + 1.0) / (n + 2), (np.sum(~a & b) + 1.0) / (n + 2)
    d = p12 - p21
    half = _st.norm.ppf((1 + level) / 2) * math.sqrt(max(p12 + p21 - d * d, 0.0) / (n + 2))
    return float(max(d - half, -1.0)), float(min(d + half, 1.0))
