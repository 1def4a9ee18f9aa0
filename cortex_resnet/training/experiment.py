"""Experiment specifications (pydantic, TOML): what to train, on what, and how.

An experiment file (``experiments/*.toml``) has a few tables::

    name = "mnist1d_tied"
    seed = 0                       # initialisation and shuffling
    device = "auto"                # auto (CUDA when present), cpu, cuda, cuda:N

    [data]                         # cortex_resnet.data.datasets registry
    name = "mnist1d"
    seed = 42                      # 42 = the published MNIST-1D set

    [model]                        # an unrolled circuit ...
    kind = "circuit"
    circuit = "../models/mnist1d_circuit.toml"   # relative to this file; or an inline [model.spec]
    variant = "tied"               # tied | untied | plain | projection | gated
    steps = 10
    dt_ms = 0.5
    input_projection = "dense"     # dense | conv

    # [model] kind = "baseline", name = "cnn"   ... or a conventional baseline

    [optim]                        # adam | adamw | sgd
    name = "adam"
    lr = 0.01

    [schedule]                     # constant | cosine | step (milestones in epochs)
    kind = "cosine"

    [train]
    epochs = 30
    batch_size = 100

Validation turns every problem into a :class:`~cortex_resnet.errors.SpecError`
that names the field, the value and what is allowed. The file is data only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, ValidationError, model_validator

from cortex_resnet.catalog import find_experiment_file
from cortex_resnet.core.tomlio import toml_value
from cortex_resnet.errors import SpecError
from cortex_resnet.model.conv_spec import ConvAreaSpec, check_areas
from cortex_resnet.model.spec import SAFE_NAME, CircuitSpec, parse_spec, read_toml, validation_to_spec_error
from cortex_resnet.core.specbase import MAX_LIST, MAX_TEXT, Frozen, check_depth, set_dotted

__all__ = ["DataSpec", "CircuitModelSpec", "input_only", "BaselineModelSpec", "OptimSpec", "ScheduleSpec",
           "TrainSpec", "ExperimentSpec", "load_experiment", "parse_experiment", "dump_experiment",
           "learning_rate"]


_Frozen = Frozen  # immutable, no unknown keys, finite strict numbers, bounded text (specbase)


class DataSpec(_Frozen):
    """Which dataset (:mod:`cortex_resnet.data.datasets`), its seed and parameters.

    ``n_train``/``n_test`` keep the first examples only (quick runs);
    ``augment = "crop_flip"``: random 4-pixel-padded crops and horizontal flips of
    images at every step (He et al. 2016, CIFAR-10).
    """

    name: str
    seed: int = Field(default=42, ge=0, le=2**32 - 1)
    params: dict[str, float | int | bool] = {}
    data_dir: str | None = None
    n_train: int | None = Field(default=None, ge=1)
    n_test: int | None = Field(default=None, ge=1)
    augment: Literal["none", "crop_flip"] = "none"


class CircuitModelSpec(_Frozen):
    """An E/I circuit unrolled into a residual network (:func:`cortex_resnet.bridge.unroll`).

    ``circuit``: a circuit model file (relative to the experiment file, then to the
    working directory), or ``spec``: the same content inline. ``overrides``: dotted
    fields changed on it, e.g. ``{"populations.E.n" = 128}``. ``steps`` K, ``dt_ms``:
    Euler step (ms). ``input_projection``: how data reach the circuit's inputs
    (``dense`` linear map, or ``conv`` with ``kernel_size`` for sequences/images on a
    spatial circuit). The readout is from the E units at every step (anytime
    readout). ``init``: start from the circuit's weights or fresh ``balanced`` ones
    (bulk radius ``init_radius``); ``norm``: per-step normalisation (weights tied,
    norms not, as CORnet-S); ``state_gate``: state-dependent gates (``gated``);
    ``dale``: how magnitudes stay non-negative (see :mod:`cortex_resnet.bridge`).
    ``input_populations``: the named populations the input reaches (e.g. ``["L4E", "L4I"]``:
    thalamic input to layer 4); the others get input gain 0 (the input projection's zero
    pattern, kept in training). ``readout_populations``: the named excitatory populations
    read out (e.g. ``["L23E", "L5E"]``); default: every E unit.
    ``recurrence``: ``dense`` (one weight per connection) or ``conv`` (kernels shared across
    a spatial circuit's sites, run as real convolutions). ``areas``: a chain of conv areas
    (:mod:`cortex_resnet.model.conv_spec`, :mod:`cortex_resnet.bridge.conv`), each a copy of
    the circuit on its own map; ``steps`` must then be the sum of the areas' steps;
    ``feedforward``: ``dale`` (E-to-area projections with non-negative weights) or ``signed``.
    """

    kind: Literal["circuit"] = "circuit"
    circuit: str | None = None
    spec: dict[str, Any] | None = None
    overrides: dict[str, Any] = {}
    variant: Literal["tied", "untied", "plain", "projection", "gated"] = "tied"
    steps: int = Field(default=10, ge=1, le=10_000)
    dt_ms: float = Field(default=0.5, gt=0.0, le=1e4)
    input_mode: Literal["sustained", "pulse"] = "sustained"
    input_projection: Literal["dense", "conv"] = "dense"
    kernel_size: int = Field(default=5, ge=1, le=31)
    learnable: bool = True
    init: Literal["circuit", "balanced"] = "circuit"
    init_radius: float = Field(default=0.9, gt=0.0, le=100.0)
    norm: Literal["layer", "batch"] | None = None
    state_gate: bool = False
    dale: Literal["softplus", "relu"] = "softplus"
    input_populations: list[Annotated[str, Field(max_length=100)]] | None = Field(default=None, min_length=1,
                                                                                  max_length=MAX_LIST)
    readout_populations: list[Annotated[str, Field(max_length=100)]] | None = Field(default=None, min_length=1,
                                                                                    max_length=MAX_LIST)
    recurrence: Literal["dense", "conv"] = "dense"
    areas: list[ConvAreaSpec] = Field(default=[], max_length=64)
    feedforward: Literal["dale", "signed"] = "dale"

    @model_validator(mode="after")
    def _one_source(self) -> "CircuitModelSpec":
        check_areas(self)
        if self.kernel_size % 2 == 0:
            raise SpecError("model.kernel_size", self.kernel_size, "an odd size ('same' padding)")
        if self.state_gate and self.variant != "gated":
            raise SpecError("model.state_gate", True, "false unless variant = 'gated'")
        if (self.circuit is None) == (self.spec is None):
            raise SpecError("model.circuit", self.circuit, "exactly one of model.circuit (a circuit "
                            "model file) or an inline [model.spec] table")
        return self

    @property
    def name(self) -> str:
        return f"circuit_{self.variant}"


class BaselineModelSpec(_Frozen):
    """A conventional network from :mod:`cortex_resnet.training.baselines` (``name``), with ``params``."""

    kind: Literal["baseline"]
    name: str
    params: dict[str, float | int | bool | str] = {}


ModelSpec = Annotated[Union[CircuitModelSpec, BaselineModelSpec], Field(discriminator="kind")]


class OptimSpec(_Frozen):
    """Optimiser: ``adam``, ``adamw`` or ``sgd`` (``momentum``, ``nesterov``).

    ``grad_clip``: clip the global gradient norm (None = off).
    """

    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(default=1e-2, gt=0.0, le=1e3)
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    nesterov: bool = False
    weight_decay: float = Field(default=0.0, ge=0.0, le=1.0)
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = Field(default=None, gt=0.0)


class ScheduleSpec(_Frozen):
    """Learning-rate schedule, a pure function of the (fractional) epoch.

    ``constant``; ``cosine`` (to 0 at the last epoch); ``step``: multiply by
    ``gamma`` at each epoch in ``milestones``. ``warmup_epochs``: linear warm-up
    from ``warmup_factor * lr``.
    """

    kind: Literal["constant", "cosine", "step"] = "constant"
    milestones: list[int] = []
    gamma: float = Field(default=0.1, gt=0.0, le=1.0)
    warmup_epochs: float = Field(default=0.0, ge=0.0)
    warmup_factor: float = Field(default=0.1, gt=0.0, le=1.0)


class TrainSpec(_Frozen):
    """Loop settings.

    ``loss_steps``: cross-entropy on the ``last`` step's readout, or the mean over
    ``all`` steps (anytime readout). ``amp``: bf16 autocast (``auto`` = on CUDA only).
    ``compile``: wrap the model in ``torch.compile``.
    """

    epochs: int = Field(default=10, ge=1, le=100_000)
    batch_size: int = Field(default=100, ge=1, le=1_000_000)
    eval_batch_size: int = Field(default=1000, ge=1, le=1_000_000)
    loss_steps: Literal["last", "all"] = "last"
    amp: Literal["auto", "bf16", "off"] = "auto"
    compile: bool = False
    drop_last: bool = False


class ExperimentSpec(_Frozen):
    """A whole training experiment (see the module docstring)."""

    name: str = Field(default="experiment", max_length=200, pattern=SAFE_NAME)
    description: str = Field(default="", max_length=MAX_TEXT)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    device: str = Field(default="auto", max_length=100)
    data: DataSpec
    model: ModelSpec
    optim: OptimSpec = OptimSpec()
    schedule: ScheduleSpec = ScheduleSpec()
    train: TrainSpec = TrainSpec()
    references: list[str] = Field(default=[], max_length=MAX_LIST)
    source_dir: str | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _consistent(self) -> "ExperimentSpec":
        bad = [m for m in self.schedule.milestones if m < 1]
        if bad:  # milestones past the last epoch are allowed: a shortened run never reaches them
            raise SpecError("schedule.milestones", self.schedule.milestones,
                            "epochs >= 1 at which the learning rate is multiplied by gamma")
        return self

    def __repr__(self) -> str:
        """One line: data, model, optimiser, schedule, loop; ``dump_experiment`` has every field."""
        m = self.model
        model = (f"{m.name} (steps={m.steps}, dt_ms={m.dt_ms:g}, {m.circuit or 'inline spec'})"
                 if isinstance(m, CircuitModelSpec) else m.name)
        return (f"ExperimentSpec({self.name!r}: data={self.data.name}, model={model}, "
                f"optim={self.optim.name} lr={self.optim.lr:g}, schedule={self.schedule.kind}, "
                f"epochs={self.train.epochs}, batch_size={self.train.batch_size})")

    __str__ = __repr__

    @property
    def model_name(self) -> str:
        """``circuit_tied``, ``cnn``, ...: what the report calls the model."""
        return self.model.name

    def circuit_spec(self) -> CircuitSpec:
        """The circuit spec of a circuit model, with overrides applied."""
        m = self.model
        if not isinstance(m, CircuitModelSpec):
            raise SpecError("model.kind", m.kind, "'circuit' for a circuit spec")
        if m.circuit is not None:
            path = resolve_model_path(m.circuit, self.source_dir)
            data = read_toml(path)
            source = str(path)
        else:
            data, source = dict(m.spec), "model.spec"
        spec = parse_spec(data, source=source)
        if m.overrides:
            try:
                spec = spec.replace(**m.overrides)
            except (KeyError, TypeError):
                raise SpecError("model.overrides", sorted(m.overrides),
                                "existing dotted circuit-spec fields, e.g. populations.E.n") from None
        if m.input_populations is not None:
            spec = input_only(spec, m.input_populations)
        if m.readout_populations is not None:
            _check_readout(spec, m.readout_populations)
        return spec

    def replace(self, **changes: Any) -> "ExperimentSpec":
        """A validated copy with top-level or dotted fields changed (``{"train.epochs": 2}``)."""
        data = self.model_dump(mode="python")
        for key, value in changes.items():
            try:
                set_dotted(data, key, value)
            except KeyError:
                raise SpecError(key, value, "an existing dotted experiment field") from None
        return parse_experiment(data, source_dir=self.source_dir)


def input_only(spec: CircuitSpec, names: list[str]) -> CircuitSpec:
    """``spec`` with input gain only onto the populations ``names`` (each keeps its model gain).

    Raises :class:`SpecError` (field ``model.input_populations``) for an unknown or repeated
    name, or a population that the model gives no input (gain 0: nothing to keep).
    """
    pops, inp = spec.populations, spec.input
    if len(set(names)) != len(names):
        raise SpecError("model.input_populations", names, "distinct population names")
    gains = {}
    for name in names:
        if name not in pops.names:
            raise SpecError("model.input_populations", name, f"one of the circuit's populations {pops.names}")
        g = inp.gain.get(name, inp.gain_E if pops.is_excitatory(name) else inp.gain_I)
        if g <= 0:
            raise SpecError("model.input_populations", name, "a population with input gain > 0 in the model "
                            f"(input.gain.{name} or input.gain_E/gain_I); set it with model.overrides")
        gains[name] = g
    return spec.replace(**{"input.gain_E": 0.0, "input.gain_I": 0.0, "input.gain": gains})


def _check_readout(spec: CircuitSpec, names: list[str]) -> None:
    pops = spec.populations
    if len(set(names)) != len(names):
        raise SpecError("model.readout_populations", names, "distinct population names")
    excit = [k for k in pops.names if pops.is_excitatory(k)]
    for name in names:
        if name not in excit:
            raise SpecError("model.readout_populations", name, f"one of the circuit's excitatory populations "
                            f"{excit} (only pyramidal cells project out of a cortical area)")


def resolve_model_path(name: str, source_dir: str | None) -> Path:
    """A circuit model file: as given, relative to the experiment file, then the working dir."""
    p = Path(name).expanduser()
    tried = [p] if p.is_absolute() else [Path(source_dir) / p] if source_dir else []
    if not p.is_absolute():
        tried.append(Path.cwd() / p)
    for cand in tried:
        if cand.is_file():
            return cand.resolve()
    raise SpecError("model.circuit", name, "an existing circuit model file (looked at: "
                    + ", ".join(str(t) for t in tried) + "; see models/ for examples)")


def parse_experiment(data: dict[str, Any], source: str | None = None,
                     source_dir: str | Path | None = None) -> ExperimentSpec:
    """Validate a dict (parsed TOML) into an :class:`ExperimentSpec`."""
    if not isinstance(data, dict):
        raise SpecError("<file>", type(data).__name__, "a table of fields", source=source)
    check_depth(data, source)
    if "populations" in data and not {"data", "model"} & data.keys():
        raise SpecError("<file>", "a circuit model file (it has [populations])",
                        "an experiment file (with [data] and [model] tables, see experiments/); "
                        "circuit model files go to `cortex-resnet simulate`", source=source)
    data = {**data, "source_dir": str(source_dir) if source_dir is not None else None}
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as err:
        raise validation_to_spec_error(err, source, ExperimentSpec) from None


def load_experiment(path: str | Path) -> ExperimentSpec:
    """Load and validate ``experiments/NAME.toml``; model paths resolve relative to it.

    A bundled experiment is also found by name from any folder (``mnist1d_tied``)."""
    path = find_experiment_file(path)
    if not path.is_file():
        raise SpecError("experiment", str(path), "an existing experiment TOML file "
                        "(see experiments/ for examples)")
    spec = parse_experiment(read_toml(path), source=str(path), source_dir=path.parent.resolve())
    if isinstance(spec.model, CircuitModelSpec):
        spec.circuit_spec()  # a missing or malformed circuit file is an error now, not mid-run
    return spec


def dump_experiment(spec: ExperimentSpec, *, inline_circuit: bool = True) -> str:
    """TOML text that :func:`parse_experiment` reads back to the same spec.

    With ``inline_circuit`` the circuit model file is embedded (``model.spec``), so a
    run folder's ``config.toml`` stays valid when models/ changes or moves.
    """
    data = spec.model_dump(mode="json", exclude_none=True)
    if inline_circuit and isinstance(spec.model, CircuitModelSpec):
        inline = spec.circuit_spec().model_dump(mode="json", exclude_none=True)
        data["model"].pop("circuit", None)
        data["model"].pop("spec", None)
        data["model"]["overrides"] = {}
        data["model"]["spec"] = inline  # last: a canonical order, so dumps of dumps are equal
    lines = []
    for k, v in data.items():
        if not isinstance(v, dict):
            lines.append(f"{k} = {toml_value(v, allow_nonfinite=False)}")
    for k, v in data.items():
        if isinstance(v, dict):
            lines.append(f"\n[{k}]")
            for kk, vv in v.items():
                lines.append(f"{kk} = {toml_value(vv, allow_nonfinite=False)}")
    return "\n".join(lines) + "\n"


def learning_rate(spec: ExperimentSpec, epoch_float: float) -> float:
    """Learning rate at a fractional epoch (``epoch + step / steps_per_epoch``)."""
    lr, s = spec.optim.lr, spec.schedule
    if s.kind == "cosine":
        lr = 0.5 * lr * (1.0 + math.cos(math.pi * min(epoch_float / spec.train.epochs, 1.0)))
    elif s.kind == "step":
        lr = lr * s.gamma ** sum(1 for m in s.milestones if epoch_float >= m)
    if s.warmup_epochs > 0 and epoch_float < s.warmup_epochs:
        frac = epoch_float / s.warmup_epochs
        lr = lr * (s.warmup_factor + (1.0 - s.warmup_factor) * frac)
    return lr
