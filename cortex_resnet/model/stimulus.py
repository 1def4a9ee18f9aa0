"""Stimuli ``u(t)`` as functions of time, compiled from a :class:`StimulusSpec`.

A compiled stimulus is called with a time in ms and returns a
``(batch, n_inputs)`` tensor; the simulators and the bridge evaluate it at
each step's start time.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch

from cortex_resnet.errors import SpecError
from cortex_resnet.model.spec import StimulusSpec, parse_stimulus

__all__ = ["Stimulus", "make_stimulus", "stimulus_warnings", "report_warnings", "StimulusWarning"]


class StimulusWarning(UserWarning):
    """A stimulus that the run cannot see (it starts after the end, or is zero throughout)."""


class Stimulus:
    """``u(t)``: call with a time (ms), get ``(batch, n_inputs)``.

    Parameters
    ----------
    spec : the stimulus description
    n_inputs : the circuit's number of input channels
    dtype, device : of the returned tensors
    """

    def __init__(self, spec: StimulusSpec, n_inputs: int, dtype: torch.dtype = torch.float64,
                 device: str | torch.device = "cpu"):
        self.spec = spec
        self.n_inputs = n_inputs
        self.dtype, self.device = dtype, device
        chans = spec.channels
        if chans is not None and any(c < 0 or c >= n_inputs for c in chans):
            raise SpecError("stimulus.channels", chans, f"indices in 0..{n_inputs - 1}")
        sel = np.zeros(n_inputs)
        sel[chans if chans is not None else slice(None)] = 1.0
        self._array: torch.Tensor | None = None
        if spec.kind == "npy":
            arr = self._load(spec.path, n_inputs)
            self._array = torch.as_tensor(arr, dtype=dtype, device=device)
            self.batch = arr.shape[1]
        else:
            self.batch = len(spec.amps)
        self._sel = torch.as_tensor(sel, dtype=dtype, device=device)
        self._amps = torch.as_tensor(np.asarray(spec.amps)[:, None] * sel[None], dtype=dtype, device=device)

    @classmethod
    def from_array(cls, u: np.ndarray | torch.Tensor, dt_ms: float, dtype: torch.dtype = torch.float64,
                   device: str | torch.device = "cpu") -> "Stimulus":
        """A stimulus from an array in memory, like ``kind = "npy"`` without a file.

        Parameters
        ----------
        u : (T, batch, n_inputs) values; sample ``k`` holds on ``[k dt_ms, (k+1) dt_ms)``
            (zero-order hold), the last one is held after the end. ``T = 1`` is a
            constant input; the simulator's step ``k`` (from ``t = k dt_ms``) sees ``u[k]``.
        dt_ms : sample interval (ms)
        """
        arr = torch.as_tensor(u).detach()
        if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
            raise SpecError("stimulus.array", f"shape {tuple(arr.shape)}", "shape (T, batch, n_inputs)")
        if not bool(torch.isfinite(arr).all()):
            raise SpecError("stimulus.array", "non-finite values", "finite values only")
        if not (math.isfinite(dt_ms) and dt_ms > 0):
            raise SpecError("stimulus.dt_ms", dt_ms, "a finite sample interval > 0 ms")
        spec = StimulusSpec(kind="npy", path="<array>", dt_ms=dt_ms)
        self = cls.__new__(cls)
        self.spec, self.n_inputs = spec, int(arr.shape[2])
        self.dtype, self.device = dtype, device
        self._array = arr.to(dtype=dtype, device=device)
        self.batch = int(arr.shape[1])
        self._sel = torch.ones(self.n_inputs, dtype=dtype, device=device)
        self._amps = torch.zeros(self.batch, self.n_inputs, dtype=dtype, device=device)
        return self

    @staticmethod
    def _load(path: str | None, n_inputs: int) -> np.ndarray:
        p = Path(path or "")
        if not p.is_file():
            raise SpecError("stimulus.path", str(p), "an existing .npy file")
        try:
            arr = np.load(p, allow_pickle=False)  # data only: never unpickle
        except (ValueError, OSError) as err:
            raise SpecError("stimulus.path", str(p), f"a NumPy .npy array file ({err})") from None
        if arr.ndim == 2:
            arr = arr[:, None, :]
        if arr.ndim != 3 or arr.shape[-1] != n_inputs or arr.shape[0] < 1:
            raise SpecError("stimulus.path", f"{p} with shape {arr.shape}",
                            f"shape (T, n_inputs={n_inputs}) or (T, batch, {n_inputs})")
        if not np.all(np.isfinite(arr)):
            raise SpecError("stimulus.path", str(p), "finite values only")
        return arr.astype(np.float64)

    def envelope(self, t_ms: float) -> float:
        """Time course in [.., ..] multiplying ``amp`` (not used for ``npy``)."""
        s = self.spec
        if s.kind == "constant":
            return 1.0
        if t_ms < s.onset_ms:
            return 0.0
        if s.kind == "step":
            return 1.0 if s.offset_ms is None or t_ms < s.offset_ms else 0.0
        if s.kind == "pulse":
            return 1.0 if t_ms < s.onset_ms + s.width_ms else 0.0
        if s.kind == "ramp":
            end = s.offset_ms if s.offset_ms is not None else s.onset_ms + s.width_ms
            return min(1.0, (t_ms - s.onset_ms) / (end - s.onset_ms))
        if s.kind == "sinusoid":
            return math.sin(2 * math.pi * s.freq_hz * (t_ms - s.onset_ms) / 1000.0 + s.phase_rad)
        raise AssertionError(s.kind)  # pragma: no cover - kinds are validated

    def __call__(self, t_ms: float) -> torch.Tensor:
        if self._array is not None:
            k = min(int(math.floor(t_ms / self.spec.dt_ms + 1e-9)), self._array.shape[0] - 1)
            return self._array[max(k, 0)]
        base = self.spec.baseline if self.spec.kind == "sinusoid" and t_ms >= self.spec.onset_ms else 0.0
        return self._amps * self.envelope(t_ms) + base * self._sel

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return f"Stimulus({getattr(self.spec, 'kind', type(self.spec).__name__)!r}, n_inputs={self.n_inputs}, batch={self.batch})"


def make_stimulus(stim: StimulusSpec | str, n_inputs: int, dtype: torch.dtype = torch.float64,
                  device: str | torch.device = "cpu") -> Stimulus:
    """Compile a stimulus spec (or its CLI string ``KIND:key=value,...``)."""
    spec = parse_stimulus(stim) if isinstance(stim, str) else stim
    return Stimulus(spec, n_inputs, dtype=dtype, device=device)


def stimulus_warnings(stimulus: StimulusSpec | str | None, u: np.ndarray | torch.Tensor,
                      duration_ms: float, model_default: StimulusSpec | str | None = None) -> list[str]:
    """Why a run's stimulus may not do what was meant: one sentence each (empty list: nothing to say).

    * the stimulus starts (``onset_ms``) at or after the end of the run;
    * the sampled input ``u`` (any shape, all samples of the run) is zero throughout -- unless the
      stimulus is the model file's own (``model_default``): a network driven by its bias or
      background alone (the Potjans-Diesmann microcircuit, Brunel's model A) is meant to run so.

    Parameters
    ----------
    stimulus : the stimulus spec (or its CLI string; None or an array: only ``u`` is checked)
    u : the input the run saw (the samples its simulator used)
    duration_ms : run length (ms)
    model_default : the model file's ``simulation.stimulus``
    """
    out: list[str] = []
    spec = parse_stimulus(stimulus) if isinstance(stimulus, str) else stimulus
    default = parse_stimulus(model_default) if isinstance(model_default, str) else model_default
    onset = getattr(spec, "onset_ms", 0.0) if isinstance(spec, StimulusSpec) and spec.kind != "constant" else 0.0
    if isinstance(spec, StimulusSpec) and spec.kind != "npy" and onset >= duration_ms:
        out.append(f"the stimulus starts at onset_ms = {onset:g} ms, at or after the end of the run "
                   f"(duration_ms = {duration_ms:g} ms): the run sees no stimulus; lengthen the run "
                   "(--duration) or move the onset")
    arr = u.detach().cpu().numpy() if isinstance(u, torch.Tensor) else np.asarray(u)
    if not out and arr.size and not np.any(arr) and (default is None or spec != default):
        out.append(f"the stimulus u(t) is zero for the whole run (0 to {duration_ms:g} ms): the circuit sees "
                   "only its bias b; give a stimulus with a non-zero amplitude")
    return out


def report_warnings(messages: list[str]) -> None:
    """Print each message on stderr as ``warning: ...`` (the JSON summary carries them too)."""
    for msg in messages:
        print(f"warning: {msg}", file=sys.stderr)
