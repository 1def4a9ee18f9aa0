"""Meanings and units of the spec fields, for ``cortex-resnet schema`` and docs/schema.md.

Keys are ``ClassName.field`` (a class reused in two places, e.g. ``PopulationSpec``
for E and I, is described once). A ``Field(description=...)`` on the model takes
precedence over :data:`MEANINGS`; units not listed in :data:`UNITS` follow the
field name's suffix (``_ms`` ms, ``_hz`` Hz, ``_mV`` mV, ``_rad`` rad). Rates of
the rate model are in *rate units* (``spiking.rate_unit_hz`` Hz each).
"""

from __future__ import annotations

__all__ = ["MEANINGS", "UNITS", "SUFFIX_UNITS"]

SUFFIX_UNITS = {"_ms": "ms", "_hz": "Hz", "_mV": "mV", "_rad": "rad"}

_RU = "rate units"
UNITS = {
    "BiasSpec.E": _RU, "BiasSpec.I": _RU, "NoiseSpec.sigma": _RU,
    "InputSpec.gain_E": "rate units per input unit", "InputSpec.gain_I": "rate units per input unit",
    "ConnectivitySpec.J_EE": "1", "ConnectivitySpec.J_EI": "1",
    "ConnectivitySpec.J_IE": "1", "ConnectivitySpec.J_II": "1",
    "ConnectivitySpec.sigma_E": "map sites", "ConnectivitySpec.sigma_I": "map sites",
    "StimulusSpec.amp": "input units", "StimulusSpec.baseline": "input units",
    "SpikingSpec.pool_size": "neurons", "MonitorSpec.n_traces": "neurons", "MonitorSpec.trace_stride": "steps",
    "CircuitModelSpec.steps": "residual blocks", "CircuitModelSpec.kernel_size": "samples (map sites)",
    "ConvAreaSpec.steps": "Euler steps", "ConvAreaSpec.stride": "map sites", "ConvAreaSpec.kernel_size": "map sites",
    "ConvAreaSpec.channels_E": "channels", "ConvAreaSpec.channels_I": "channels",
    "TrainSpec.epochs": "epochs", "TrainSpec.batch_size": "examples", "TrainSpec.eval_batch_size": "examples",
    "ScheduleSpec.warmup_epochs": "epochs", "ScheduleSpec.milestones": "epochs",
    "DataSpec.n_train": "examples", "DataSpec.n_test": "examples", "PopulationSpec.n": "units",
    "InputSpec.n_inputs": "input channels",
    "InputSpec.sigma_deg": "deg", "TuningSpec.period_deg": "deg", "TuningSpec.sigma_deg": "deg",
}

_CIRCUIT = {
    "CircuitSpec.name": "Name of the circuit; becomes part of output paths (runs/<name>).",
    "CircuitSpec.description": "Free text, copied into every result file.",
    "CircuitSpec.seed": "Seed of the random weights, input projection and noise.",
    "CircuitSpec.populations": "The populations: [populations.E] and [populations.I] (the two-population "
                               "shorthand), or any number of named [populations.NAME] tables with a type.",
    "CircuitSpec.connectivity": "Recurrent connectivity W.",
    "CircuitSpec.input": "Feedforward projection B of the stimulus u(t).",
    "CircuitSpec.bias": "Constant background input b per population.",
    "CircuitSpec.noise": "Ornstein-Uhlenbeck input noise.",
    "CircuitSpec.simulation": "Defaults of `cortex-resnet simulate` when the command line gives none.",
    "CircuitSpec.references": "Literature the parameters come from (free text, one entry each).",
    "CircuitSpec.spiking": "How the circuit is realised as a spiking LIF network (docs/spiking.md).",
    "CircuitSpec.weights": "A .npz weight file (relative to the model file) written by save_circuit; its arrays "
                           "replace the random draws (the connectivity and input fields then describe only the "
                           "initialisation).",
    "Populations.E": "Excitatory population (pyramidal cells).",
    "Populations.I": "Inhibitory population (interneurons).",
    "PopulationSpec.n": "Number of rate units of the population.",
    "PopulationSpec.tau_ms": "Rate time constant: tau dr/dt = -r + phi(W r + B u + b).",
    "PopulationSpec.transfer": "Transfer function phi: `name` plus its own parameters.",
    "TransferSpec.name": "Transfer function: relu, tanh, sigmoid, power (SSN), lif (Siegert mean field), ... "
                         "(`cortex-resnet info` lists them).",
    "TransferSpec.<parameter>": "Any other key is a parameter of the named transfer function (e.g. gain, "
                                "threshold); a finite number, checked against that function's parameters.",
    "ConnectivitySpec.kind": "dense (all to all), sparse (each connection with probability p) or spatial "
                             "(units on a periodic 1-D/2-D map, Gaussian kernels: a convolution).",
    "ConnectivitySpec.p": "Connection probability (kind = sparse).",
    "ConnectivitySpec.J_EE": "Total coupling onto one E unit from the E population.",
    "ConnectivitySpec.J_EI": "Total coupling onto one E unit from the I population (enters with a minus sign).",
    "ConnectivitySpec.J_IE": "Total coupling onto one I unit from the E population.",
    "ConnectivitySpec.J_II": "Total coupling onto one I unit from the I population (enters with a minus sign).",
    "ConnectivitySpec.weight_cv": "Coefficient of variation of the gamma-distributed weight magnitudes (0: all equal).",
    "ConnectivitySpec.balanced": "Rescale each row's inhibition to cancel its excitation exactly (W 1 = 0).",
    "ConnectivitySpec.map_shape": "Map size for kind = spatial: one or two positive sizes, e.g. [64] or [16, 16]; "
                                  "each population's n must be a multiple of the number of sites.",
    "ConnectivitySpec.sigma_E": "Width of the excitatory Gaussian kernel (kind = spatial).",
    "ConnectivitySpec.sigma_I": "Width of the inhibitory Gaussian kernel (kind = spatial).",
    "InputSpec.n_inputs": "Number of stimulus channels (columns of B).",
    "InputSpec.gain_E": "Input gain onto E units.",
    "InputSpec.gain_I": "Input gain onto I units.",
    "InputSpec.projection": "uniform (every unit gets every channel), random (|N(0, gain^2)|), topographic "
                            "(channel s drives map site s; spatial circuits), by_population (2 channels: 0 -> E, 1 -> I), "
                            "tuned (a von Mises of sigma_deg over preferred features; needs [tuning]).",
    "BiasSpec.E": "Constant background input to every E unit.",
    "BiasSpec.I": "Constant background input to every I unit.",
    "NoiseSpec.sigma": "Stationary standard deviation of the OU input noise (0: no noise).",
    "NoiseSpec.tau_ms": "Correlation time of the OU input noise.",
    "SimulationDefaults.duration_ms": "Simulated time.",
    "SimulationDefaults.dt_ms": "Integration time step (duration_ms / dt_ms at most 1e9 steps).",
    "SimulationDefaults.method": "Integrator: euler, expeuler, rk4, dopri5, ... (the rate simulator's registry).",
    "SimulationDefaults.stimulus": "Stimulus in the command-line form KIND:key=value,... (see `schema stimulus`).",
}

_SPIKING = {
    "SpikingSpec.pool_size": "LIF neurons per rate unit (M).",
    "SpikingSpec.populations": "Neuron parameters per population: E and I, or [spiking.populations.NAME].",
    "SpikingSpec.synapse": "Recurrent synapses.",
    "SpikingSpec.input": "How the feedforward drive B u(t) + b enters the neurons.",
    "SpikingSpec.monitor": "What is recorded.",
    "SpikingSpec.weight_scaling": "gain: scale rate couplings by the rate/LIF gain ratio at the operating point; "
                                  "identity: couplings are already in mV per Hz and rates in Hz; fit / fit_population: "
                                  "gain and offset per unit / per population fitted over a sample of inputs.",
    "SpikingSpec.rate_unit_hz": "Hz per rate unit, for transfer functions other than lif.",
    "SpikingSpec.background_noise": "match: add white noise so the total input noise equals sigma_mV at the "
                                    "operating point; none: synaptic shot noise only.",
    "SpikingSpec.sigma_mV": "Input noise to match for transfers other than lif (lif uses its own sigma_mV).",
    "SpikingSpec.dt_ms": "Integration time step of the spiking network.",
    "SpikingSpec.method": "Brian2 integrator: euler, or exponential_euler (only without white noise).",
    "SpikingSpec.v_init": "Initial potentials: stationary (LIF stationary density at the mean-field fixed "
                          "point), uniform (between reset and threshold) or normal (around their midpoint).",
    "SpikingSpec.v_init_sd_mV": "Standard deviation of the initial potentials for v_init = normal.",
    "SpikingPopulations.E": "LIF parameters of the excitatory neurons.",
    "SpikingPopulations.I": "LIF parameters of the inhibitory neurons.",
    "LIFSpec.tau_m_ms": "Membrane time constant.",
    "LIFSpec.v_rest_mV": "Resting potential (absolute).",
    "LIFSpec.v_th_mV": "Spike threshold (absolute).",
    "LIFSpec.v_reset_mV": "Reset potential after a spike; must lie below v_th_mV.",
    "LIFSpec.t_ref_ms": "Absolute refractory period (potential clamped at the reset).",
    "SynapseSpec.kind": "current: exponential current synapses (tau 0 = delta synapses); conductance: "
                        "exponential conductances in units of the leak, with reversal potentials.",
    "SynapseSpec.tau_e_ms": "Excitatory synaptic time constant (0 = delta synapses; > 0 for conductance).",
    "SynapseSpec.tau_i_ms": "Inhibitory synaptic time constant (0 = delta synapses; > 0 for conductance).",
    "SynapseSpec.E_e_mV": "Excitatory reversal potential (conductance synapses).",
    "SynapseSpec.E_i_mV": "Inhibitory reversal potential (conductance synapses).",
    "SynapseSpec.delay_ms": "Transmission delay of every synapse (of excitatory ones when delay_i_ms is set).",
    "SynapseSpec.delay_i_ms": "Transmission delay of inhibitory synapses (default: delay_ms).",
    "SynapseSpec.delay_rel_sd": "Relative standard deviation of per-synapse normal delays (redrawn below half "
                                "a time step, rounded to the step); 0 = every delay exact.",
    "SynapseSpec.weight_rel_sd": "Relative standard deviation of per-synapse normal weights (redrawn across 0: "
                                 "Dale's sign kept); 0 = equal weights per pathway.",
    "SynapseSpec.p_connect": "Probability that a neuron of pool b connects to a neuron of pool a where the "
                             "rate circuit connects b to a.",
    "SynapseSpec.fixed_indegree": "Every neuron receives exactly round(p_connect * pool_size) synapses from "
                                  "each connected pool (Brunel 2000) instead of independent draws.",
    "SynapseSpec.fixed_total_number": "Each connected population pair gets exactly round(p N_post N_pre) "
                                      "synapses with uniformly drawn ends, multapses allowed (Potjans & "
                                      "Diesmann 2014, NEST's fixed_total_number).",
    "SynapseSpec.v_ref_mV": "Conductance synapses: potential at which the driving force converts a rate "
                            "coupling into a conductance (default: midway between reset and threshold).",
    "InputEncodingSpec.dc_mV": "poisson mode: per population name, this much of the drive (mV of mean "
                               "depolarisation) enters as a constant current, the rest as Poisson spikes.",
    "InputEncodingSpec.mode": "poisson: Poisson input spikes of weight_mV each (negative drive clipped at 0); "
                              "current: a deterministic current.",
    "InputEncodingSpec.weight_mV": "Weight of one Poisson input spike (a drive of 1 mV is "
                                   "1 / (weight_mV tau_m) Hz of input spikes).",
    "InputEncodingSpec.stimulus_dt_ms": "Sampling step of u(t) (zero-order hold).",
    "MonitorSpec.rate_bin_ms": "Bin width of the pool rates r(t).",
    "MonitorSpec.n_traces": "Membrane-potential traces recorded per population (first stimulus).",
    "MonitorSpec.trace_stride": "Record the traces every n-th time step.",
    "MonitorSpec.spikes": "Keep every spike (time, neuron) in the result.",
}

_STIMULUS = {
    "StimulusSpec.kind": "constant (amp always), step (amp from onset_ms to offset_ms), pulse (amp for width_ms), "
                         "ramp (0 at onset_ms to amp at offset_ms, then held), sinusoid "
                         "(baseline + amp sin(2 pi freq_hz t / 1000 + phase_rad)), npy (an array from path).",
    "StimulusSpec.amp": "Amplitude; a list makes a batch (one stimulus per value), e.g. amp=[0.5,1,2].",
    "StimulusSpec.onset_ms": "Start time.",
    "StimulusSpec.offset_ms": "End time (step: default the end of the run; ramp: end of the rise); after onset_ms.",
    "StimulusSpec.width_ms": "Duration of a pulse.",
    "StimulusSpec.freq_hz": "Frequency of a sinusoid.",
    "StimulusSpec.phase_rad": "Phase of a sinusoid.",
    "StimulusSpec.baseline": "Offset of a sinusoid.",
    "StimulusSpec.path": "kind = npy: a .npy file of shape (T, n_inputs) or (T, batch, n_inputs).",
    "StimulusSpec.dt_ms": "kind = npy: time between the array's rows (zero-order hold, last row held).",
    "StimulusSpec.channels": "Input channels that receive the stimulus (default: all).",
}

_EXPERIMENT = {
    "ExperimentSpec.name": "Name of the experiment; becomes part of output paths.",
    "ExperimentSpec.description": "Free text, copied into the run's report.",
    "ExperimentSpec.seed": "Seed of the initialisation and the shuffling.",
    "ExperimentSpec.device": "auto (CUDA when present), cpu, cuda or cuda:N.",
    "ExperimentSpec.data": "The dataset.",
    "ExperimentSpec.model": "The network: an unrolled circuit (kind = circuit) or a baseline (kind = baseline).",
    "ExperimentSpec.optim": "The optimiser.",
    "ExperimentSpec.schedule": "The learning-rate schedule (a function of the fractional epoch).",
    "ExperimentSpec.train": "Loop settings.",
    "ExperimentSpec.references": "Literature (free text, one entry each).",
    "DataSpec.name": "Dataset: mnist1d, digits, connected, crossing, mnist or cifar10.",
    "DataSpec.seed": "Seed of a generated dataset (42 = the published MNIST-1D set).",
    "DataSpec.params": "Parameters of the dataset generator (numbers or booleans).",
    "DataSpec.data_dir": "Folder holding a file-backed dataset (e.g. CIFAR-10).",
    "DataSpec.n_train": "Keep only the first n training examples (quick runs).",
    "DataSpec.n_test": "Keep only the first n test examples.",
    "DataSpec.augment": "none, or crop_flip: random 4-pixel-padded crops and horizontal flips of images.",
    "CircuitModelSpec.kind": "circuit: an E/I circuit unrolled into a residual network.",
    "CircuitModelSpec.circuit": "A circuit model file, relative to the experiment file, then to the working "
                                "directory (exactly one of circuit or spec).",
    "CircuitModelSpec.spec": "The circuit model inline, as a [model.spec] table (see `schema model`).",
    "CircuitModelSpec.overrides": "Dotted circuit fields changed on it, e.g. {\"populations.E.n\" = 128}.",
    "CircuitModelSpec.variant": ("tied (one W for every step: the circuit), untied (one W per step: a ResNet), plain "
                                "(alpha = 1, no identity path), projection (learned shortcut P), gated (learned "
                                "per-unit alpha, highway)."),
    "CircuitModelSpec.steps": "Number of unrolled Euler steps K.",
    "CircuitModelSpec.dt_ms": "Euler step of the unrolled dynamics.",
    "CircuitModelSpec.input_mode": "sustained (u enters every step, r_0 = 0) or pulse (u sets the initial state only).",
    "CircuitModelSpec.input_projection": "dense (a linear map onto the inputs) or conv (a convolution, "
                                         "for sequences/images on a spatial circuit).",
    "CircuitModelSpec.kernel_size": "Kernel size of the conv input projection (odd).",
    "CircuitModelSpec.input_populations": ("Named populations the input reaches, e.g. [\"L4E\", \"L4I\"] "
                                           "(thalamic input to layer 4); the others get input gain 0."),
    "CircuitModelSpec.readout_populations": ("Named excitatory populations read out, e.g. [\"L23E\", \"L5E\"]; "
                                             "default: every E unit."),
    "CircuitModelSpec.learnable": "Train the recurrent weights (false freezes them).",
    "CircuitModelSpec.init": "circuit (start from the circuit's weights) or balanced (fresh balanced weights).",
    "CircuitModelSpec.init_radius": "Bulk spectral radius of the balanced initialisation.",
    "CircuitModelSpec.norm": "Per-step normalisation: layer or batch (weights tied, norms not); none by default.",
    "CircuitModelSpec.state_gate": "State-dependent gates (only with variant = gated).",
    "CircuitModelSpec.dale": "How magnitudes stay non-negative (Dale's law): softplus or relu.",
    "CircuitModelSpec.recurrence": ("dense (one weight per connection) or conv (kernels shared across a translation-"
                                    "invariant spatial circuit's sites, run as real convolutions)."),
    "CircuitModelSpec.areas": ("A chain of conv areas (CORnet-S style), each a copy of the circuit on its own map: "
                               "a list of tables with channels_E, channels_I, steps, stride, kernel_size; empty: "
                               "one circuit. Needs recurrence = conv, input_projection = conv and steps = the "
                               "sum of the areas' steps."),
    "CircuitModelSpec.feedforward": ("Between conv areas: dale (the E channels project with non-negative "
                                     "weights) or signed."),
    "ConvAreaSpec.channels_E": "Excitatory (pyramidal) channels of the area: they are read out and project on.",
    "ConvAreaSpec.channels_I": "Inhibitory channels of the area (local only).",
    "ConvAreaSpec.steps": "Euler steps the area runs on its feedforward drive before passing its E rates on.",
    "ConvAreaSpec.stride": "Stride of the feedforward convolution into the area (its map = the previous / stride).",
    "ConvAreaSpec.kernel_size": "Kernel size of the feedforward convolution into the area (odd, same padding).",
    "BaselineModelSpec.kind": "baseline: a conventional network.",
    "BaselineModelSpec.name": "Baseline name: logreg, mlp, cnn, gru or resnet.",
    "BaselineModelSpec.params": "Parameters of the baseline (numbers, booleans or strings).",
    "OptimSpec.name": "adam, adamw or sgd.",
    "OptimSpec.lr": "Learning rate (peak, before the schedule).",
    "OptimSpec.momentum": "Momentum (sgd).",
    "OptimSpec.nesterov": "Nesterov momentum (sgd).",
    "OptimSpec.weight_decay": "Weight decay (L2 for adam/sgd, decoupled for adamw).",
    "OptimSpec.betas": "Adam's (beta1, beta2).",
    "OptimSpec.grad_clip": "Clip the global gradient norm to this value (default: off).",
    "ScheduleSpec.kind": "constant, cosine (to 0 at the last epoch) or step (times gamma at each milestone).",
    "ScheduleSpec.milestones": "Epochs (>= 1) at which the step schedule multiplies the rate by gamma.",
    "ScheduleSpec.gamma": "Factor of the step schedule.",
    "ScheduleSpec.warmup_epochs": "Linear warm-up length.",
    "ScheduleSpec.warmup_factor": "Warm-up starts at warmup_factor * lr.",
    "TrainSpec.epochs": "Passes over the training set.",
    "TrainSpec.batch_size": "Training mini-batch size.",
    "TrainSpec.eval_batch_size": "Evaluation batch size.",
    "TrainSpec.loss_steps": "Cross-entropy on the last step's readout, or the mean over all steps (anytime readout).",
    "TrainSpec.amp": "bf16 autocast: auto (on CUDA only), bf16 or off.",
    "TrainSpec.compile": "Wrap the model in torch.compile.",
    "TrainSpec.drop_last": "Drop the last incomplete training batch.",
}


# named populations (any number; the E/I pair is the two-population shorthand)
_POPULATIONS = {
    "Populations.<NAME>": "One [populations.NAME] table per population, any name (letters, digits, _); "
                          "units are ordered excitatory populations first, in file order.",
    "PopulationSpec.type": "excitatory or inhibitory (Dale's sign of its outgoing weights); may be left "
                           "out for populations named E and I.",
    "ConnectivitySpec.pathways": "Couplings of named populations, a table over (post, pre) pairs "
                                 "([connectivity.pathways.POST] PRE = { J = ..., p = ... }); replaces "
                                 "J_EE..J_II for circuits that are not the E/I pair.",
    "ConnectivitySpec.pathways.<POST>": "The pathways onto population POST, one entry per presynaptic population.",
    "ConnectivitySpec.pathways.<POST>.<PRE>": "The pathway from population PRE onto population POST.",
    "PathwaySpec.J": "Magnitude of the total coupling from PRE onto one unit of POST (sign from PRE's type).",
    "PathwaySpec.p": "Connection probability of this pathway (default: connectivity.p).",
    "InputSpec.gain": "Input gains by population name ([input.gain] L4E = 1.0); populations not listed "
                      "get gain_E (excitatory) or gain_I (inhibitory).",
    "InputSpec.gain.<NAME>": "Input gain onto the units of population NAME.",
    "BiasSpec.<parameter>": "Constant background input to every unit of the population of this name.",
    "SpikingPopulations.<NAME>": "LIF parameters of the neurons of population NAME (defaults as for E/I).",
    "SpikingSpec.pathways": "Neuron-pair connection probability per (post, pre) population pair "
                            "([spiking.pathways.POST] PRE = 0.1; default synapse.p_connect): sets in-degrees.",
    "InputEncodingSpec.dc_mV.<NAME>": "Part of population NAME's drive given as a constant current (mV).",
    "SpikingSpec.pathways.<POST>": "Connection probabilities onto population POST, one per presynaptic population.",
    "SpikingSpec.pathways.<POST>.<PRE>": "Connection probability from PRE neurons onto POST neurons.",
}

# feature-specific (tuned) circuits: cortex_resnet.model.tuning_spec
_TUNING = {
    "CircuitSpec.tuning": "Preferred features on a ring (evenly spaced per population) and feature-specific "
                          "(like-to-like) pathways; needed by input.projection = tuned.",
    "TuningSpec.period_deg": "Period of the feature ring: 180 for orientation, 360 for direction or position.",
    "TuningSpec.modulate": "What falls with the difference of preferences: the connection strength (rows keep "
                           "their total J) or its probability (kind = sparse; the pathway's p is the peak).",
    "TuningSpec.sigma_deg": "Von Mises width per tuned pathway ([tuning.sigma_deg.POST] PRE = 5.0); pathways "
                            "not listed are untuned.",
    "TuningSpec.sigma_deg.<POST>": "The widths of the tuned pathways onto population POST.",
    "TuningSpec.sigma_deg.<POST>.<PRE>": "Width of the kernel exp((cos(2 pi d / P) - 1) / s^2), s = 2 pi sigma / P, "
                                         "of the pathway from PRE onto POST (a Gaussian of sd sigma when narrow).",
    "InputSpec.sigma_deg": "Width of the tuned input projection (projection = tuned): channel c of n_inputs "
                           "prefers c * period_deg / n_inputs and drives a unit by gain * k(preference difference).",
}

MEANINGS: dict[str, str] = {**_CIRCUIT, **_SPIKING, **_STIMULUS, **_EXPERIMENT, **_POPULATIONS, **_TUNING}
