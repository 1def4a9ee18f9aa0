"""Mean field of LIF pools: the Siegert rate with input mean and variance that depend on the rates.

A neuron of pool ``a`` receives, per Hz of presynaptic pool ``b``'s rate,
``K_ab`` synapses of weight ``w_ab``. In the diffusion approximation (Amit &
Brunel 1997; Brunel 2000, eqs. 4-5) its free membrane potential has mean and
variance (Brunel's ``sigma``: ``tau dV = (mu - V) dt + sigma sqrt(tau) dW``)

    mu_a      = mu_dc + tau_m (sum_b s_b K_ab w_ab nu_b + w_in nu_in)
    sigma_a^2 = sigma_white^2 + tau_m (sum_b K_ab w_ab^2 nu_b + w_in^2 nu_in)

(``w`` is the jump of the potential per spike, in mV, for delta synapses, or
its charge equivalent for exponential current synapses), and fires at the
Siegert rate

    1/nu = t_ref + tau_m sqrt(pi) int_{(V_r - mu)/sigma}^{(theta - mu)/sigma} e^{x^2} (1 + erf x) dx.

Exponential synapses (time constant ``tau_s``) shift threshold and reset by
``sigma alpha/2 sqrt(tau_s/tau_m)``, ``alpha = sqrt(2)|zeta(1/2)|``
(Fourcaud & Brunel 2002), applied to the synaptic part of the noise.
A simulation in time steps ``dt`` misses threshold crossings between steps:
threshold and reset shift by the random-walk overshoot
``rho sigma sqrt(dt/tau)``, ``rho = |zeta(1/2)|/sqrt(2 pi) = 0.5826`` (Siegmund
1979), set ``dt_ms`` to include it (0: continuous time).
Conductance synapses use the effective-time-constant approximation (Kuhn,
Aertsen & Rotter 2004): mean conductances ``g = tau_s K w nu`` shorten the
membrane time constant to ``tau_m / (1 + g_e + g_i)`` and move the effective
rest towards the reversal potentials; this is approximate.

:func:`solve` finds self-consistent rates ``nu = Phi(nu)``: what the rate
model ``T dr/dt = -r + phi(W r + h)`` with ``phi = lif`` computes when its
noise ``sigma`` equals the network's, and what the spiking network should do
in its asynchronous state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from cortex_resnet.errors import ConvergenceError
from cortex_resnet.model import siegert as _siegert
from cortex_resnet.spiking.fast_siegert import siegert_fast

__all__ = ["siegert", "siegert_derivative", "siegert_inverse", "PoolModel", "MeanFieldResult",
           "solve", "ALPHA_FB", "RHO_SIEGMUND"]

ALPHA_FB = math.sqrt(2.0) * 1.4603545088095868  # sqrt(2) |zeta(1/2)|, Fourcaud & Brunel (2002)
RHO_SIEGMUND = 1.4603545088095868 / math.sqrt(2.0 * math.pi)  # -zeta(1/2)/sqrt(2 pi), Siegmund (1979)

def siegert(mu_mV, sigma_mV, tau_m_ms, t_ref_ms, theta_mV, v_reset_mV) -> np.ndarray:
    """Siegert rate (Hz) of a LIF neuron driven by white noise, elementwise (broadcasting).

    Parameters
    ----------
    mu_mV : mean free potential above rest (mV)
    sigma_mV : noise amplitude (mV, Brunel's convention), > 0
    tau_m_ms, t_ref_ms : membrane time constant and refractory period (ms)
    theta_mV, v_reset_mV : threshold and reset above rest (mV)
    """
    return _siegert.siegert_numpy(mu_mV, sigma_mV, tau_m_ms, t_ref_ms, theta_mV, v_reset_mV)


def siegert_derivative(mu_mV, sigma_mV, tau_m_ms, t_ref_ms, theta_mV, v_reset_mV) -> np.ndarray:
    """``d nu / d mu`` (Hz/mV) in closed form (:func:`cortex_resnet.model.siegert.siegert_derivative`)."""
    return _siegert.siegert_derivative(mu_mV, sigma_mV, tau_m_ms, t_ref_ms, theta_mV, v_reset_mV)


def siegert_inverse(rate_hz, sigma_mV, tau_m_ms, t_ref_ms, theta_mV, v_reset_mV) -> np.ndarray:
    """The mean input ``mu`` (mV above rest) at which the Siegert rate equals ``rate_hz``.

    Bisection (the rate increases monotonically with ``mu``); rates must lie in
    ``(0, 1/t_ref)``.
    """
    return _siegert.siegert_inverse(rate_hz, sigma_mV, tau_m_ms, t_ref_ms, theta_mV, v_reset_mV)


def _rows(nu: np.ndarray, M: np.ndarray) -> np.ndarray:
    """``sum_b M_ab nu_b`` for every row of ``nu`` (..., B): one product per row, the same
    arithmetic whatever the batch (a batched matrix product may round differently)."""
    return (nu[..., None, :] @ M.T)[..., 0, :]


@dataclass(frozen=True)
class PoolModel:
    """Pool-level statistics of a spiking network: what the mean field needs.

    Shapes: ``A`` postsynaptic pools, ``B`` presynaptic pools (the same pools,
    ``A == B``, for a recurrent network). Potentials relative to rest (mV),
    times in ms.

    Attributes
    ----------
    tau_m_ms, t_ref_ms, theta_mV, v_reset_mV : (A,) neuron parameters
    K : (A, B) expected number of synapses from pool b onto one neuron of pool a
    w : (A, B) weight magnitudes: mV (charge-equivalent jump) for current synapses,
        units of the leak conductance for conductance synapses
    excitatory : (B,) bool, the presynaptic pool's sign
    kind : ``"current"`` or ``"conductance"``
    tau_e_ms, tau_i_ms : synaptic time constants (0 = delta synapses)
    E_e_mV, E_i_mV : (A,) reversal potentials relative to rest (conductance synapses)
    mu_dc_mV : (A,) deterministic drive (mV of mean depolarisation)
    nu_in_hz, w_in : (A,) external Poisson input per neuron: total rate and weight
        (same units as ``w``; excitatory)
    sigma_white_mV : (A,) white-noise amplitude added to every neuron
    dt_ms : time step of the simulation the mean field describes (0 = continuous time)
    """

    tau_m_ms: np.ndarray
    t_ref_ms: np.ndarray
    theta_mV: np.ndarray
    v_reset_mV: np.ndarray
    K: np.ndarray
    w: np.ndarray
    excitatory: np.ndarray
    kind: str
    tau_e_ms: float
    tau_i_ms: float
    E_e_mV: np.ndarray
    E_i_mV: np.ndarray
    mu_dc_mV: np.ndarray
    nu_in_hz: np.ndarray
    w_in: np.ndarray
    sigma_white_mV: np.ndarray
    dt_ms: float = 0.0

    def with_input(self, mu_dc_mV=None, nu_in_hz=None, sigma_white_mV=None) -> "PoolModel":
        """A copy with other external inputs (e.g. one stimulus of a batch)."""
        ch = {}
        for name, v in (("mu_dc_mV", mu_dc_mV), ("nu_in_hz", nu_in_hz), ("sigma_white_mV", sigma_white_mV)):
            if v is not None:
                ch[name] = np.broadcast_to(np.asarray(v, dtype=np.float64), self.tau_m_ms.shape).copy()
        return replace(self, **ch)

    def take(self, rows: np.ndarray) -> "PoolModel":
        """The replicas ``rows`` of a model whose inputs carry a batch (``mu_dc_mV``, ``nu_in_hz``,
        ``sigma_white_mV`` of shape (batch, A)); inputs without the batch dimension stay as they are."""
        ch = {k: getattr(self, k)[rows] for k in ("mu_dc_mV", "nu_in_hz", "sigma_white_mV")
              if np.ndim(getattr(self, k)) == 2}
        return replace(self, **ch)

    def moments(self, nu_hz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Mean ``mu`` (mV), noise ``sigma`` (mV), effective ``tau`` (ms) and the
        threshold/reset shift (mV) for presynaptic rates ``nu_hz`` (B,), or (batch, B) for a batch
        of replicas (the inputs may then carry the batch too: (batch, A)). Sums over presynaptic
        pools are matrix products."""
        nu = np.asarray(nu_hz, dtype=np.float64)
        exc = self.excitatory
        tau_m = self.tau_m_ms * 1e-3  # s
        Kw, Kw2 = self.K * self.w, self.K * self.w**2
        sums = lambda M, cols: _rows(nu[..., cols], M[:, cols])  # noqa: E731  (..., A): sum_b M_ab nu_b
        if self.kind == "current":
            sign = np.where(exc, 1.0, -1.0)
            mu = self.mu_dc_mV + tau_m * (_rows(nu, Kw * sign) + self.w_in * self.nu_in_hz)
            var_e = tau_m * (sums(Kw2, exc) + self.w_in**2 * self.nu_in_hz)
            var_i = tau_m * sums(Kw2, ~exc)
            tau_eff = self.tau_m_ms
        else:
            g_e = self.tau_e_ms * 1e-3 * (sums(Kw, exc) + self.w_in * self.nu_in_hz)
            g_i = self.tau_i_ms * 1e-3 * sums(Kw, ~exc)
            G = 1.0 + g_e + g_i
            tau_eff = self.tau_m_ms / G
            mu = (self.mu_dc_mV + g_e * self.E_e_mV + g_i * self.E_i_mV) / G
            # charge-equivalent jumps at the effective rest: w tau_s (E - mu) / tau_m
            de = (self.tau_e_ms / self.tau_m_ms * (self.E_e_mV - mu)) ** 2
            di = (self.tau_i_ms / self.tau_m_ms * (self.E_i_mV - mu)) ** 2
            te = tau_eff * 1e-3
            var_e = te * (de * sums(Kw2, exc) + de * self.w_in**2 * self.nu_in_hz)
            var_i = te * di * sums(Kw2, ~exc)
        var_white = self.sigma_white_mV**2 * (tau_eff / self.tau_m_ms)
        sigma = np.sqrt(var_e + var_i + var_white)
        # Fourcaud-Brunel: filtered noise raises the effective threshold and reset
        shift = 0.5 * ALPHA_FB * np.sqrt(var_e * self.tau_e_ms / tau_eff + var_i * self.tau_i_ms / tau_eff)
        # time steps: overshoot of the unfiltered (white and delta-jump) part of the noise
        var_unfiltered = var_white + (var_e if self.tau_e_ms == 0 else 0.0) + (var_i if self.tau_i_ms == 0 else 0.0)
        shift = shift + RHO_SIEGMUND * np.sqrt(var_unfiltered * self.dt_ms / tau_eff)
        return mu, sigma, tau_eff, shift

    def transfer(self, nu_hz: np.ndarray, fast: bool = False) -> np.ndarray:
        """``Phi(nu)``: the output rates (A,) for presynaptic rates ``nu_hz`` (B,) (or batched, as
        :meth:`moments`); ``fast``: :func:`~cortex_resnet.spiking.fast_siegert.siegert_fast` (closed
        form, within 1e-9 relative of the quadrature, ~50x cheaper)."""
        mu, sigma, tau_eff, shift = self.moments(nu_hz)
        sigma = np.maximum(sigma, 1e-6)
        rate = siegert_fast if fast else siegert
        return rate(mu, sigma, tau_eff, self.t_ref_ms, self.theta_mV + shift, self.v_reset_mV + shift)

    def gain(self, nu_hz: np.ndarray) -> np.ndarray:
        """``d nu_a / d mu_a`` (Hz/mV) at presynaptic rates ``nu_hz``, noise held fixed."""
        mu, sigma, tau_eff, shift = self.moments(nu_hz)
        sigma = np.maximum(sigma, 1e-6)
        return siegert_derivative(mu, sigma, tau_eff, self.t_ref_ms, self.theta_mV + shift,
                                  self.v_reset_mV + shift)

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return f"PoolModel({self.tau_m_ms.size} pools, {self.kind} synapses, dt {self.dt_ms:g} ms)"


@dataclass(frozen=True)
class MeanFieldResult:
    """Self-consistent rates (Hz) with the input mean/noise (mV) that produce them."""

    rates_hz: np.ndarray
    mu_mV: np.ndarray
    sigma_mV: np.ndarray
    residual_hz: float
    iterations: int

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return (f"MeanFieldResult({self.rates_hz.size} pools: {self.rates_hz.min():.3g}..{self.rates_hz.max():.3g} Hz, "
                f"residual {self.residual_hz:.3g} Hz, {self.iterations} iterations)")


def solve(model: PoolModel, nu0_hz: np.ndarray | float = 5.0, *, tol_hz: float = 1e-6,
          max_iter: int = 20000, tau_relax: float = 0.2) -> MeanFieldResult:
    """Self-consistent rates ``nu = Phi(nu)`` of a recurrent pool model (A == B).

    Relaxes ``nu <- nu + tau_relax (Phi(nu) - nu)`` (the rate dynamics, so it
    finds the stable fixed point reached from ``nu0``), then polishes with a
    Newton solve.

    Raises
    ------
    ConvergenceError
        If no fixed point is reached (e.g. an oscillatory, synchronous regime).
    """
    n = model.K.shape[0]
    nu = np.broadcast_to(np.asarray(nu0_hz, dtype=np.float64), (n,)).copy()
    res = np.inf
    it = 0
    for it in range(1, max_iter + 1):
        phi = model.transfer(nu)
        step = phi - nu
        res = float(np.max(np.abs(step)))
        if res < tol_hz or not np.all(np.isfinite(phi)):
            break
        nu = np.maximum(nu + tau_relax * step, 0.0)
    if np.all(np.isfinite(nu)):
        from scipy.optimize import root

        sol = root(lambda v: model.transfer(np.maximum(v, 0.0)) - v, nu, method="hybr", tol=1e-12)
        cand = np.maximum(sol.x, 0.0)
        cres = float(np.max(np.abs(model.transfer(cand) - cand)))
        if cres < res:
            nu, res = cand, cres
    if not (res <= tol_hz and np.all(np.isfinite(nu))):
        raise ConvergenceError(f"mean field did not converge: max |Phi(nu) - nu| = {res:.3g} Hz "
                               f"after {it} relaxation steps (the network may oscillate or run away)",
                               residual=res, iterations=it)
    mu, sigma, _, _ = model.moments(nu)
    return MeanFieldResult(rates_hz=nu, mu_mV=mu, sigma_mV=sigma, residual_hz=res, iterations=it)
