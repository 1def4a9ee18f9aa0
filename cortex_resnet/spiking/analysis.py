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

__all__ = ["mean_rate_hz", "cv_isi", "isi_statistics", "population_counts", "oscillation_power", "synchrony",
           "classify_regime", "population_state", "AI_CV_MIN", "AI_SYNCHRONY_MAX", "MIN_ISIS", "SYNC_POWER_MIN", "FAST_HZ"]

AI_CV_MIN = 0.3         # irregular: mean CV of ISIs at least this (Poisson: 1, clock: 0; Brunel's AI: 0.37)
AI_SYNCHRONY_MAX = 0.2  # asynchronous: synchrony index below this (independent: 1/sqrt(N), lockstep: 1)
MIN_ISIS = 5            # a neuron's CV needs at least this many ISIs (fewer bias it low)
SYNC_POWER_MIN = 0.6    # synchronous: excess oscillation power (squared CV of the population rate) >= this
FAST_HZ = 60.0          # synchronous irregular: fast oscillation at or above this frequency, slow below
SILENT_HZ = 0.1
MIN_CV_FRACTION = 0.1   # a population's CV needs this fraction of its firing neurons to have >= MIN_ISIS ISIs


def mean_rate_hz(spike_t_ms: np.ndarray, n_neurons: int, t0_ms: float, t1_ms: float) -> float:
    """Mean rate (Hz) of ``n_neurons`` over ``[t0, t1)`` from their pooled spike times."""
    if n_neurons == 0 or t1_ms <= t0_ms:
        return float("nan")
    k = np.count_nonzero((spike_t_ms >= t0_ms) & (spike_t_ms < t1_ms))
    return float(k / n_neurons / ((t1_ms - t0_ms) * 1e-3))


def cv_isi(spike_i: np.ndarray, spike_t_ms: np.ndarray, t0_ms: float = 0.0, t1_ms: float = np.inf,
           min_spikes: int = MIN_ISIS + 1) -> float:
    """Mean coefficient of variation of the inter-spike intervals over neurons with >= ``min_spikes``
    spikes in ``[t0, t1)`` (default ``MIN_ISIS + 1``). NaN when no neuron fired often enough."""
    return isi_statistics(spike_i, spike_t_ms, t0_ms, t1_ms, min_isis=min_spikes - 1)["cv_isi"]


def isi_statistics(spike_i: np.ndarray, spike_t_ms: np.ndarray, t0_ms: float = 0.0, t1_ms: float = np.inf,
                   *, min_isis: int = MIN_ISIS) -> dict:
    """CV of the inter-spike intervals, averaged over the neurons with at least ``min_isis`` ISIs.

    Fewer ISIs bias the CV low (a neuron with 2 ISIs has an expected CV well below a Poisson
    neuron's 1), so neurons below the count are left out and counted: returns ``cv_isi``
    (NaN when no neuron qualifies), ``n_cv_neurons`` (neurons used) and ``n_firing`` (neurons
    with at least one ISI).
    """
    sel = (spike_t_ms >= t0_ms) & (spike_t_ms < t1_ms)
    i, t = spike_i[sel], spike_t_ms[sel]
    out = {"cv_isi": float("nan"), "n_cv_neurons": 0, "n_firing": 0, "min_isis": int(min_isis)}
    if i.size == 0:
        return out
    order = np.lexsort((t, i))
    i, t = i[order], t[order]
    same = i[1:] == i[:-1]
    isi = np.diff(t)[same]
    owner = i[1:][same]
    if isi.size == 0:
        return out
    _, inv, counts = np.unique(owner, return_inverse=True, return_counts=True)
    s1 = np.bincount(inv, weights=isi)
    s2 = np.bincount(inv, weights=isi**2)
    keep = (counts >= max(min_isis, 1)) & (s1 > 0)
    out["n_firing"] = int(counts.size)
    out["n_cv_neurons"] = int(keep.sum())
    if keep.any():
        mean = s1[keep] / counts[keep]
        var = np.maximum(s2[keep] / counts[keep] - mean**2, 0.0)
        out["cv_isi"] = float(np.mean(np.sqrt(var) / mean))
    return out


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
    * ``excess_power``: ``power`` less what independent Poisson neurons with the same
      mean count would give (their flat floor integrated over the band): the part
      due to co-modulation, independent of the number of neurons;
    * ``peak``: the largest spectral density relative to the flat floor that
      independent Poisson neurons with the same mean count would give (~1 for an
      asynchronous population; grows with the number of neurons when they co-vary);
    * ``frequency_hz``: where the spectral density most exceeds that floor.
    """
    counts = population_counts(spike_t_ms, t0_ms, t1_ms, bin_ms)
    mean = counts.mean() if counts.size else 0.0
    nseg = min(int(round(segment_ms / bin_ms)), counts.size)  # shorter windows: one segment
    nan = {"power": float("nan"), "excess_power": float("nan"), "peak": float("nan"), "frequency_hz": float("nan")}
    if mean <= 0 or nseg < 32:
        return nan
    from scipy.signal import welch  # deferred: only the oscillation measure needs scipy.signal

    fs = 1000.0 / bin_ms
    f, p = welch(counts - mean, fs=fs, nperseg=nseg, detrend=False, scaling="density")
    floor = mean * 2.0 / fs  # one-sided density of a Poisson count sequence
    band = (f >= f_min_hz) & (f <= min(f_max_hz, fs / 2))
    ratio = p[band] / floor
    k = int(np.argmax(ratio))
    df = f[1] - f[0]
    power = float(np.sum(p[band]) * df / mean**2)
    excess = float(np.sum(p[band] - floor) * df / mean**2)
    return {"power": power, "excess_power": max(excess, 0.0), "peak": float(ratio[k]),
            "frequency_hz": float(f[band][k])}


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


def classify_regime(rate_hz: float, cv: float, chi: float, t_ref_ms: float, *,
                    excess_power: float = float("nan"), frequency_hz: float = float("nan")) -> str:
    """The state of a population after Brunel (2000): ``silent``, ``synchronous regular``,
    ``synchronous irregular (fast)``, ``synchronous irregular (slow)``, ``asynchronous irregular``,
    ``asynchronous regular`` (or ``... (regularity undetermined)`` without a CV).

    Rules (stated, not fitted; see the module constants):

    * silent below ``SILENT_HZ``;
    * synchronous when the population rate is co-modulated -- its excess oscillation power
      (:func:`oscillation_power`, independent neurons give 0) at least ``SYNC_POWER_MIN`` -- or the
      synchrony index ``chi`` is at least ``AI_SYNCHRONY_MAX``; fast when the spectral peak lies
      at or above ``FAST_HZ``, slow below;
    * irregular when the mean CV of ISIs (neurons with >= ``MIN_ISIS`` ISIs) is at least ``AI_CV_MIN``.

    ``t_ref_ms`` is kept for the signature; saturation is not a state of its own (Brunel's SR
    state fires near 1 / t_ref).
    """
    if not np.isfinite(rate_hz) or rate_hz < SILENT_HZ:
        return "silent"
    sync = (np.isfinite(excess_power) and excess_power >= SYNC_POWER_MIN) or (np.isfinite(chi) and chi >= AI_SYNCHRONY_MAX)
    if not np.isfinite(cv):
        reg = "(regularity undetermined)"
        return f"{'synchronous' if sync else 'asynchronous'} {reg}"
    irregular = cv >= AI_CV_MIN
    if not sync:
        return "asynchronous irregular" if irregular else "asynchronous regular"
    if not irregular:
        return "synchronous regular"
    speed = "fast" if np.isfinite(frequency_hz) and frequency_hz >= FAST_HZ else "slow"
    return f"synchronous irregular ({speed})"


def population_state(spike_i: np.ndarray, spike_t_ms: np.ndarray, neurons: np.ndarray, t0_ms: float, t1_ms: float,
                     t_ref_ms: float = 0.0) -> dict:
    """Every measure of one population over ``[t0, t1)`` ms and its state.

    ``spike_i``/``spike_t_ms``: spikes of the population (neuron ids in ``neurons``). Returns
    ``rate_hz``, ``cv_isi`` (NaN unless at least ``MIN_CV_FRACTION`` of the firing neurons have
    ``MIN_ISIS`` ISIs: a CV from a few high-rate neurons would not describe the population),
    ``cv_isi_neurons``, ``cv_isi_min_isis``, ``oscillation_power``, ``excess_oscillation_power``,
    ``spectral_peak``, ``oscillation_hz``, ``synchrony`` and ``state`` (:func:`classify_regime`).
    """
    osc = oscillation_power(spike_t_ms, t0_ms, t1_ms)
    isi = isi_statistics(spike_i, spike_t_ms, t0_ms, t1_ms)
    enough = isi["n_cv_neurons"] >= max(1, MIN_CV_FRACTION * isi["n_firing"])
    out = {"rate_hz": mean_rate_hz(spike_t_ms, int(np.size(neurons)), t0_ms, t1_ms),
           "cv_isi": isi["cv_isi"] if enough else float("nan"), "cv_isi_neurons": isi["n_cv_neurons"],
           "cv_isi_min_isis": isi["min_isis"], "oscillation_power": osc["power"],
           "excess_oscillation_power": osc["excess_power"], "spectral_peak": osc["peak"],
           "oscillation_hz": osc["frequency_hz"],
           "synchrony": synchrony(spike_i, spike_t_ms, np.asarray(neurons), t0_ms, t1_ms)}
    out["state"] = classify_regime(out["rate_hz"], out["cv_isi"], out["synchrony"], t_ref_ms,
                                   excess_power=out["excess_oscillation_power"], frequency_hz=out["oscillation_hz"])
    return out
