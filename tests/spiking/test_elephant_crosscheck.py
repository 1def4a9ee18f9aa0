"""Our spike statistics (:mod:`cortex_resnet.spiking.analysis`) against elephant's on the same trains.

Definitions compared (they match by construction, so the tolerances are round-off, 1e-9 relative):

* CV of ISIs: ours is the population SD (ddof 0) over the mean of each neuron's ISIs, averaged over
  neurons with >= ``min_isis`` ISIs -- elephant's ``cv(isi(st))`` (scipy ``variation``, ddof 0).
* mean rate: spikes in ``[t0, t1)`` / neurons / duration -- elephant's ``mean_firing_rate``.
* synchrony chi (Golomb 2007): ``chi^2 = Var(population mean count) / mean_i Var(count_i)`` on bins of
  ``bin_ms`` from ``t0`` = ``sum_ij C_ij / (N^2 mean_i C_ii)`` with ``C`` the count covariance, which
  is elephant's ``covariance(BinnedSpikeTrain)`` (its ddof 1 cancels in the ratio; the same floor
  binning of ``[t0, t0 + k bin)``).
* population spectrum: our Welch estimate subtracts the *global* mean; elephant's ``welch_psd``
  detrends each segment's own mean. With a Hann window the mean leaks only into the DC bin and its
  neighbour (7.8 Hz for 128 ms segments), below the 10 Hz band edge, so band power, peak and peak
  frequency agree to round-off.

Fano factor and pairwise correlation coefficients have no implementation of ours: elephant's
(``fanofactor``, ``correlation_coefficient``) are the ones to use on the spike files that
``simulate --spikes-out`` writes; the Poisson checks below only pin the analytic values.
"""

from __future__ import annotations

import numpy as np
import pytest

elephant = pytest.importorskip("elephant")
neo = pytest.importorskip("neo")
pq = pytest.importorskip("quantities")

from elephant import spectral
from elephant.conversion import BinnedSpikeTrain
from elephant.spike_train_correlation import covariance
from elephant.spike_train_generation import (
    StationaryGammaProcess,
    StationaryPoissonProcess,
)
from elephant.statistics import cv, fanofactor, isi, mean_firing_rate

from cortex_resnet.spiking import analysis as A

T_MS = 2000.0
RTOL = 1e-9  # same definitions, different code: only floating-point round-off may differ


def _trains(kind: str, n: int, rate_hz: float, seed: int) -> list:
    np.random.seed(seed)  # elephant's generators draw from numpy's global stream
    proc = (StationaryPoissonProcess(rate_hz * pq.Hz, t_stop=T_MS * pq.ms) if kind == "poisson" else
            StationaryGammaProcess(rate_hz * pq.Hz, shape_factor=3.0, t_stop=T_MS * pq.ms))
    return [proc.generate_spiketrain() for _ in range(n)]


def _flat(trains: list) -> tuple[np.ndarray, np.ndarray]:
    i = np.concatenate([np.full(len(st), k) for k, st in enumerate(trains)]).astype(np.int64)
    t = np.concatenate([st.rescale("ms").magnitude for st in trains])
    return i, t


def _common_drive(n: int, seed: int) -> list:
    """Correlated trains: every neuron copies each spike of a shared 20 Hz Poisson train with p = 0.5,
    plus its own 10 Hz Poisson spikes (a positive count covariance)."""
    rng = np.random.default_rng(seed)
    shared = np.sort(rng.uniform(0, T_MS, rng.poisson(20 * T_MS / 1000)))
    out = []
    for _ in range(n):
        own = rng.uniform(0, T_MS, rng.poisson(10 * T_MS / 1000))
        t = np.sort(np.concatenate([shared[rng.random(shared.size) < 0.5], own]))
        out.append(neo.SpikeTrain(t * pq.ms, t_stop=T_MS * pq.ms))
    return out


@pytest.mark.parametrize("kind, expected_cv", [("poisson", 1.0), ("gamma", 1 / np.sqrt(3.0))])
def test_cv_isi_matches_elephant(kind, expected_cv):
    trains = _trains(kind, 40, 20.0, seed=1)
    i, t = _flat(trains)
    ours = A.isi_statistics(i, t, 0.0, T_MS, min_isis=A.MIN_ISIS)
    theirs = [float(cv(isi(st).magnitude)) for st in trains if len(st) - 1 >= A.MIN_ISIS]
    assert ours["n_cv_neurons"] == len(theirs)
    assert ours["cv_isi"] == pytest.approx(np.mean(theirs), rel=RTOL)
    # and both near the analytic value (40 neurons x ~40 ISIs: SE of the mean CV ~ 0.03)
    assert ours["cv_isi"] == pytest.approx(expected_cv, abs=0.1)


def test_mean_rate_matches_elephant():
    trains = _trains("poisson", 30, 15.0, seed=2)
    i, t = _flat(trains)
    t0, t1 = 500.0, 1500.0
    theirs = np.mean([float(mean_firing_rate(st, t_start=t0 * pq.ms, t_stop=t1 * pq.ms).rescale("Hz"))
                      for st in trains])
    assert A.mean_rate_hz(t, len(trains), t0, t1) == pytest.approx(theirs, rel=RTOL)


@pytest.mark.parametrize("make", ["poisson", "common"])
def test_synchrony_matches_elephant_covariance(make):
    trains = _trains("poisson", 25, 20.0, seed=3) if make == "poisson" else _common_drive(25, seed=3)
    i, t = _flat(trains)
    t0, t1, bin_ms = 100.0, 1900.0, 2.0
    ours = A.synchrony(i, t, np.arange(len(trains)), t0, t1, bin_ms=bin_ms)
    binned = BinnedSpikeTrain([st.time_slice(t0 * pq.ms, t1 * pq.ms) for st in trains],
                              bin_size=bin_ms * pq.ms, t_start=t0 * pq.ms, t_stop=t1 * pq.ms)
    c = covariance(binned)
    chi = np.sqrt(c.sum() / (len(trains) ** 2 * np.mean(np.diag(c))))
    assert ours == pytest.approx(chi, rel=RTOL)
    if make == "poisson":  # independent: chi ~ 1/sqrt(N) = 0.2
        assert 0.1 < ours < 0.35
    else:  # pair count correlation rho = (20 Hz x 0.5^2) / (10 + 10 Hz) = 0.25 -> chi^2 = rho + (1 - rho) / N
        assert ours == pytest.approx(np.sqrt(0.25 + 0.75 / 25), abs=0.1)  # 0.53; ~900 bins: SE ~0.05


def _elephant_band(t: np.ndarray, t0: float, t1: float, bin_ms: float = 0.5, seg_ms: float = 128.0,
                   f_lo: float = 10.0, f_hi: float = 1000.0) -> dict:
    counts = A.population_counts(t, t0, t1, bin_ms)
    mean = counts.mean()
    fs = 1000.0 / bin_ms
    f, p = spectral.welch_psd(counts, len_segment=int(round(seg_ms / bin_ms)), fs=fs, overlap=0.5)
    f = np.asarray(f)
    p = np.asarray(p)
    band = (f >= f_lo) & (f <= min(f_hi, fs / 2))
    floor = mean * 2.0 / fs
    k = int(np.argmax(p[band] / floor))
    return {"power": float(np.sum(p[band]) * (f[1] - f[0]) / mean**2), "peak": float(p[band][k] / floor),
            "frequency_hz": float(f[band][k])}


def test_population_spectrum_matches_elephant_welch():
    # a 40 Hz rate-modulated population: the peak must be found at 40 Hz by both
    np.random.seed(4)
    from elephant.spike_train_generation import NonStationaryPoissonProcess

    tt = np.arange(0, T_MS, 0.5)
    rate = neo.AnalogSignal(20 * (1 + 0.8 * np.sin(2 * np.pi * 40 * tt / 1000))[:, None] * pq.Hz,
                            sampling_period=0.5 * pq.ms)
    trains = [NonStationaryPoissonProcess(rate).generate_spiketrain() for _ in range(50)]
    _, t = _flat(trains)
    ours = A.oscillation_power(t, 0.0, T_MS)
    theirs = _elephant_band(t, 0.0, T_MS)
    for key in ("power", "peak", "frequency_hz"):
        assert ours[key] == pytest.approx(theirs[key], rel=RTOL), key
    assert ours["frequency_hz"] == pytest.approx(40.0, abs=1000 / 128)  # one frequency bin (7.8 Hz)


def test_poisson_fano_factor_reference():
    """No Fano factor of ours: elephant's is the one to use; it is ~1 for Poisson trains."""
    trains = _trains("poisson", 200, 20.0, seed=5)
    assert fanofactor(trains) == pytest.approx(1.0, abs=0.25)  # 200 counts of mean 40: SE ~ 0.1


def test_torch_engine_run_statistics_match_elephant():
    """A short torch-engine run of the Brunel-like E-I circuit: CV, synchrony and spectrum of its E spikes."""
    from cortex_resnet import load_model
    from cortex_resnet.spiking.simulator import simulate_spiking

    c = load_model("models/lif_ei.toml")
    c = type(c)(**{**c.__dict__, "spec": c.spec.replace(**{"spiking.pool_size": 40})})
    ds = simulate_spiking(c, duration_ms=600.0, decompose=False, engine="torch", seed=3)
    sel = (ds["spike_batch"].values == 0) & (ds["population"].values[ds["spike_unit"].values] == "E")
    i, t = ds["spike_neuron"].values[sel].astype(np.int64), ds["spike_time_ms"].values[sel]
    neurons = np.unique(np.where(np.repeat(c.is_E, 40))[0])
    t0, t1 = 200.0, 600.0
    trains = [neo.SpikeTrain(t[i == k] * pq.ms, t_start=0 * pq.ms, t_stop=600 * pq.ms) for k in neurons]
    ours = A.isi_statistics(i, t, t0, t1, min_isis=2)
    win = [st.time_slice(t0 * pq.ms, t1 * pq.ms) for st in trains]
    theirs = [float(cv(isi(st).magnitude)) for st in win if len(st) - 1 >= 2]
    assert ours["n_cv_neurons"] == len(theirs) > 10
    assert ours["cv_isi"] == pytest.approx(np.mean(theirs), rel=RTOL)
    chi = A.synchrony(i, t, neurons, t0, t1, bin_ms=1.0)
    binned = BinnedSpikeTrain(win, bin_size=1.0 * pq.ms, t_start=t0 * pq.ms, t_stop=t1 * pq.ms)
    cov = covariance(binned)  # all E neurons, silent ones included (ours averages over all of them too)
    assert chi == pytest.approx(np.sqrt(cov.sum() / (len(win) ** 2 * np.mean(np.diag(cov)))), rel=RTOL)
