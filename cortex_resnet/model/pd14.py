"""The cortical microcircuit of Potjans & Diesmann (2014), Cereb Cortex 24:785: its published
parameters and their downscaling.

Numbers are those of the paper (Table 5 / Fig. 1) as implemented in NEST's own example
(``pynest/examples/Potjans_2014/network_params.py``, NEST 3), the community's reference
implementation; they are ported here as data, with the source of each.

Downscaling (NEST's example, ``helpers.adjust_weights_and_input_to_synapse_scaling``):
``scale`` multiplies the population sizes (``N_scaling``) and the in-degrees
(``K_scaling``); weights grow by ``1/sqrt(scale)`` so the input *variance* at given rates is
unchanged, and a DC current ``tau_syn (1 - sqrt(scale)) sum_j J_ij K_ij nu_j`` (recurrent,
at the full-scale rates ``nu``, plus the same for the Poisson background) restores the
input *mean*. The full-scale state is then kept as long as the rates stay near ``nu``.

Units: pA, pF, mV, ms, Hz. Population order: L23E, L23I, L4E, L4I, L5E, L5I, L6E, L6I.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cortex_resnet.errors import SpecError

__all__ = [
    "CONN_PROBS",
    "CONN_PROBS_TH",
    "K_EXT",
    "NEST_FULL_SCALE_RATES_HZ",
    "N_FULL",
    "N_THAL",
    "PD14",
    "POPULATIONS",
    "full_indegrees",
    "pd14",
    "psc_over_psp",
    "thalamic_indegrees",
]

POPULATIONS = ("L23E", "L23I", "L4E", "L4I", "L5E", "L5I", "L6E", "L6I")
# population sizes (PD14 Table 5; NEST full_num_neurons)
N_FULL = np.array([20683, 5834, 21915, 5479, 4850, 1065, 14395, 2948])
# connection probabilities, target (row) x source (column) (PD14 Table 5; NEST conn_probs)
CONN_PROBS = np.array([
    [0.1009, 0.1689, 0.0437, 0.0818, 0.0323, 0., 0.0076, 0.],
    [0.1346, 0.1371, 0.0316, 0.0515, 0.0755, 0., 0.0042, 0.],
    [0.0077, 0.0059, 0.0497, 0.135, 0.0067, 0.0003, 0.0453, 0.],
    [0.0691, 0.0029, 0.0794, 0.1597, 0.0033, 0., 0.1057, 0.],
    [0.1004, 0.0622, 0.0505, 0.0057, 0.0831, 0.3726, 0.0204, 0.],
    [0.0548, 0.0269, 0.0257, 0.0022, 0.06, 0.3158, 0.0086, 0.],
    [0.0156, 0.0066, 0.0211, 0.0166, 0.0572, 0.0197, 0.0396, 0.2252],
    [0.0364, 0.001, 0.0034, 0.0005, 0.0277, 0.008, 0.0658, 0.1443]])
# in-degrees of the Poisson background (PD14 Table 5, layer-specific; NEST K_ext)
K_EXT = np.array([1600, 1500, 2100, 1900, 2000, 1900, 2900, 2100])
# full-scale rates of NEST's example (12 MPI processes, scale 1; NEST full_mean_rates), Hz;
# used for the DC compensation and as the reference state
NEST_FULL_SCALE_RATES_HZ = np.array([0.943, 3.026, 4.368, 5.882, 7.733, 8.664, 1.096, 7.851])
BG_RATE_HZ = 8.0          # rate of each background Poisson source (PD14; NEST bg_rate)
PSP_EXC_MV = 0.15         # mean excitatory PSP amplitude (PD14; NEST PSP_exc_mean)
G = -4.0                  # relative inhibitory weight (PD14; NEST g)
WEIGHT_REL_SD = 0.1       # relative sd of weights (PD14; NEST weight_rel_std)
DELAY_EXC_MS, DELAY_INH_MS, DELAY_REL_SD = 1.5, 0.75, 0.5  # PD14; NEST delay_*_mean, delay_rel_std
# neuron (iaf_psc_exp; PD14 Table 5; NEST neuron_params)
C_M_PF, TAU_M_MS, TAU_SYN_MS, T_REF_MS = 250.0, 10.0, 0.5, 2.0
E_L_MV, V_TH_MV, V_RESET_MV = -65.0, -50.0, -65.0


def psc_over_psp(C_m_pF: float = C_M_PF, tau_m_ms: float = TAU_M_MS, tau_syn_ms: float = TAU_SYN_MS) -> float:
    """PSC amplitude (pA) per mV of PSP peak for an exponential current synapse on a LIF membrane
    (peak of the difference of exponentials; 0.15 mV -> 87.81 pA with the PD14 neuron)."""
    sub = 1.0 / (tau_syn_ms - tau_m_ms)
    pre = tau_m_ms * tau_syn_ms / C_m_pF * sub
    frac = (tau_m_ms / tau_syn_ms) ** sub
    return 1.0 / (pre * (frac ** tau_m_ms - frac ** tau_syn_ms))


def full_indegrees() -> np.ndarray:
    """(8, 8) mean in-degrees at full scale: the total synapse count of PD14 eq. 1,
    ``log(1 - p) / log(1 - 1/(N_post N_pre))``, divided by ``N_post``."""
    prod = np.outer(N_FULL, N_FULL).astype(float)
    total = np.log(1.0 - CONN_PROBS) / np.log((prod - 1.0) / prod)
    return total / N_FULL[:, None]


@dataclass(frozen=True)
class PD14:
    """The microcircuit at one scale (arrays in :data:`POPULATIONS` order).

    ``N`` neurons; ``K`` (8, 8) in-degrees (target x source); ``psc_pA`` (8, 8) signed mean
    PSC amplitudes; ``K_ext`` background in-degrees; ``psc_ext_pA``; ``dc_pA`` (8,) the DC
    compensation (plus the whole background when ``background = "dc"``).
    """

    scale: float
    background: str
    N: np.ndarray
    K: np.ndarray
    psc_pA: np.ndarray
    K_ext: np.ndarray
    psc_ext_pA: float
    dc_pA: np.ndarray

    @property
    def jump_mV(self) -> np.ndarray:
        """(8, 8) signed charge-equivalent potential jump per spike (mV): ``psc tau_syn / C``."""
        return self.psc_pA * TAU_SYN_MS / C_M_PF

    @property
    def jump_ext_mV(self) -> float:
        return self.psc_ext_pA * TAU_SYN_MS / C_M_PF

    @property
    def dc_mV(self) -> np.ndarray:
        """(8,) the DC current as mean depolarisation (mV): ``I tau_m / C``."""
        return self.dc_pA * TAU_M_MS / C_M_PF

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return f"PD14(scale {self.scale:g}: {int(self.N.sum()):,} neurons in {self.N.size} populations, background {self.background!r})"


def pd14(scale: float = 1.0, background: str = "poisson") -> PD14:
    """The published network downscaled by ``scale`` in (0, 1] (N and K), as NEST's example does.

    ``background``: ``"poisson"`` (K_ext sources of 8 Hz each) or ``"dc"`` (their mean as a
    current, NEST's ``poisson_input = False``).
    """
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and 0 < scale <= 1):
        raise SpecError("scale", scale, "a number in (0, 1] (1 = the full network of 77,169 neurons)")
    if background not in ("poisson", "dc"):
        raise SpecError("background", background, "'poisson' or 'dc'")
    psp = np.full((8, 8), PSP_EXC_MV)
    psp[:, 1::2] *= G
    psp[0, 2] *= 2.0  # L4E -> L2/3E doubled (PD14; NEST PSP_matrix_mean[0, 2])
    ratio = psc_over_psp()
    psc_full, psc_ext_full = psp * ratio, PSP_EXC_MV * ratio
    K_full = full_indegrees()
    dc = np.zeros(8) if background == "poisson" else 1e-3 * TAU_SYN_MS * BG_RATE_HZ * K_EXT * psc_ext_full
    root = math.sqrt(scale)
    lost = (psc_full * K_full) @ NEST_FULL_SCALE_RATES_HZ
    if background == "poisson":
        lost = lost + psc_ext_full * K_EXT * BG_RATE_HZ
    dc = dc + 1e-3 * TAU_SYN_MS * (1.0 - root) * lost
    return PD14(scale=float(scale), background=background, N=np.round(N_FULL * scale).astype(int),
                K=K_full * scale, psc_pA=psc_full / root, K_ext=np.round(K_EXT * scale),
                psc_ext_pA=psc_ext_full / root, dc_pA=dc)


# thalamic afferents (PD14 Table 5 and its "Th" population; NEST stimulus_params.py: n_thal,
# conn_probs_th, PSP_th = 0.15 mV)
N_THAL = 902
CONN_PROBS_TH = np.array([0.0, 0.0, 0.0983, 0.0619, 0.0, 0.0, 0.0512, 0.0196])


def thalamic_indegrees() -> np.ndarray:
    """(8,) mean thalamic in-degrees (PD14 eq. 1 with the 902 thalamic neurons)."""
    prod = N_FULL * float(N_THAL)
    return np.log(1.0 - CONN_PROBS_TH) / np.log((prod - 1.0) / prod) / N_FULL
