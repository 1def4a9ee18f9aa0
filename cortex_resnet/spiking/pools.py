"""Pools as a mean-field model: connectivity, per-unit neuron parameters and the pool model of a
mapped circuit (:func:`pool_model`), shared by the operating-point mapping
(:mod:`cortex_resnet.spiking.mapping`) and the fitted one (:mod:`cortex_resnet.spiking.mapping_fit`)."""

from __future__ import annotations

import numpy as np

from cortex_resnet.errors import SpecError
from cortex_resnet.model.circuit import Circuit
from cortex_resnet.model.spiking_spec import SpikingSpec
from cortex_resnet.spiking.meanfield import PoolModel

__all__ = ["pair_probability", "per_unit", "pool_connectivity", "pool_model"]


def per_unit(circuit: Circuit, sspec: SpikingSpec, f) -> np.ndarray:
    """(N,) ``f(lif)`` of each unit's population's neuron."""
    out = np.empty(circuit.n_units)
    for k, sl in circuit.layout.items():
        out[sl] = f(sspec.lif(k))
    return out


def pair_probability(circuit: Circuit, sspec: SpikingSpec) -> np.ndarray | float:
    """Neuron-pair connection probability: ``synapse.p_connect``, or (N, N) per unit pair
    from ``spiking.pathways`` (by the units' populations)."""
    if not sspec.pathways:
        return sspec.synapse.p_connect
    p = np.empty((circuit.n_units, circuit.n_units))
    for post, sa in circuit.layout.items():
        for pre, sb in circuit.layout.items():
            p[sa, sb] = sspec.p_connect(post, pre)
    return p


def pool_connectivity(circuit: Circuit, sspec: SpikingSpec) -> np.ndarray:
    """Expected synapses ``K_ab`` (N, N) from pool b onto one neuron of pool a."""
    present = circuit.mask & (circuit.W != 0)
    return present * (pair_probability(circuit, sspec) * sspec.pool_size)


def _ref_potential(sspec: SpikingSpec, pop: str) -> float:
    """Conductance mapping potential relative to rest (mV)."""
    lif = sspec.lif(pop)
    v = sspec.synapse.v_ref_mV if sspec.synapse.v_ref_mV is not None else 0.5 * (lif.v_th_mV + lif.v_reset_mV)
    return v - lif.v_rest_mV


def pool_model(circuit: Circuit, sspec: SpikingSpec, k_unit: np.ndarray, R_unit: np.ndarray,
               dc_unit: np.ndarray, drive_mV: np.ndarray, sigma_white_unit: np.ndarray,
               dt_ms: float | None = None) -> PoolModel:
    """The mean-field description of one replica (pools = rate units).

    ``drive_mV`` (N,): the feedforward drive ``k (B u + b)`` in mV; Poisson-coded or a
    current according to ``spiking.input.mode``. ``dt_ms``: the simulation step
    (default ``spiking.dt_ms``), for the time-step correction of the mean field.
    """
    syn = sspec.synapse
    tau_m = per_unit(circuit, sspec, lambda l: l.tau_m_ms)
    K = pool_connectivity(circuit, sspec)
    coupling = k_unit[:, None] * np.abs(circuit.W) / R_unit[None, :]  # mV per Hz
    E_e = per_unit(circuit, sspec, lambda l: syn.E_e_mV - l.v_rest_mV)
    E_i = per_unit(circuit, sspec, lambda l: syn.E_i_mV - l.v_rest_mV)
    v_ref = np.empty(circuit.n_units)
    for k, sl in circuit.layout.items():
        v_ref[sl] = _ref_potential(sspec, k)
    with np.errstate(divide="ignore", invalid="ignore"):
        if syn.kind == "current":
            w = np.where(K > 0, coupling / (tau_m[:, None] * 1e-3 * K), 0.0)
        else:
            for name, E in (("E_e_mV", E_e), ("E_i_mV", E_i)):
                bad = (E - v_ref <= 0) if name == "E_e_mV" else (E - v_ref >= 0)
                if np.any(bad):
                    raise SpecError(f"spiking.synapse.{name}", getattr(syn, name),
                                    "a reversal potential on the right side of v_ref_mV (excitatory "
                                    "above, inhibitory below the mapping potential)")
            drive_e = np.abs(E_e - v_ref)[:, None]
            drive_i = np.abs(E_i - v_ref)[:, None]
            tau_s = np.where(circuit.is_E[None, :], syn.tau_e_ms, syn.tau_i_ms) * 1e-3
            force = np.where(circuit.is_E[None, :], drive_e, drive_i)
            w = np.where(K > 0, coupling / (K * tau_s * force), 0.0)
    w_in_mV = sspec.input.weight_mV
    if syn.kind == "current":
        w_in = np.full(circuit.n_units, w_in_mV)
    else:
        w_in = w_in_mV * tau_m / (syn.tau_e_ms * np.abs(E_e - v_ref))
    if sspec.input.mode == "poisson":
        nu_in = np.maximum(drive_mV, 0.0) / (w_in_mV * tau_m * 1e-3)
        mu_dc = dc_unit
    else:
        nu_in = np.zeros(circuit.n_units)
        mu_dc = dc_unit + drive_mV
    return PoolModel(
        tau_m_ms=tau_m, t_ref_ms=per_unit(circuit, sspec, lambda l: l.t_ref_ms),
        theta_mV=per_unit(circuit, sspec, lambda l: l.theta_mV),
        v_reset_mV=per_unit(circuit, sspec, lambda l: l.reset_above_rest_mV),
        K=K.astype(float), w=w, excitatory=circuit.is_E.copy(), kind=syn.kind,
        tau_e_ms=syn.tau_e_ms, tau_i_ms=syn.tau_i_ms, E_e_mV=E_e, E_i_mV=E_i,
        mu_dc_mV=np.asarray(mu_dc, float), nu_in_hz=nu_in, w_in=w_in,
        sigma_white_mV=np.asarray(sigma_white_unit, float),
        dt_ms=float(sspec.dt_ms if dt_ms is None else dt_ms))
