"""From rate couplings to synaptic weights: the gain scaling at the operating point.

A rate unit ``a`` of population ``X`` becomes a pool of LIF neurons whose mean
free potential (mV above rest) is an affine function of the rate model's input
``z_a = (W r + B u + b)_a``:

    mu_a = dc_X + k_X z_a,      nu_b = R_Y r_b   (Hz, for b in population Y)

so a coupling ``W_ab`` becomes ``k_X W_ab / R_Y`` mV of mean depolarisation per
Hz of pool ``b``'s rate, realised by ``K_ab`` synapses (see
:mod:`cortex_resnet.spiking.build`).

* **identity** (``weight_scaling = "identity"``, or the population's transfer is
  ``lif`` with this neuron's parameters): ``k = 1``, ``dc = 0``, ``R = 1`` -- the
  rate model *is* the mean field of the spiking network (rates in Hz, couplings
  in mV per Hz).
* **gain**: at the operating point (the rate model's steady state for the
  operating input ``u_op``) the population's target rate is ``nu* = R mean(r*)``
  (at least 1 Hz); ``mu*`` solves ``Phi(mu*) = nu*`` with the noise the network
  has there, and ``k = R phi'(z*) / Phi'(mu*)`` matches the slopes, so small
  changes of ``z`` change the spiking rates as they change the rate model's.
  ``dc`` puts the population's mean input at ``mu*``.

With ``background_noise = "match"`` every pool gets white noise so that its total
input noise at the operating point equals the target (the ``lif`` transfer's
``sigma_mV``, else ``spiking.sigma_mV``); where synaptic noise alone exceeds the
target no noise is added and a warning says so.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from cortex_resnet.model.circuit import Circuit
from cortex_resnet.errors import SpecError
from cortex_resnet.spiking.meanfield import siegert_derivative, siegert_inverse
from cortex_resnet.spiking.mapping_fit import fit_gain, sample_rates
from cortex_resnet.spiking.pools import pair_probability, per_unit, pool_connectivity, pool_model
from cortex_resnet.model.spiking_spec import LIFSpec, SpikingSpec

__all__ = ["FITTED", "Mapping", "lif_matches", "operating_rates", "pair_probability", "per_unit", "pool_connectivity",
           "pool_model", "map_circuit", "MIN_OPERATING_RATE_HZ"]

MIN_OPERATING_RATE_HZ = 1.0


def lif_matches(circuit: Circuit, pop: str, lif: LIFSpec) -> bool:
    """Is the population's transfer the Siegert rate of exactly this LIF neuron?"""
    tr = circuit.transfers[pop]
    if tr.name != "lif":
        return False
    return all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9) for a, b in (
        (tr.tau_m_ms, lif.tau_m_ms), (tr.t_ref_ms, lif.t_ref_ms),
        (tr.theta_mV, lif.theta_mV), (tr.v_reset_mV, lif.reset_above_rest_mV)))


@dataclass(frozen=True)
class Mapping:
    """The affine map rate model -> spiking pools, per population (and per unit).

    ``k_unit`` (N,) mV per unit of ``z``; ``R_unit`` (N,) Hz per rate unit;
    ``dc_unit`` (N,) mV; ``sigma_white_unit`` (N,) mV (white-noise amplitude);
    ``info`` describes how each population was mapped (for result attributes).
    """

    k_unit: np.ndarray
    R_unit: np.ndarray
    dc_unit: np.ndarray
    sigma_white_unit: np.ndarray
    info: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return (f"Mapping({self.k_unit.size} units: k {self.k_unit.min():.3g}..{self.k_unit.max():.3g} mV per unit, "
                f"R {self.R_unit.min():.3g}..{self.R_unit.max():.3g} Hz per rate unit)")


def _population_index(circuit: Circuit) -> dict[str, np.ndarray]:
    """(N,) bool unit mask of each named population."""
    return {k: circuit.unit_population == k for k in circuit.population_names}


def operating_rates(circuit: Circuit, u_op: np.ndarray) -> np.ndarray:
    """Rate-model steady state (N,) for a constant input ``u_op`` (n_inputs,).

    :func:`~cortex_resnet.spiking.mapping_fit.sample_rates` of the one input.
    """
    return sample_rates(circuit, np.asarray(u_op, np.float64)[None])[0]


def _sigma_target(circuit: Circuit, sspec: SpikingSpec, pop: str) -> float:
    t = circuit.transfers[pop]
    return float(t.params().get("sigma_mV", 5.0)) if t.name == "lif" else sspec.sigma_mV


def _population_gain(circuit: Circuit, sspec: SpikingSpec, p: str, ix: np.ndarray, nu_star: np.ndarray,
                     sig_eff: np.ndarray, tau_eff: np.ndarray, shift: np.ndarray, G: np.ndarray,
                     gain_rate: float) -> tuple[float, float, float]:
    """(mu*, nu*, LIF gain in Hz per mV) of population ``p`` at its operating rate."""
    lif = sspec.lif(p)
    nu_p = max(float(nu_star[ix].mean()), MIN_OPERATING_RATE_HZ)
    if nu_p * lif.t_ref_ms >= 900.0:
        raise SpecError(f"spiking.populations.{p}.t_ref_ms", lif.t_ref_ms,
                        f"a refractory period that allows the operating rate {nu_p:.4g} Hz "
                        "(lower spiking.rate_unit_hz or the input)")
    sh = float(shift[ix].mean())
    args = (float(sig_eff.mean()), float(tau_eff[ix].mean()), lif.t_ref_ms, lif.theta_mV + sh,
            lif.reset_above_rest_mV + sh)
    mu_p = float(siegert_inverse(nu_p, *args))
    g = float(siegert_derivative(mu_p, *args)) / float(G[ix].mean())
    if not gain_rate > 0:
        raise SpecError(f"populations.{p}.transfer", circuit.transfers[p].name,
                        "a transfer with a positive slope at the operating point: every unit of "
                        f"population {p} is silent there; give an operating input that drives it")
    return mu_p, nu_p, g


def _iterate(circuit: Circuit, sspec: SpikingSpec, state: dict, identity: dict, R: dict, target: dict,
             dt_ms: float | None, info: dict) -> bool:
    """One fixed-point pass of the gain/noise matching, updating ``state`` (k, dc, sig_w); True when done."""
    k_unit, dc_unit, sig_w, R_unit = state["k"], state["dc"], state["sig_w"], state["R"]
    ext, nu_star, d_phi = state["ext"], state["nu_star"], state["d_phi"]
    match = sspec.background_noise == "match"
    model = pool_model(circuit, sspec, k_unit, R_unit, np.zeros(circuit.n_units), k_unit * ext, sig_w, dt_ms)
    mu0, sigma, tau_eff, shift = model.moments(nu_star)
    G = model.tau_m_ms / tau_eff  # conductance load (1 for current synapses)
    shot2 = np.maximum(sigma**2 - sig_w**2 * (tau_eff / model.tau_m_ms), 0.0)
    new_sig_w, new_k, new_dc = sig_w.copy(), k_unit.copy(), dc_unit.copy()
    for p, ix in _population_index(circuit).items():
        if not ix.any():
            continue
        if match:
            t2 = target[p] ** 2
            new_sig_w[ix] = np.sqrt(np.maximum(t2 - shot2[ix], 0.0) * (G[ix]))
            sig_eff = np.sqrt(np.maximum(shot2[ix], t2))
        else:
            sig_eff = np.maximum(np.sqrt(shot2[ix]), 0.5)
        if identity[p]:
            continue
        mu_p, nu_p, g = _population_gain(circuit, sspec, p, ix, nu_star, sig_eff, tau_eff, shift, G,
                                         R[p] * float(d_phi[ix].mean()))
        new_k[ix] = R[p] * float(d_phi[ix].mean()) / g
        new_dc[ix] = float(np.mean((mu_p - new_k[ix] / np.maximum(k_unit[ix], 1e-300) * mu0[ix]) * G[ix]))
        info[p].update(mu_star_mV=mu_p, nu_star_hz=nu_p, lif_gain_hz_per_mV=g, k_mV=float(new_k[ix][0]),
                       dc_mV=float(new_dc[ix][0]))
    done = np.allclose(new_k, k_unit, rtol=1e-7) and np.allclose(new_sig_w, sig_w, rtol=1e-7, atol=1e-9)
    state.update(k=new_k, dc=new_dc, sig_w=new_sig_w)
    return done


FITTED = {"fit": "unit", "fit_population": "population"}  # weight_scaling -> what one (k, dc) covers


def map_circuit(circuit: Circuit, sspec: SpikingSpec, u_op: np.ndarray | None,
                dt_ms: float | None = None) -> Mapping:
    """Compute the affine map (identity, gain scaling or fitted gain) and the matched background noise.

    Parameters
    ----------
    circuit : the rate circuit (any number of named populations; each is mapped on its own)
    sspec : its spiking realisation
    u_op : (n_inputs,) the operating input, or (S, n_inputs) a sample of inputs: the operating-point
        mapping (``"gain"``) linearises at their mean, ``"fit"``/``"fit_population"`` fit ``(k, dc)``
        over them (:mod:`cortex_resnet.spiking.mapping_fit`); only used where an operating point is needed
    dt_ms : simulation step (default ``spiking.dt_ms``)
    """
    popix = _population_index(circuit)
    pops = list(popix)
    identity = {p: sspec.weight_scaling == "identity" or lif_matches(circuit, p, sspec.lif(p)) for p in pops}
    R = {p: 1.0 if identity[p] or circuit.transfers[p].name == "lif" else sspec.rate_unit_hz for p in pops}
    N = circuit.n_units
    R_unit = np.zeros(N)
    for p, ix in popix.items():
        R_unit[ix] = R[p]
    kind = sspec.weight_scaling if sspec.weight_scaling in FITTED else "gain"
    info: dict = {p: {"mapping": "identity" if identity[p] else kind, "rate_unit_hz": R[p]} for p in pops}
    match = sspec.background_noise == "match"
    if all(identity.values()) and not match:
        return Mapping(np.ones(N), R_unit, np.zeros(N), np.zeros(N), info)
    u_all = np.zeros((1, circuit.n_inputs)) if u_op is None else np.atleast_2d(np.asarray(u_op, dtype=np.float64))
    u_op = u_all.mean(axis=0)
    r_star = np.maximum(operating_rates(circuit, u_op), 0.0)
    z_star = circuit.W @ r_star + circuit.B @ u_op + circuit.b
    state = {"k": np.ones(N), "dc": np.zeros(N), "sig_w": np.zeros(N), "R": R_unit,
             "ext": circuit.B @ u_op + circuit.b, "nu_star": R_unit * r_star,
             "d_phi": circuit.phi_derivative(torch.as_tensor(z_star, dtype=torch.float64)).numpy()}
    target = {p: _sigma_target(circuit, sspec, p) for p in pops}
    if kind not in FITTED:
        _operating_point_gain(circuit, sspec, state, identity, R, target, dt_ms, info)
    else:
        free = ~np.isin(circuit.unit_population, [p for p in pops if identity[p]])
        sigma = np.array([target[p] if match else np.nan for p in circuit.unit_population])
        state["k"], state["dc"], state["sig_w"], info["fit"] = fit_gain(
            circuit, sspec, u_all, (state["k"], state["dc"], state["sig_w"]), R_unit, free, sigma,
            per=FITTED[kind], dt_ms=dt_ms)
        _fit_info(info, popix, identity, state)
    _noise_info(info, popix, target, state["sig_w"], match)
    info["operating_input"] = u_op.tolist()
    info["operating_rate_hz"] = {p: float(state["nu_star"][popix[p]].mean()) if popix[p].any() else 0.0
                                 for p in pops}
    return Mapping(state["k"], R_unit, state["dc"], state["sig_w"], info)


def _operating_point_gain(circuit: Circuit, sspec: SpikingSpec, state: dict, identity: dict, R: dict, target: dict,
                          dt_ms: float | None, info: dict) -> None:
    """The gain/noise matching at the operating point (``state`` updated)."""
    for _ in range(60):
        if _iterate(circuit, sspec, state, identity, R, target, dt_ms, info):
            break


def _fit_info(info: dict, popix: dict, identity: dict, state: dict) -> None:
    """Per population: the fitted k and dc (mean and range over the units)."""
    for p, ix in popix.items():
        if ix.any() and not identity[p]:
            k, dc = state["k"][ix], state["dc"][ix]
            info[p].update(k_mV=float(k.mean()), dc_mV=float(dc.mean()), k_range_mV=[float(k.min()), float(k.max())],
                           dc_range_mV=[float(dc.min()), float(dc.max())])


def _noise_info(info: dict, popix: dict, target: dict, sig_w: np.ndarray, match: bool) -> None:
    """Per population: the target and the white noise added; a warning where none could be."""
    for p, ix in popix.items():
        if match and ix.any():
            info[p]["sigma_target_mV"] = target[p]
            info[p]["sigma_white_mV"] = float(sig_w[ix].mean())
            if np.any(sig_w[ix] == 0):
                warnings.warn(f"population {p}: synaptic noise at the operating point already exceeds the "
                              f"target sigma {target[p]:.3g} mV; no background noise added there (the rate "
                              "model with a fixed sigma will underestimate the fluctuations)", stacklevel=4)
