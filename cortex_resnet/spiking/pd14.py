"""The Potjans & Diesmann (2014) microcircuit as a mean-field pool model (one pool per population).

:func:`pool_model` turns :func:`cortex_resnet.model.pd14.pd14` at a scale into the
:class:`~cortex_resnet.spiking.meanfield.PoolModel` whose self-consistent Siegert rates
(:func:`~cortex_resnet.spiking.meanfield.solve`: diffusion approximation, Fourcaud-Brunel
correction for the 0.5 ms exponential synapses) predict the stationary spiking rates.
"""

from __future__ import annotations

import numpy as np

from cortex_resnet.model import pd14 as P
from cortex_resnet.spiking.meanfield import MeanFieldResult, PoolModel, solve

__all__ = ["circuit_data", "mean_field_rates", "pool_model", "spiking_table"]


def pool_model(net: P.PD14, dt_ms: float = 0.1) -> PoolModel:
    """The 8-pool model of ``net`` (potentials above rest -65 mV; ``dt_ms``: the step of the
    simulation it describes, for the threshold-overshoot correction; 0 = continuous time)."""
    one = np.ones(8)
    poisson = net.background == "poisson"
    return PoolModel(
        tau_m_ms=P.TAU_M_MS * one, t_ref_ms=P.T_REF_MS * one,
        theta_mV=(P.V_TH_MV - P.E_L_MV) * one, v_reset_mV=(P.V_RESET_MV - P.E_L_MV) * one,
        K=net.K.copy(), w=np.abs(net.jump_mV), excitatory=np.array([True, False] * 4), kind="current",
        tau_e_ms=P.TAU_SYN_MS, tau_i_ms=P.TAU_SYN_MS, E_e_mV=np.zeros(8), E_i_mV=np.zeros(8),
        mu_dc_mV=net.dc_mV.copy(), nu_in_hz=(P.BG_RATE_HZ * net.K_ext if poisson else np.zeros(8)),
        w_in=net.jump_ext_mV * one, sigma_white_mV=np.zeros(8), dt_ms=float(dt_ms))


def mean_field_rates(scale: float = 1.0, background: str = "poisson", dt_ms: float = 0.1) -> MeanFieldResult:
    """Self-consistent rates (Hz) of the microcircuit at ``scale``, relaxed from NEST's
    full-scale rates."""
    return solve(pool_model(P.pd14(scale, background), dt_ms), P.NEST_FULL_SCALE_RATES_HZ)


def circuit_data(scale: float = 1.0, background: str = "poisson", dt_ms: float = 0.1,
                 pool_size: int | None = None) -> dict:
    """The rate model of the microcircuit as a model-file table (one rate unit per population).

    Each population's ``lif`` transfer is the Siegert rate with the network's own input noise
    ``sigma`` at the mean-field fixed point, and threshold and reset raised by that point's
    Fourcaud-Brunel/time-step shift, so the rate model's steady state *is* the mean field's
    (:func:`mean_field_rates`); couplings ``J = K |jump| tau_m`` (mV per Hz), bias = the mean
    background (Poisson mean plus DC compensation, mV), input = thalamic rate (Hz) with gain
    ``K_th jump tau_m`` onto L4 and L6 (PD14's thalamic projection).

    ``pool_size``: also the spiking realisation (:func:`spiking_table`): population X gets
    ``round(N_X scale / pool_size)`` units of ``pool_size`` neurons.
    """
    net = P.pd14(scale, background)
    model = pool_model(net, dt_ms)
    mf = solve(model, P.NEST_FULL_SCALE_RATES_HZ)
    _, sigma, _, shift = model.moments(mf.rates_hz)
    tau_s = P.TAU_M_MS * 1e-3
    J = net.K * np.abs(net.jump_mV) * tau_s
    bias = net.dc_mV + (tau_s * P.BG_RATE_HZ * net.K_ext * net.jump_ext_mV if background == "poisson" else 0.0)
    gain = P.thalamic_indegrees() * scale * net.jump_ext_mV * tau_s
    units = np.ones(8, int) if pool_size is None else np.maximum(1, np.rint(P.N_FULL * scale / pool_size)).astype(int)
    pops = {}
    for i, name in enumerate(P.POPULATIONS):
        pops[name] = {"n": int(units[i]), "tau_ms": P.TAU_M_MS, "type": "excitatory" if i % 2 == 0 else "inhibitory",
                      "transfer": {"name": "lif", "tau_m_ms": P.TAU_M_MS, "t_ref_ms": P.T_REF_MS,
                                   "theta_mV": float(P.V_TH_MV - P.E_L_MV + shift[i]),
                                   "v_reset_mV": float(P.V_RESET_MV - P.E_L_MV + shift[i]),
                                   "sigma_mV": float(sigma[i])}}
    pathways = {post: {pre: {"J": float(J[i, j])} for j, pre in enumerate(P.POPULATIONS) if J[i, j] > 0}
                for i, post in enumerate(P.POPULATIONS)}
    data = {"populations": pops, "connectivity": {"kind": "dense", "pathways": pathways},
            "bias": {k: float(bias[i]) for i, k in enumerate(P.POPULATIONS)},
            "input": {"n_inputs": 1, "gain_E": 0.0, "gain_I": 0.0,
                      "gain": {k: float(gain[i]) for i, k in enumerate(P.POPULATIONS) if gain[i] > 0}}}
    if pool_size is not None:
        data["spiking"] = spiking_table(net, units, pool_size, dt_ms)
    return data


def spiking_table(net: P.PD14, units: np.ndarray, pool_size: int, dt_ms: float = 0.1) -> dict:
    """The ``[spiking]`` table realising ``net``: each population's in-degrees through
    ``spiking.pathways`` (``p = K / (units M)``), the PD14 neuron, 0.5 ms exponential current
    synapses, rate couplings taken as mV per Hz (``identity``), delays 1.5 ms (E) / 0.75 ms (I)
    with 50 % normal spread and a 10 % weight spread (both redrawn as NEST does, see
    :mod:`cortex_resnet.spiking.spread`), and PD14's connection rule: a fixed total number
    ``K N_post`` of synapses per population pair with multapses
    (``synapse.fixed_total_number``; Bernoulli pairs, ``p = K / N_pre``, would give in-degree
    variance ``K (1 - p)`` instead of ``~K`` and move L6E's rate by ~19 %). Deviations from PD14:
    population sizes rounded to whole pools; the background
    is a current (``dc``) or Poisson input at one rate per neuron (``poisson``: the sum of
    ``K_ext`` 8 Hz sources, the DC compensation as a current: ``input.dc_mV``), arriving with
    no delay (NEST: 1.5 ms, irrelevant for a stationary input).
    The mean field ignores the weight spread (it adds 1 % to the input variance)."""
    lif = {"tau_m_ms": P.TAU_M_MS, "v_rest_mV": P.E_L_MV, "v_th_mV": P.V_TH_MV,
           "v_reset_mV": P.V_RESET_MV, "t_ref_ms": P.T_REF_MS}
    n_pre = units * pool_size
    pathways = {post: {pre: float(net.K[i, j] / n_pre[j]) for j, pre in enumerate(P.POPULATIONS) if net.K[i, j] > 0}
                for i, post in enumerate(P.POPULATIONS)}
    return {"pool_size": int(pool_size), "weight_scaling": "identity", "background_noise": "none",
            "dt_ms": float(dt_ms), "v_init": "stationary", "populations": {k: dict(lif) for k in P.POPULATIONS},
            "synapse": {"kind": "current", "tau_e_ms": P.TAU_SYN_MS, "tau_i_ms": P.TAU_SYN_MS,
                        "delay_ms": P.DELAY_EXC_MS, "delay_i_ms": P.DELAY_INH_MS,
                        "delay_rel_sd": P.DELAY_REL_SD, "weight_rel_sd": P.WEIGHT_REL_SD,
                        "fixed_total_number": True},
            "input": {"mode": "current", "weight_mV": net.jump_ext_mV} if net.background == "dc" else
            {"mode": "poisson", "weight_mV": net.jump_ext_mV,
             "dc_mV": {k: float(net.dc_mV[i]) for i, k in enumerate(P.POPULATIONS) if net.dc_mV[i] != 0}},
            "pathways": pathways, "monitor": {"rate_bin_ms": 1.0, "n_traces": 0, "spikes": True}}
