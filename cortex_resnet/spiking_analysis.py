"""Statistics of spike trains: rates, irregularity (CV of ISIs), synchrony and oscillation power.

The asynchronous irregular (AI) state of cortex-like networks (Brunel 2000;
Vogels & Abbott 2005) shows irregular single-neuron firing (CV of the
inter-spike intervals near 1, as for a Poisson process) and a population rate
without large oscillations; synchronous states show a peak in the
population-rate spectrum far above the flat floor that independent neurons
would give.
"""

from __future__ import annotations

import numpy as np

__all__ = ["mean_rate_hz", "cv_isi", "population_counts", "oscillation_power", "synchrony",
           "classify_regime", "AI_CV_MIN", "AI_SYNCHRONY_MAX"]

AI_CV_MIN = 0.5         # irregular: mean CV of ISIs at least this (Poisson: 1, clock: 0)
AI_SYNCHRONY_MAX = 0.2  # asynchronous: synchrony index below this (independent: 1/sqrt(N), lockstep: 1)


def mean_rate_hz(spike_t_ms: np.ndarray, n_neurons: int, t0_ms: float, t1_ms: float) -> float:
    """Mean rate (Hz) of ``n_neurons`` over ``[t0, t1)`` from their pooled spike times."""
    if n_neurons == 0 or t1_ms <= t0_ms:
        return float("nan")
    k = np.count_nonzero((spike_t_ms >= t0_ms) & (spike_t_ms < t1_ms))
    return float(k / n_neurons / ((t1_ms - t0_ms) * 1e-3))


def cv_isi(spike_i: np.ndarray, spike_t_ms: np.ndarray, t0_ms: float = 0.0, t1_ms: float = np.inf,
           min_spikes: int = 3) -> float:
    """Mean coefficient of variation of the inter-spike intervals (neurons with >= ``min_spikes``).

    NaN when no neuron fired often enough.
    """
    sel = (spike_t_ms >= t0_ms) & (spike_t_ms < t1_ms)
    i, t = spike_i[sel], spike_t_ms[sel]
    if i.size == 0:
        return float("nan")
    order = np.lexsort((t, i))
    i, t = i[order], t[order]
    same = i[1:] == i[:-1]
    isi = np.diff(t)[same]
    owner = i[1:][same]
    if isi.size == 0:
        return float("nan")
    uniq, inv, counts = np.unique(owner, return_inverse=True, return_counts=True)
    s1 = np.bincount(inv, weights=isi)
    s2 = np.bincount(inv, weights=isi**2)
    keep = counts >= (min_spikes - 1)
    if not keep.any():
        return float("nan")
    mean = s1[keep] / counts[keep]
    var = np.maximum(s2[keep] / counts[keep] - mean**2, 0.0)
    ok = mean > 0
    return float(np.mean(np.sqrt(var[ok]) / mean[ok])) if ok.any() else float("nan")


def population_counts(spike_t_ms: np.ndarray, t0_ms: float, t1_ms: float, bin_ms: float) -> np.ndarray:
    """Spike counts of a population in bins of ``bin_ms`` over ``[t0, t1)``."""
    n_bins = int(np.floor((t1_ms - t0_ms) / bin_ms + 1e-9))
    sel = (spike_t_ms >= t0_ms) & (spike_t_ms < t0_ms + n_bins * bin_ms)
    idx = ((spike_t_ms[sel] - t0_ms) / bin_ms).astype(np.int64)
    return np.bincount(np.minimum(idx, n_bins - 1), minlength=n_bins).astype(np.float64)


def oscillation_power(spike_t_ms: np.ndarray, t0_ms: float, t1_ms: float, *, bin_ms: float = 0.5,
                      f_min_hz: float = 10.0, f_max_hz: float = 1000.0, segment_ms: float = 128.0) -> dict:
    """Oscillation power of the population rate in ``[f_min, f_max]`` Hz.

    Welch estimate (segments of ``segment_ms`` or the whole window if shorter, Hann window) of the spectrum of the
    binned population count. Returns

    * ``power``: the band power relative to the squared mean -- the squared
      coefficient of variation of the population rate within the band (0 for a
      constant rate; order 1 when the population fires in volleys);
    * ``peak``: the largest spectral density relative to the flat floor that
      independent Poisson neurons with the same mean count would give (~1 for an
      asynchronous population);
    * ``frequency_hz``: where that peak lies.
    """
    counts = population_counts(spike_t_ms, t0_ms, t1_ms, bin_ms)
    mean = counts.mean() if counts.size else 0.0
    nseg = min(int(round(segment_ms / bin_ms)), counts.size)  # shorter windows: one segment
    nan = {"power": float("nan"), "peak": float("nan"), "frequency_hz": float("nan")}
    if mean <= 0 or nseg < 32:
        return nan
    from scipy.signal import welch

    fs = 1000.0 / bin_ms
    f, p = welch(counts - mean, fs=fs, nperseg=nseg, detrend=False, scaling="density")
    floor = mean * 2.0 / fs  # one-sided density of a Poisson count sequence
    band = (f >= f_min_hz) & (f <= min(f_max_hz, fs / 2))
    ratio = p[band] / floor
    k = int(np.argmax(ratio))
    power = float(np.sum(p[band]) * (f[1] - f[0]) / mean**2)
    return {"power": power, "peak": float(ratio[k]), "frequency_hz": float(f[band][k])}


def synchrony(spike_i: np.ndarray, spike_t_ms: np.ndarray, neurons: np.ndarray, t0_ms: float, t1_ms: float,
              *, bin_ms: float = 1.0, max_neurons: int = 2000, seed: int = 0) -> float:
    """Synchrony index chi (Golomb 2007) from spike counts in bins of ``bin_ms``.

    ``chi^2 = Var(mean count of the population) / mean_i Var(count of neuron i)``:
    about ``1/sqrt(N)`` for independent neurons, 1 when all fire in lockstep.
    Estimated on at most ``max_neurons`` of ``neurons`` (a seeded sample). NaN without spikes.
    """
    neurons = np.asarray(neurons)
    if neurons.size > max_neurons:
        neurons = np.sort(np.random.default_rng(seed).choice(neurons, max_neurons, replace=False))
    n_bins = int(np.floor((t1_ms - t0_ms) / bin_ms + 1e-9))
    if neurons.size < 2 or n_bins < 2:
        return float("nan")
    sel = (spike_t_ms >= t0_ms) & (spike_t_ms < t0_ms + n_bins * bin_ms) & np.isin(spike_i, neurons)
    if not sel.any():
        return float("nan")
    row = np.searchsorted(neurons, spike_i[sel])
    col = ((spike_t_ms[sel] - t0_ms) / bin_ms).astype(np.int64)
    counts = np.zeros((neurons.size, n_bins))
    np.add.at(counts, (row, np.minimum(col, n_bins - 1)), 1.0)
    single = counts.var(axis=1).mean()
    return float(np.sqrt(counts.mean(axis=0).var() / single)) if single > 0 else float("nan")


def classify_regime(rate_hz: float, cv: float, chi: float, t_ref_ms: float) -> str:
    """``silent``, ``saturated``, or ``(a)synchronous`` + ``regular``/``irregular``.

    Rules (stated, not fitted): silent below 0.1 Hz; saturated above half the
    maximal rate ``1/t_ref``; synchronous when the synchrony index is at least
    ``AI_SYNCHRONY_MAX``; irregular when the mean CV of ISIs is at least ``AI_CV_MIN``.
    """
    if not np.isfinite(rate_hz) or rate_hz < 0.1:
        return "silent"
    if t_ref_ms > 0 and rate_hz > 0.5 * 1000.0 / t_ref_ms:
        return "saturated"
    sync = "synchronous" if np.isfinite(chi) and chi >= AI_SYNCHRONY_MAX else "asynchronous"
    reg = "irregular" if np.isfinite(cv) and cv >= AI_CV_MIN else "regular"
    return f"{sync} {reg}"
