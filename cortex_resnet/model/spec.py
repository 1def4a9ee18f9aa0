"""Circuit and stimulus specifications (pydantic), read from TOML files.

A model file is data only: it is parsed with :mod:`tomllib` and validated
field by field; nothing in it is evaluated as code. Every validation failure
becomes a :class:`~cortex_resnet.errors.SpecError` naming the field, the value
and what is allowed.

Weight convention: ``J_XY`` is the magnitude of the total coupling *from*
population ``Y`` *onto* one unit of population ``X`` (so ``J_EI`` is
inhibition onto pyramidal cells). Signs come from Dale's law: E columns
``>= 0``, I columns ``<= 0``.
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from cortex_resnet.errors import SpecError
from cortex_resnet.core.specbase import MAX_DEPTH, MAX_LIST, MAX_TEXT, check_depth, set_dotted
from cortex_resnet.model.spiking_spec import SpikingSpec
from cortex_resnet.model.tuning_spec import TuningSpec, check_tuning

__all__ = [
    "TransferSpec", "PopulationSpec", "ConnectivitySpec", "InputSpec", "BiasSpec", "NoiseSpec",
    "SimulationDefaults", "CircuitSpec", "StimulusSpec", "load_spec", "parse_spec",
    "parse_stimulus", "validation_to_spec_error", "MAX_UNITS",
]

from cortex_resnet.model.spec_common import (  # noqa: F401  (re-exported)
    MAX_STEPS, MAX_UNITS, SAFE_NAME, _Frozen, validation_to_spec_error)
from cortex_resnet.model.stimulus_spec import StimulusSpec, parse_stimulus  # noqa: F401  (re-exported)
from cortex_resnet.model.populations import (  # noqa: F401  (re-exported: the spec's public names)
    MAX_NAME, MAX_POPULATIONS, SHORTHAND_TYPES, ConnectivitySpec, PathwaySpec, Populations, PopulationSpec,
    TransferSpec, _check_names, _strict_numbers_by_name)


class InputSpec(_Frozen):
    """Feedforward projection ``B`` (N x n_inputs): to E with ``gain_E``, to I with ``gain_I``.

    ``projection = "uniform"``: every unit gets every input channel with the
    population's gain; ``"random"``: magnitudes drawn |N(0, gain^2)|;
    ``"topographic"`` (spatial circuits): input channel ``s`` drives the units at
    map site ``s`` (so ``n_inputs`` must equal the number of sites);
    ``"by_population"``: one channel per population in unit order (channel 0
    drives E with ``gain_E``, channel 1 drives I with ``gain_I``), for separate
    control of each population's drive; ``"tuned"``: channel ``c`` drives each unit by its gain
    times a von Mises kernel of width ``sigma_deg`` (deg) of the difference of their preferred
    features (needs ``[tuning]``, :mod:`cortex_resnet.model.tuning_spec`).
    ``gain``: per-population gains by name (``[input.gain]`` ``L4E = 1.0``); a
    population not listed gets ``gain_E`` (excitatory) or ``gain_I`` (inhibitory).
    """

    n_inputs: int = Field(default=1, ge=1, le=100_000)
    gain_E: float = Field(default=1.0, ge=0.0)
    gain_I: float = Field(default=0.0, ge=0.0)
    projection: Literal["uniform", "random", "topographic", "by_population", "tuned"] = "uniform"
    sigma_deg: float | None = Field(default=None, gt=0.0, le=1e4)
    gain: dict[str, Annotated[float, Field(ge=0.0, le=1e6)]] = Field(default={}, max_length=MAX_POPULATIONS)

    @field_validator("gain", mode="before")
    @classmethod
    def _strict_gain(cls, v: Any) -> Any:
        return _strict_numbers_by_name(v, "")


class BiasSpec(_Frozen):
    """Constant background input ``b`` per population, by name (same units as ``B u``); 0 if not listed."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)
    __pydantic_extra__: dict[str, float] = Field(init=False)
    E: float = 0.0
    I: float = 0.0

    @model_validator(mode="before")
    @classmethod
    def _strict_extras(cls, data: Any) -> Any:
        return _strict_numbers_by_name(data, "")

    def of(self, name: str) -> float:
        """The bias of population ``name``."""
        if name in ("E", "I"):
            return float(getattr(self, name))
        return float((self.model_extra or {}).get(name, 0.0))

    @property
    def named(self) -> list[str]:
        """The population names this table sets."""
        return [k for k in ("E", "I") if k in self.model_fields_set] + list(self.model_extra or {})


class NoiseSpec(_Frozen):
    """Ornstein-Uhlenbeck input noise: stationary std ``sigma``, correlation time ``tau_ms`` (ms)."""

    sigma: float = Field(default=0.0, ge=0.0)
    tau_ms: float = Field(default=5.0, gt=0.0)


class SimulationDefaults(_Frozen):
    """Defaults for ``simulate`` when the CLI gives none."""

    duration_ms: float = Field(default=300.0, gt=0.0)
    dt_ms: float = Field(default=0.1, gt=0.0)
    method: str = Field(default="euler", max_length=100)
    stimulus: str = "step:amp=1.0"

    @model_validator(mode="after")
    def _steps(self) -> "SimulationDefaults":
        steps = self.duration_ms / self.dt_ms
        if steps > MAX_STEPS:
            raise SpecError("dt_ms", self.dt_ms, f"a step giving at most {MAX_STEPS:.0e} steps over "
                            f"duration_ms = {self.duration_ms:g} ms (this one gives {steps:.2g} steps)")
        return self


class CircuitSpec(_Frozen):
    """A whole circuit: populations, connectivity, input, bias, noise, seed.

    ``weights``: optional path (relative to the model file) of a ``.npz`` weight
    file written by :func:`cortex_resnet.bridge.save_circuit` (a trained network
    mapped back to a circuit); the arrays in it replace the random draws, and
    the connectivity/input fields then describe only the initialisation.
    Load such a file with :func:`cortex_resnet.bridge.load_circuit`.
    """

    name: str = Field(default="circuit", max_length=200, pattern=SAFE_NAME)
    description: str = Field(default="", max_length=MAX_TEXT)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    populations: Populations
    connectivity: ConnectivitySpec = ConnectivitySpec()
    input: InputSpec = InputSpec()
    bias: BiasSpec = BiasSpec()
    noise: NoiseSpec = NoiseSpec()
    simulation: SimulationDefaults = SimulationDefaults()
    references: list[str] = Field(default=[], max_length=MAX_LIST)
    spiking: SpikingSpec = SpikingSpec()
    weights: str | None = Field(default=None, max_length=1000)
    tuning: TuningSpec | None = None

    @model_validator(mode="after")
    def _spatial_sizes(self) -> "CircuitSpec":
        c = self.connectivity
        if c.kind == "spatial":
            sites = math.prod(c.map_shape)
            for pop in self.populations.names:
                n = self.populations[pop].n
                if n % sites:
                    raise SpecError(f"populations.{pop}.n", n, f"a multiple of the map size {sites} "
                                    f"(map_shape {list(c.map_shape)}): channels x sites")
        n_pops = len(self.populations.names)
        if self.input.projection == "by_population" and self.input.n_inputs != n_pops:
            order = ", ".join(f"{k} -> {self.populations.order[k]}" for k in range(n_pops))
            raise SpecError("input.n_inputs", self.input.n_inputs,
                            f"{n_pops} for projection = 'by_population' (one channel per population: {order})")
        if self.input.projection == "topographic":
            if c.kind != "spatial":
                raise SpecError("input.projection", "topographic",
                                "'topographic' only with connectivity.kind = 'spatial'")
            if self.input.n_inputs != math.prod(c.map_shape):
                raise SpecError("input.n_inputs", self.input.n_inputs,
                                f"the number of map sites {math.prod(c.map_shape)} for a topographic projection")
        return self

    @model_validator(mode="after")
    def _tuning(self) -> "CircuitSpec":
        check_tuning(self)
        return self

    @model_validator(mode="after")
    def _population_names(self) -> "CircuitSpec":
        """Every name in connectivity, input, bias and spiking tables is a population."""
        pops, c = self.populations, self.connectivity
        known = pops.names
        allowed = "a population name: " + ", ".join(known)
        shorthand_J = [k for k in ("J_EE", "J_EI", "J_IE", "J_II") if getattr(c, k) != 0.0]
        if shorthand_J and not pops.is_shorthand:
            raise SpecError(f"connectivity.{shorthand_J[0]}", getattr(c, shorthand_J[0]),
                            "J_EE/J_EI/J_IE/J_II only for a circuit of populations E and I; with other "
                            "populations write [connectivity.pathways.POST] PRE = { J = ... }")
        if shorthand_J and c.pathways:
            raise SpecError(f"connectivity.{shorthand_J[0]}", getattr(c, shorthand_J[0]),
                            "either the J_XY shorthand or connectivity.pathways, not both")
        for post, row in c.pathways.items():
            if post not in known:
                raise SpecError(f"connectivity.pathways.{post}", post, allowed)
            for pre in row:
                if pre not in known:
                    raise SpecError(f"connectivity.pathways.{post}.{pre}", pre, allowed)
        for name in self.input.gain:
            if name not in known:
                raise SpecError(f"input.gain.{name}", name, allowed)
        for name in self.bias.named:
            if name not in known and self.bias.of(name) != 0.0:
                raise SpecError(f"bias.{name}", self.bias.of(name), allowed)
        for name in self.spiking.populations.named:
            if name not in known:
                raise SpecError(f"spiking.populations.{name}", name, allowed)
        for post, row in self.spiking.pathways.items():
            if post not in known:
                raise SpecError(f"spiking.pathways.{post}", post, allowed)
            for pre in row:
                if pre not in known:
                    raise SpecError(f"spiking.pathways.{post}.{pre}", pre, allowed)
        return self

    @property
    def n_units(self) -> int:
        return sum(self.populations[k].n for k in self.populations.names)

    def __repr__(self) -> str:
        """One line: name, populations, couplings, input; ``spec.to_json()`` has every field."""
        p, c = self.populations, self.connectivity
        pops = ", ".join(f"{k} n={p[k].n} tau={p[k].tau_ms:g} ms {p[k].transfer.name}" for k in p.order)
        if c.pathways:
            js = f"{sum(len(r) for r in c.pathways.values())} pathways"
        else:
            js = " ".join(f"{k}={getattr(c, k):g}" for k in ("J_EE", "J_EI", "J_IE", "J_II"))
        return (f"CircuitSpec({self.name!r}: {pops}; {c.kind} {js}; n_inputs={self.input.n_inputs}, "
                f"seed={self.seed})")

    __str__ = __repr__

    def to_json(self) -> str:
        """The full spec as a JSON string (stored in every result file)."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)

    def replace(self, **changes: Any) -> "CircuitSpec":
        """A validated copy with top-level or dotted fields changed.

        ``spec.replace(**{"connectivity.J_EE": 0.0})``
        """
        data = self.model_dump(mode="python")
        for key, value in changes.items():
            set_dotted(data, key, value)
        return parse_spec(data)


EXPERIMENT_KEYS = {"data", "model", "optim", "schedule", "train"}


def parse_spec(data: dict[str, Any], source: str | None = None) -> CircuitSpec:
    """Validate a dict (e.g. parsed TOML) into a :class:`CircuitSpec`."""
    if not isinstance(data, dict):
        raise SpecError("<file>", type(data).__name__, "a table of fields", source=source)
    check_depth(data, source)
    if "populations" not in data and EXPERIMENT_KEYS & data.keys():
        raise SpecError("<file>", "an experiment file (it has " + ", ".join(
            f"[{k}]" for k in sorted(EXPERIMENT_KEYS & data.keys())) + ")",
            "a circuit model file (with a [populations] table, see models/); "
            "experiment files go to `cortex-resnet train`", source=source)
    try:
        return CircuitSpec.model_validate(data)
    except ValidationError as err:
        raise validation_to_spec_error(err, source, CircuitSpec) from None


def _deepest_key(text: str) -> str:
    """The key of the line with the most opening brackets (to name it after a RecursionError)."""
    line = max(text.splitlines() or [""], key=lambda ln: ln.count("{") + ln.count("["))
    key = line.partition("=")[0].strip().strip("[]").strip()
    return key[:60] if key and len(key) < len(line) else "<toml>"


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file as data; any problem is a :class:`SpecError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise SpecError("model", str(path), "an existing TOML file (see models/ for examples)")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SpecError("<file>", f"byte {err.start}", "UTF-8 text", source=str(path)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError("<toml>", str(err), "valid TOML", source=str(path)) from None
    except RecursionError:  # inline tables/arrays nested hundreds of levels deep
        raise SpecError(_deepest_key(text), "inline tables or arrays nested hundreds of levels deep",
                        f"tables and arrays nested at most {MAX_DEPTH} levels", source=str(path)) from None
    check_depth(data, str(path))
    return data


def load_spec(path: str | Path) -> CircuitSpec:
    """Load and validate a circuit model file (``models/*.toml``)."""
    return parse_spec(read_toml(path), source=str(path))
