"""The stimulus spec ``u(t)`` and its one-line ``KIND:key=value,...`` form."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from cortex_resnet.errors import SpecError
from cortex_resnet.model.spec_common import MAX_UNITS, SAFE_NAME, _Frozen, validation_to_spec_error  # noqa: F401


class StimulusSpec(_Frozen):
    """A stimulus ``u(t)``; a list ``amp`` makes a batch (one stimulus per value).

    Kinds (times in ms, frequencies in Hz):

    * ``constant``: ``u = amp`` for all t
    * ``step``: ``amp`` from ``onset_ms`` to ``offset_ms`` (or the end)
    * ``pulse``: ``amp`` from ``onset_ms`` for ``width_ms``
    * ``ramp``: linear from 0 at ``onset_ms`` to ``amp`` at ``offset_ms``, then held
    * ``sinusoid``: ``baseline + amp sin(2 pi freq_hz t/1000 + phase_rad)`` from ``onset_ms``
    * ``npy``: an array from ``path`` sampled every ``dt_ms``: shape ``(T, n_inputs)``
      or ``(T, batch, n_inputs)``; zero-order hold, last value held after the end.
    """

    kind: Literal["constant", "step", "pulse", "ramp", "sinusoid", "npy"] = "step"
    amp: float | list[float] = 1.0
    onset_ms: float = Field(default=0.0, ge=0.0)
    offset_ms: float | None = Field(default=None, ge=0.0)
    width_ms: float = Field(default=10.0, gt=0.0)
    freq_hz: float = Field(default=10.0, ge=0.0)
    phase_rad: float = 0.0
    baseline: float = 0.0
    path: str | None = None
    dt_ms: float = Field(default=1.0, gt=0.0)
    channels: list[int] | None = None

    @field_validator("amp")
    @classmethod
    def _amp(cls, v: float | list[float]) -> float | list[float]:
        vals = v if isinstance(v, list) else [v]
        if not vals:
            raise ValueError("amp list is empty")
        if any(not math.isfinite(a) for a in vals):
            raise ValueError("amp must be finite")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "StimulusSpec":
        if self.kind == "npy" and not self.path:
            raise SpecError("path", None, "a .npy file when kind = 'npy': npy:path=FILE.npy")
        if self.offset_ms is not None and self.offset_ms <= self.onset_ms and self.kind in ("step", "ramp"):
            raise SpecError("offset_ms", self.offset_ms, f"a time after onset_ms = {self.onset_ms}")
        return self

    @property
    def amps(self) -> list[float]:
        return list(self.amp) if isinstance(self.amp, list) else [float(self.amp)]


def parse_stimulus(text: str) -> StimulusSpec:
    """Parse the CLI form ``KIND:key=value,key=value``.

    A list is written in brackets, ``step:amp=[0.5,1,2],onset_ms=50`` (a batch
    of three stimuli). Values are numbers except ``path``.
    """
    kind, _, rest = text.partition(":")
    data: dict[str, Any] = {"kind": kind.strip()}
    items: list[str] = []
    depth, cur = 0, ""
    for ch in rest:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        items.append(cur)
    for item in items:
        key, eq, val = item.partition("=")
        key, val = key.strip(), val.strip()
        if not eq or not key:
            raise SpecError("stimulus", text, "KIND:key=value,... e.g. step:amp=1.0,onset_ms=50")
        if key == "path":
            data[key] = val
            continue
        try:
            if val.startswith("["):
                data[key] = [float(x) for x in val.strip("[]").split(",") if x.strip()]
                if key == "channels":
                    data[key] = [int(x) for x in data[key]]
            else:
                data[key] = float(val)
        except ValueError:
            raise SpecError(f"stimulus.{key}", val, "a number or [list, of, numbers]") from None
    try:
        return StimulusSpec.model_validate(data)
    except ValidationError as err:
        e = validation_to_spec_error(err, model=StimulusSpec)
        raise SpecError(f"stimulus.{e.field}", e.value, e.allowed) from None
