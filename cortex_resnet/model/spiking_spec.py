"""How a circuit is realised as a spiking network: the ``[spiking]`` table of a model file.

Each rate unit becomes a *pool* of ``pool_size`` leaky integrate-and-fire
(LIF) neurons of its population (E or I, never both). Pools are connected
where the rate circuit has a connection (its mask); within a connected pair of
pools every neuron pair is connected with probability ``synapse.p_connect``.
A rate coupling ``W_ab`` becomes a synaptic weight such that the mean input a
neuron of pool ``a`` receives per Hz of pool ``b``'s rate equals the rate
model's (after the gain scaling, see :mod:`cortex_resnet.spiking.build`).

Units: potentials in mV (absolute, e.g. rest at -70 mV), times in ms, rates
in Hz. Conductances are in units of the leak conductance (dimensionless).

Example (TOML)::

    [spiking]
    pool_size = 800
    weight_scaling = "identity"
    [spiking.populations.E]
    tau_m_ms = 20.0
    v_rest_mV = -60.0
    v_th_mV = -50.0
    v_reset_mV = -60.0
    t_ref_ms = 5.0
    [spiking.synapse]
    kind = "conductance"
    tau_e_ms = 5.0
    tau_i_ms = 10.0
    p_connect = 0.02
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from cortex_resnet.core.specbase import Frozen

__all__ = ["LIFSpec", "SpikingPopulations", "SynapseSpec", "InputEncodingSpec", "MonitorSpec",
           "SpikingSpec", "MAX_POOL_SIZE"]

MAX_POOL_SIZE = 1_000_000


_Frozen = Frozen  # immutable, no unknown keys, finite strict numbers, bounded text (specbase)


class LIFSpec(_Frozen):
    """Leaky integrate-and-fire neuron of one population.

    ``tau_m_ms``: membrane time constant (ms); ``v_rest_mV``: resting
    potential; ``v_th_mV``: threshold; ``v_reset_mV``: reset potential, below
    the threshold (mV); ``t_ref_ms``: absolute refractory period (ms), during
    which the potential is clamped at the reset.

    The defaults are Brunel's (2000) neuron: theta = 20 mV and V_r = 10 mV above
    rest, tau_m = 20 ms, t_ref = 2 ms -- the same numbers as the defaults of the
    ``lif`` transfer function, so a rate model with ``phi = lif`` is this
    neuron's mean field.
    """

    tau_m_ms: float = Field(default=20.0, gt=0.0, le=1e4)
    v_rest_mV: float = Field(default=-70.0, ge=-500.0, le=500.0)
    v_th_mV: float = Field(default=-50.0, ge=-500.0, le=500.0)
    v_reset_mV: float = Field(default=-60.0, ge=-500.0, le=500.0)
    t_ref_ms: float = Field(default=2.0, ge=0.0, le=1e4)

    @field_validator("v_reset_mV")
    @classmethod
    def _reset_below_threshold(cls, v: float, info: ValidationInfo) -> float:
        th = info.data.get("v_th_mV")
        if th is not None and not v < th:
            raise ValueError(f"the reset must lie below the threshold v_th_mV = {th} mV "
                             f"(got a reset {'at' if v == th else 'above'} threshold)")
        return v

    @property
    def theta_mV(self) -> float:
        """Threshold above rest (mV), the ``theta_mV`` of the ``lif`` transfer."""
        return self.v_th_mV - self.v_rest_mV

    @property
    def reset_above_rest_mV(self) -> float:
        """Reset above rest (mV), the ``v_reset_mV`` of the ``lif`` transfer."""
        return self.v_reset_mV - self.v_rest_mV


class SpikingPopulations(_Frozen):
    """``[spiking.populations.NAME]``: the LIF parameters of each population, by name
    (defaults: :class:`LIFSpec`'s)."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)
    __pydantic_extra__: dict[str, LIFSpec] = Field(init=False)
    EXTRA_MODEL: ClassVar[type[BaseModel]] = LIFSpec  # for "did you mean" messages (specbase)
    E: LIFSpec = LIFSpec()
    I: LIFSpec = LIFSpec()

    def of(self, name: str) -> LIFSpec:
        """The neuron of population ``name``."""
        if name in ("E", "I"):
            return getattr(self, name)
        return (self.model_extra or {}).get(name, LIFSpec())

    @property
    def named(self) -> list[str]:
        """Population names given here (E/I only when they differ from the default neuron)."""
        return [k for k in ("E", "I") if getattr(self, k) != LIFSpec()] + list(self.model_extra or {})


class SynapseSpec(_Frozen):
    """Recurrent synapses.

    ``kind = "current"``: exponential current synapses with time constants
    ``tau_e_ms``/``tau_i_ms`` (0 = delta synapses: an instantaneous jump of the
    potential, Brunel 2000); ``kind = "conductance"``: exponential conductances
    (in units of the leak) with reversal potentials ``E_e_mV``/``E_i_mV``
    (Vogels & Abbott 2005). ``delay_ms``: transmission delay of every synapse
    (of excitatory synapses when ``delay_i_ms`` is set, which is then the delay of
    inhibitory ones). ``delay_rel_sd``/``weight_rel_sd``: relative standard deviation
    of per-synapse normal delays (redrawn below half a time step, rounded to the step)
    and weights (redrawn across 0: Dale's sign kept), as in Potjans & Diesmann (2014).
    ``p_connect``: probability that a neuron of pool ``b`` connects to a neuron
    of pool ``a`` when the rate circuit connects ``b`` to ``a``.
    ``fixed_indegree``: instead of independent draws, every neuron receives exactly
    ``round(p_connect * pool_size)`` synapses from each pool connected to its own
    (Brunel 2000: "each neuron receives C_E excitatory and C_I inhibitory
    connections"; removes the in-degree heterogeneity of independent draws).
    ``fixed_total_number``: each connected pair of populations gets exactly
    ``round(p N_post N_pre)`` synapses with uniformly drawn ends, autapses and
    multapses allowed (Potjans & Diesmann 2014; NEST's ``fixed_total_number``).
    ``v_ref_mV``: conductance synapses only -- the potential at which a
    conductance's driving force is evaluated to convert a rate coupling (mV per
    Hz) into a conductance (default: midway between reset and threshold).
    """

    kind: Literal["current", "conductance"] = "current"
    tau_e_ms: float = Field(default=0.0, ge=0.0, le=1e4)
    tau_i_ms: float = Field(default=0.0, ge=0.0, le=1e4)
    E_e_mV: float = Field(default=0.0, ge=-500.0, le=500.0)
    E_i_mV: float = Field(default=-80.0, ge=-500.0, le=500.0)
    delay_ms: float = Field(default=1.5, ge=0.0, le=1e4)
    delay_i_ms: float | None = Field(default=None, ge=0.0, le=1e4)
    delay_rel_sd: float = Field(default=0.0, ge=0.0, le=10.0)
    weight_rel_sd: float = Field(default=0.0, ge=0.0, le=10.0)
    p_connect: float = Field(default=1.0, gt=0.0, le=1.0)
    fixed_indegree: bool = False
    fixed_total_number: bool = False
    v_ref_mV: float | None = Field(default=None, ge=-500.0, le=500.0)

    @model_validator(mode="after")
    def _one_rule(self) -> "SynapseSpec":
        if self.fixed_indegree and self.fixed_total_number:
            raise ValueError("fixed_indegree and fixed_total_number are two connection rules: set at most one")
        return self

    @model_validator(mode="after")
    def _conductance_needs_tau(self) -> "SynapseSpec":
        if self.kind == "conductance" and (self.tau_e_ms == 0 or self.tau_i_ms == 0):
            raise ValueError("conductance synapses need tau_e_ms > 0 and tau_i_ms > 0 "
                             "(delta synapses, tau = 0, exist only for kind = 'current')")
        return self


class InputEncodingSpec(_Frozen):
    """How the feedforward drive ``B u(t) + b`` enters the neurons.

    ``mode = "poisson"``: each neuron receives Poisson spikes, each of weight
    ``weight_mV`` (a jump of the potential for delta synapses; the same mean
    effect for exponential synapses), at the rate ``drive / (weight_mV tau_m)``
    -- the input-rate scaling: a drive of 1 mV is ``1 / (weight_mV tau_m)`` Hz of
    input spikes. Negative drive cannot be Poisson-coded and is clipped at 0.
    ``mode = "current"``: the drive is a deterministic current (mV of mean
    depolarisation).
    ``stimulus_dt_ms``: how finely ``u(t)`` is sampled (zero-order hold).
    """

    mode: Literal["poisson", "current"] = "poisson"
    weight_mV: float = Field(default=0.1, gt=0.0, le=1e3)
    stimulus_dt_ms: float = Field(default=1.0, gt=0.0, le=1e5)
    dc_mV: dict[str, float] = Field(default_factory=dict)  # poisson mode: this much of a population's drive as a current


class MonitorSpec(_Frozen):
    """What is recorded.

    ``rate_bin_ms``: bin width of the pool rates ``r(t)`` (ms);
    ``n_traces``: membrane-potential traces per population (first stimulus);
    ``trace_stride``: record the traces every n-th time step;
    ``spikes``: keep every spike (time, neuron) in the result.
    """

    rate_bin_ms: float = Field(default=1.0, gt=0.0, le=1e5)
    n_traces: int = Field(default=2, ge=0, le=1000)
    trace_stride: int = Field(default=10, ge=1, le=1_000_000)
    spikes: bool = True


class SpikingSpec(_Frozen):
    """The spiking realisation of a circuit (see the module docstring).

    ``pool_size``: neurons per rate unit (``M``).
    ``weight_scaling``: ``"gain"`` scales rate couplings by the ratio of the
    rate model's gain to the LIF gain at the operating point (the identity when
    the population's transfer is ``lif`` with this neuron's parameters);
    ``"identity"``: couplings are already in mV per Hz and rates in Hz;
    ``"fit"`` / ``"fit_population"``: gain and offset per unit / per population fitted
    over a sample of inputs (:mod:`cortex_resnet.spiking.mapping_fit`).
    ``rate_unit_hz``: Hz per rate unit for transfers other than ``lif``.
    ``background_noise = "match"``: add white noise so that the total input noise
    at the operating point equals the transfer's ``sigma_mV`` (``lif``) or
    ``sigma_mV`` here (other transfers); ``"none"``: only synaptic shot noise.
    ``dt_ms``: integration step; ``method``: Brian2 integrator (``euler``, or
    ``exponential_euler`` where there is no white noise).
    ``pathways``: neuron-pair connection probability per (post, pre) population pair,
    ``[spiking.pathways.POST] PRE = 0.1`` (default ``synapse.p_connect``): sets each pathway's
    in-degree (``p`` times the presynaptic population's neurons), e.g. the Potjans-Diesmann table.
    ``v_init``: initial potentials: ``stationary`` (default) drawn from the LIF
    stationary density at the mean-field fixed point of the initial drive (no
    start-up volley; see :mod:`cortex_resnet.spiking.initial_state`), ``uniform`` between
    reset and threshold, or ``normal`` around their midpoint with ``v_init_sd_mV``.
    """

    pool_size: int = Field(default=10, ge=1, le=MAX_POOL_SIZE)
    populations: SpikingPopulations = SpikingPopulations()
    synapse: SynapseSpec = SynapseSpec()
    input: InputEncodingSpec = InputEncodingSpec()
    monitor: MonitorSpec = MonitorSpec()
    weight_scaling: Literal["gain", "identity", "fit", "fit_population"] = "gain"
    rate_unit_hz: float = Field(default=10.0, gt=0.0, le=1e4)
    background_noise: Literal["match", "none"] = "match"
    sigma_mV: float = Field(default=5.0, gt=0.0, le=1e3)
    dt_ms: float = Field(default=0.1, ge=1e-4, le=10.0)  # below 0.1 us: no LIF run needs it
    method: Literal["euler", "exponential_euler"] = "euler"
    v_init: Literal["stationary", "uniform", "normal"] = "stationary"
    v_init_sd_mV: float = Field(default=5.0, ge=0.0, le=1e3)
    pathways: dict[str, dict[str, Annotated[float, Field(gt=0.0, le=1.0)]]] = Field(default={}, max_length=1000)

    def p_connect(self, post: str, pre: str) -> float:
        """Neuron-pair connection probability from population ``pre`` onto ``post``."""
        return float(self.pathways.get(post, {}).get(pre, self.synapse.p_connect))

    def lif(self, population: str) -> LIFSpec:
        """The neuron parameters of population ``population`` (a name, e.g. ``"E"`` or ``"L4E"``)."""
        return self.populations.of(population)
