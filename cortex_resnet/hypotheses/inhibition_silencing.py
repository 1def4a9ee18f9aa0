"""``inhibition-silencing``: silencing I leaves the early, input-driven response and changes the late part.

Right after stimulus onset the pyramidal response is input-driven: recurrent
input needs time to build up, so ``F(x)`` grows from zero (second order in
time) while ``x`` grows at once. Silencing the I units (their output scaled by
``1 - fraction``) should therefore leave the early response almost untouched
and change the late, recurrent part. Null model for the recurrent part:
recurrence is only a gain, ``F(x) = (g - 1) x``; the fraction of ``F(x)``
explained by a scaled ``x`` (uncentred R^2 over units and time,
``<F, x>^2 / (|F|^2 |x|^2)``) measures how far the circuit is from that.

In an inhibition-stabilised circuit (the canonical microcircuit, J_EE = 2)
removing more than a sixth of the inhibition makes the E subnetwork unstable:
the late response then runs away, as expected (Ozeki et al. 2009). Later
versions run the same test on trained circuits (bridge).

Per task (condition = silenced fraction, seed = random circuit with random
input projection): Euler runs of the intact circuit, the silenced circuit and
the circuit without recurrence (``x``) for one step stimulus.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from pydantic import Field, model_validator

from cortex_resnet.model.circuit import Circuit
from cortex_resnet.model.spec import StimulusSpec
from cortex_resnet.model.stimulus import make_stimulus
from cortex_resnet.rate.simulator import RateSystem, integrate
from cortex_resnet.hypotheses._figures import PALETTE, POP_COLORS, hypothesis_figure
from cortex_resnet.hypotheses.base import Analysis, AnalysisOptions, Comparison, condition_values, summary_rows
from cortex_resnet.hypotheses._circuits import circuit_hypothesis, CircuitParams, circuit_for_seed

__all__ = ["HYPOTHESIS", "SilencingParams", "relative_change", "gain_model_r2"]

#: the simulator's rate bound for these runs: the largest float64, so runaway (an expected outcome
#: of silencing inhibition in an ISN) is recorded while NaN/inf still stop the run with a diagnosis
RUNAWAY_OK = float(torch.finfo(torch.float64).max)


class SilencingParams(CircuitParams):
    """Windows in ms after stimulus onset; ``early_tolerance``: relative change of the early
    response still counted as unchanged; ``gain_r2_threshold``: R^2 of the gain model above
    which recurrence counts as a mere gain; ``min_log_ratio``: smallest log(late/early change)
    that counts."""

    model: str = "models/canonical_microcircuit.toml"
    weight_cv: float | None = Field(default=0.2, ge=0.0, le=2.0)
    overrides: dict[str, Any] = {"input.projection": "random"}
    input_amp: float = Field(default=1.0, gt=0.0)
    silence_fractions: list[float] = Field(default=[0.1, 1.0], min_length=1)
    test_fraction: float = Field(default=1.0, gt=0.0, le=1.0)
    onset_ms: float = Field(default=20.0, ge=0.0)
    early_ms: float = Field(default=2.0, gt=0.0)
    late_start_ms: float = Field(default=80.0, gt=0.0)
    duration_ms: float = Field(default=200.0, gt=0.0)
    dt_ms: float = Field(default=0.1, gt=0.0)
    early_tolerance: float = Field(default=0.1, gt=0.0)
    gain_r2_threshold: float = Field(default=0.9, gt=0.0, lt=1.0)
    min_log_ratio: float = Field(default=math.log(2.0), ge=0.0)

    @model_validator(mode="after")
    def _check(self) -> "SilencingParams":
        if self.test_fraction not in self.silence_fractions:
            raise ValueError(f"test_fraction = {self.test_fraction} must be one of silence_fractions "
                             f"{self.silence_fractions}")
        if any(not 0 < f <= 1 for f in self.silence_fractions):
            raise ValueError("silence_fractions must lie in (0, 1]")
        if not self.early_ms < self.late_start_ms < self.duration_ms - self.onset_ms:
            raise ValueError("need early_ms < late_start_ms < duration_ms - onset_ms")
        return self


def _label(f: float) -> str:
    return f"silence {100 * f:g}%"


def _design(params: SilencingParams) -> list[dict[str, Any]]:
    return [{"condition": _label(f), "fraction": f} for f in params.silence_fractions]


def relative_change(a: np.ndarray, b: np.ndarray) -> float:
    """``|a - b| / |b|`` (Frobenius norms over all axes)."""
    nb = float(np.linalg.norm(b))
    return float(np.linalg.norm(a - b)) / nb if nb > 0 else float("nan")


def gain_model_r2(F: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """Best gain model ``F ~ c x`` (least squares): uncentred R^2 and the gain ``g = 1 + c``."""
    xx = float(np.sum(x * x))
    ff = float(np.sum(F * F))
    if xx == 0 or ff == 0:
        return float("nan"), float("nan")
    fx = float(np.sum(F * x))
    return fx * fx / (xx * ff), 1.0 + fx / xx


def _run(c: Circuit, amp: float, p: dict[str, Any], *, recurrence: bool = True) -> np.ndarray:
    """E rates (time, units) of one Euler run of the rate simulator; the step stimulus (``amp`` on
    every input) starts at onset_ms. Runaway is an outcome here, not an error: only non-finite
    rates stop the run (:data:`RUNAWAY_OK`)."""
    system = RateSystem(c, torch.float64, "cpu", recurrence=recurrence)
    stim = make_stimulus(StimulusSpec(kind="step", amp=amp, onset_ms=p["onset_ms"]), c.n_inputs)
    run = integrate(system, stim, p["duration_ms"], p["dt_ms"], max_rate=RUNAWAY_OK)
    return run.r[:, 0, : c.n_E].numpy()


def _task(prepared: dict[str, Any], condition: dict[str, Any], seed: int) -> dict[str, Any]:
    c = circuit_for_seed(prepared, seed)
    W = c.W.copy()
    W[:, ~c.is_E] *= 1.0 - condition["fraction"]
    silenced = c.with_weights(W=W)
    amp = prepared["input_amp"]
    r, rs, x = _run(c, amp, prepared), _run(silenced, amp, prepared), _run(c, amp, prepared, recurrence=False)
    dt, on = prepared["dt_ms"], prepared["onset_ms"]
    t = np.arange(r.shape[0]) * dt - on
    early = (t > 0) & (t <= prepared["early_ms"] + 1e-9)
    late = t >= prepared["late_start_ms"] - 1e-9
    resp = t > 0
    r2, g = gain_model_r2((r - x)[resp], x[resp])
    e_change, l_change = relative_change(rs[early], r[early]), relative_change(rs[late], r[late])
    stride = max(1, int(round(1.0 / dt)))
    return {
        "early_change": e_change, "late_change": l_change,
        "log_late_over_early": math.log(l_change / e_change) if e_change > 0 and l_change > 0 else float("nan"),
        "early_Fx_fraction": relative_change(x[early], r[early]),
        "late_Fx_fraction": relative_change(x[late], r[late]),
        "gain_r2": r2, "best_gain": g,
        "rE_trace": r[::stride].mean(axis=1).tolist(), "rE_silenced_trace": rs[::stride].mean(axis=1).tolist(),
        "xE_trace": x[::stride].mean(axis=1).tolist(), "trace_dt_ms": dt * stride,
    }


def _analyze(ds: xr.Dataset, params: SilencingParams, opt: AnalysisOptions) -> Analysis:
    test = _label(params.test_fraction)
    early = condition_values(ds, "early_change", test)
    ratio = condition_values(ds, "log_late_over_early", test)
    r2 = condition_values(ds, "gain_r2", test)
    comps = [
        Comparison(f"{test}: early response (first {params.early_ms:g} ms) changes by less than "
                   f"{params.early_tolerance:g}", opt.compare(early, null_value=params.early_tolerance,
                                                              alternative="less"), 0.0),
        Comparison(f"{test}: late part (from {params.late_start_ms:g} ms) changes more than the early one "
                   "(log ratio > 0)", opt.compare(ratio, null_value=0.0, alternative="greater"),
                   params.min_log_ratio),
        Comparison(f"recurrence is more than a gain: R^2 of F(x) ~ (g - 1) x below {params.gain_r2_threshold:g}",
                   opt.compare(r2, null_value=params.gain_r2_threshold, alternative="less"), 0.0),
    ]
    table = summary_rows(ds, {"fraction": "I output removed", "early_change": "early relative change",
                              "late_change": "late relative change", "early_Fx_fraction": "|F(x)|/|r| early",
                              "late_Fx_fraction": "|F(x)|/|r| late", "gain_r2": "gain model R^2",
                              "best_gain": "best gain g"})
    notes = [f"Early window: the first {params.early_ms:g} ms after onset; late window: from "
             f"{params.late_start_ms:g} ms after onset to the end of the run.",
             "The gain model fits F(x) over all pyramidal units and times after onset; with a random input "
             "projection recurrence adds a component shared across units that a per-unit gain cannot express."]
    big = float(np.nanmax(ds["late_change"].sel(condition=test).values))
    if big > 10:
        notes.append(f"Silencing {100 * params.test_fraction:g} % of inhibition lets the late response run away "
                     f"(relative change up to {big:.3g}): the circuit is inhibition-stabilised.")
    return Analysis(comps, table, notes)


def _figure(ds: xr.Dataset, analysis: Analysis, params: SilencingParams, path: Path) -> Path:
    with hypothesis_figure(path, len(ds["condition"]), width=2) as axes:
        for ax, cond in zip(axes, ds["condition"].values):
            s = ds.sel(condition=cond).isel(seed=0)
            dt = float(s["trace_dt_ms"])
            n = int(np.isfinite(s["rE_trace"].values).sum())
            t = np.arange(n) * dt - params.onset_ms
            ax.plot(t, s["rE_trace"].values[:n], color=POP_COLORS["E"], label="intact r_E")
            ax.plot(t, s["rE_silenced_trace"].values[:n], color=PALETTE["vermillion"], label="I silenced")
            ax.plot(t, s["xE_trace"].values[:n], color=POP_COLORS["E"], ls="--", label="x_E (no recurrence)")
            ax.axvspan(0, params.early_ms, color=PALETTE["green"], alpha=0.25, label="early window")
            ax.axvspan(params.late_start_ms, t[-1], color="0.85", alpha=0.5, label="late window")
            if np.nanmax(s["rE_silenced_trace"].values) > 20 * np.nanmax(s["rE_trace"].values):
                ax.set_yscale("log")
            ax.set_xlabel("time after onset (ms)")
            ax.set_title(f"{cond}, first seed", loc="left")
        axes[0].set_ylabel("mean E rate (model units)")
        axes[0].legend(loc="best")
        axes[0].figure.suptitle(f"inhibition-silencing: {analysis.verdict}", x=0.01, ha="left", fontsize=8)
    return Path(path)


HYPOTHESIS = circuit_hypothesis(
    name="inhibition-silencing",
    claim="Silencing inhibitory units leaves the early, input-driven pyramidal response and changes the "
          "late, recurrent part; the recurrent part is not just a gain on the input-driven one.",
    h0="Silencing I changes the early response by at least the tolerance, or the late part no more than the "
       "early one, or a scaled x explains F(x) (R^2 >= threshold).",
    h1="Early relative change < tolerance, log(late change / early change) > 0, and R^2 of the gain model "
       "< threshold.",
    runtime={"quick": "~10 s", "full": "~1 min"},
    references=("Ozeki, Finn, Schaffer, Miller & Ferster (2009) Neuron 62:578",
                "Lien & Scanziani (2013) Nat Neurosci 16:1315",
                "Douglas & Martin (2004) Annu Rev Neurosci 27:419"),
    params_model=SilencingParams,
    design=_design,
    task=_task,
    analyze=_analyze,
    figure=_figure,
    var_dims={"rE_trace": ("time",), "rE_silenced_trace": ("time",), "xE_trace": ("time",)},
)
