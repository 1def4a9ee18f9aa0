"""``amplification``: recurrent excitation amplifies the input-driven response by the predicted gain.

Douglas, Koch, Mahowald, Martin & Suarez (1995); Douglas & Martin (2004).
Silencing cortical recurrence leaves about a third to a half of the pyramidal
response: 46 % in cat V1 (Chung & Ferster 1998), about one third in mouse L4
(Lien & Scanziani 2013). In the threshold-linear two-population circuit the
steady state pyramidal rate is ``r_E = [(1 + J_II) h_E - J_EI h_I] / D`` with
``D = (1 - J_EE)(1 + J_II) + J_EI J_IE`` while the input-driven part (recurrence
removed) is ``x_E = h_E``; the gain ``r_E / x_E`` grows with ``J_EE``.

Design: conditions = a sweep of ``J_EE`` (the figure's gain curve) x seeds
(independent random circuits); the statistics use the condition
``J_EE = test_J_EE`` (the model's calibrated value): gain > 1, and the fraction
left after silencing recurrence, ``x_E / r_E``, between ``remaining_low`` and
``remaining_high``.

Named circuits (e.g. ``models/e_pv_som.toml``, the cortical column): ``population``
names the excitatory population measured; the sweep sets its self-excitation
``connectivity.pathways.POP.POP.J``; the unit-level prediction is exact for
threshold-linear transfers, the two-population formula does not apply (NaN).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import xarray as xr
from pydantic import Field, model_validator

from cortex_resnet.model.analysis import analyze as linear_analysis
from cortex_resnet.errors import ConvergenceError
from cortex_resnet.model.fixedpoint import steady_state
from cortex_resnet.hypotheses._figures import PALETTE, POP_COLORS, hypothesis_figure, verdict_title
from cortex_resnet.hypotheses.base import Analysis, AnalysisOptions, Comparison, condition_values, summary_rows
from cortex_resnet.hypotheses._circuits import (circuit_hypothesis, CircuitParams, check_named, circuit_for_seed,
                                                excitatory_names, pop_mean, population_prediction, prepare_circuit,
                                                self_coupling_field, spiking_circuit_for_seed,
                                                threshold_linear_prediction)
from cortex_resnet.fanout.batches import amp_batch
from cortex_resnet.hypotheses._spiking import circuits_run, condition_run, window_means
from cortex_resnet.rate.simulator import simulate

__all__ = ["HYPOTHESIS", "AmplificationParams"]


class AmplificationParams(CircuitParams):
    """``input_amp``: stimulus on every input channel; ``J_EE_values``: the sweep;
    ``test_J_EE``: the condition tested (one of the sweep); ``remaining_low/high``: the
    published band of the fraction left without recurrence; ``min_gain_effect``: smallest
    amplification above 1 that counts; ``backends``: ``rate`` and/or ``spiking`` (only at
    ``test_J_EE``: gain = pool rate with / without recurrent synapses, same input spikes, second half
    of ``spiking_duration_ms``); ``spiking_input_amps``: the spiking rows' input levels (None:
    ``[input_amp]``; must hold ``input_amp``, the tested level); ``spiking_J_EE_values``: the spiking
    rows' J_EE (None: ``[test_J_EE]``; must hold it, each > 0: a J_EE of 0 removes the pathway);
    ``engine``: ``brian2`` or ``torch``, which runs every spiking J_EE's input levels as ONE batch
    (per-replica weights; ``batch_conditions``; False: one run each, the same replica seeds and results)."""

    model: str = "models/canonical_microcircuit.toml"
    weight_cv: float | None = Field(default=0.2, ge=0.0, le=2.0)
    input_amp: float = Field(default=1.0, gt=0.0)
    J_EE_values: list[float] = Field(default=[0.0, 0.5, 1.0, 1.5, 2.0], min_length=1)
    test_J_EE: float = Field(default=2.0, ge=0.0)
    remaining_low: float = Field(default=1.0 / 3.0, gt=0.0, lt=1.0)
    remaining_high: float = Field(default=0.5, gt=0.0, le=1.0)
    min_gain_effect: float = Field(default=0.1, ge=0.0)
    duration_ms: float = Field(default=300.0, gt=0.0)
    dt_ms: float = Field(default=0.1, gt=0.0)
    backends: list[Literal["rate", "spiking"]] = Field(default=["rate"], min_length=1)
    spiking_pool_size: int | None = Field(default=None, ge=1, le=100_000)
    spiking_duration_ms: float = Field(default=600.0, gt=0.0)
    population: str | None = Field(default=None, max_length=100)
    spiking_input_amps: list[Annotated[float, Field(gt=0.0)]] | None = Field(default=None, min_length=1, max_length=64)
    spiking_J_EE_values: list[Annotated[float, Field(gt=0.0)]] | None = Field(default=None, min_length=1,
                                                                              max_length=16)
    engine: Literal["brian2", "torch"] = "brian2"
    batch_conditions: bool = True

    @model_validator(mode="after")
    def _check(self) -> "AmplificationParams":
        if self.test_J_EE not in self.J_EE_values:
            raise ValueError(f"test_J_EE = {self.test_J_EE} must be one of J_EE_values {self.J_EE_values}")
        if len(set(self.J_EE_values)) != len(self.J_EE_values) or min(self.J_EE_values) < 0:
            raise ValueError(f"J_EE_values {self.J_EE_values} must be distinct and >= 0")
        if "rate" not in self.backends:
            raise ValueError("backends must include 'rate' (the analytic comparison); add 'spiking' beside it")
        if self.remaining_low >= self.remaining_high:
            raise ValueError("remaining_low must be below remaining_high")
        lv = self.spiking_input_amps
        if lv is not None and (self.input_amp not in lv or len(set(lv)) != len(lv)):
            raise ValueError(f"spiking_input_amps {lv} must be distinct and hold input_amp = {self.input_amp}")
        js = self.spiking_J_EE_values
        if js is not None and (self.test_J_EE not in js or len(set(js)) != len(js)):
            raise ValueError(f"spiking_J_EE_values {js} must be distinct and hold test_J_EE = {self.test_J_EE}")
        return self


def _prepare(params: AmplificationParams, base_dir: Path | None) -> dict[str, Any]:
    out = prepare_circuit(params, base_dir)
    pop = params.population or ("E" if not out["named"] else excitatory_names(out["circuit_spec"])[0])
    check_named(out, "population", [pop], "excitatory")
    out["pop"], out["ee_field"] = pop, self_coupling_field(out, pop)
    if out["named"] and "spiking" in params.backends:
        spiking_circuit_for_seed(out, 0, 0.0)  # raises: rate only
    return out


def _label(v: float) -> str:
    return f"J_EE={v:g}"


def _design(params: AmplificationParams) -> list[dict[str, Any]]:
    out = [{"condition": _label(v), "J_EE": v, "backend": "rate", "amp": params.input_amp}
           for v in params.J_EE_values]
    if "spiking" in params.backends:
        for J in params.spiking_J_EE_values or [params.test_J_EE]:
            for a in params.spiking_input_amps or [params.input_amp]:
                at = "" if a == params.input_amp else f" u={a:g}"
                out.append({"condition": _label(J) + " spiking" + at, "J_EE": J, "backend": "spiking", "amp": a})
    return out


def _spiking_task(prepared: dict[str, Any], condition: dict[str, Any], seed: int) -> dict[str, Any]:
    """The spiking row: every spiking J_EE's circuit x the input levels (the replicas of one constant
    stimulus) as one torch batch (per-replica weights), or the row alone."""
    Js = [float(J) for J in prepared.get("spiking_J_EE_values") or [prepared["test_J_EE"]]]
    circuits = [spiking_circuit_for_seed(prepared, seed, J) for J in Js]
    c = circuits[Js.index(float(condition["J_EE"]))]
    dur, engine = prepared["spiking_duration_ms"], prepared.get("engine", "brian2")
    levels = [float(a) for a in prepared.get("spiking_input_amps") or [prepared["input_amp"]]]
    amp = float(condition.get("amp", prepared["input_amp"]))
    batched = engine == "torch" and bool(prepared.get("batch_conditions", True))
    stim, opts = amp_batch("constant:amp=1", levels), {"decompose": True, "batched": batched, "mean_field": False}
    ds, b = (circuits_run(circuits, circuits.index(c), stim, levels.index(amp), dur, seed, **opts)
             if engine == "torch" else condition_run(c, stim, levels.index(amp), dur, seed, engine=engine, **opts))
    r, x = window_means(ds, "r", dur / 2, dur, batch=b), window_means(ds, "x", dur / 2, dur, batch=b)
    k = c.spec.connectivity
    pop = population_prediction(k.J_EE, k.J_EI, k.J_IE, k.J_II)
    h = c.B @ np.full(c.n_inputs, amp) + c.b
    hE, hI = pop_mean(h, c, "E"), pop_mean(h, c, "I")
    e = np.asarray(ds["population"].values).astype(str) == "E"
    return {"gain": r["E"] / x["E"], "remaining": x["E"] / r["E"], "rE": r["E"], "xE": x["E"], "rI": r["I"],
            "pop_gain": (pop["dE_dgE"] * hE + pop["dE_dgI"] * hI) / hE,
            "rE_trace": ds["r"].isel(batch=b).values[:, e].mean(axis=1).tolist(),
            "xE_trace": ds["x"].isel(batch=b).values[:, e].mean(axis=1).tolist(),
            "trace_dt_ms": float(np.diff(ds["time"].values[:2])[0]),
            "J_EI": k.J_EI, "J_IE": k.J_IE, "J_II": k.J_II, "hE": hE, "hI": hI}


def _nan_result() -> dict[str, Any]:
    keys = ("gain", "remaining", "rE", "xE", "rI", "pred_gain", "pop_gain", "isn", "stable", "ee_loop_gain")
    return {k: float("nan") for k in keys} | {"stable": 0.0}


def _couplings(c: Any, named: bool) -> dict[str, float]:
    """The two-population couplings (NaN for named circuits: the formula does not apply)."""
    k = c.spec.connectivity
    return {n: float("nan") if named else float(getattr(k, n)) for n in ("J_EE", "J_EI", "J_IE", "J_II")}


def _task(prepared: dict[str, Any], condition: dict[str, Any], seed: int) -> dict[str, Any]:
    if condition["backend"] == "spiking":
        return _spiking_task(prepared, condition, seed)
    pop = prepared.get("pop", "E")
    c = circuit_for_seed(prepared, seed, **{prepared.get("ee_field", "connectivity.J_EE"): condition["J_EE"]})
    u = np.full(c.n_inputs, prepared["input_amp"])
    try:
        r = steady_state(c, u).numpy()[0]
    except ConvergenceError:
        return _nan_result()
    x = steady_state(c.without_recurrence(), u).numpy()[0]
    lin = linear_analysis(c, u, r_star=r)
    h = c.B @ u + c.b
    pred = threshold_linear_prediction(c, r, h)
    k = _couplings(c, prepared.get("named", False))
    popf = population_prediction(k["J_EE"], k["J_EI"], k["J_IE"], k["J_II"])
    hE, hI = pop_mean(h, c, pop), pop_mean(h, c, "I")
    rE, xE = pop_mean(r, c, pop), pop_mean(x, c, pop)
    stride = max(1, int(round(2.0 / prepared["dt_ms"])))
    ds = simulate(c, f"step:amp={prepared['input_amp']},onset_ms=0", duration_ms=prepared["duration_ms"],
                  dt_ms=prepared["dt_ms"], method="euler", device="cpu", record_stride=stride, max_rate=1e6)
    e = c.select(pop)
    return {
        "gain": rE / xE, "remaining": xE / rE, "rE": rE, "xE": xE, "rI": pop_mean(r, c, "I"),
        "pred_gain": pop_mean(pred, c, pop) / xE,
        "pop_gain": (popf["dE_dgE"] * hE + popf["dE_dgI"] * hI) / hE if hE else float("nan"),
        "isn": float(lin.inhibition_stabilized), "stable": float(lin.stable), "ee_loop_gain": lin.ee_loop_gain,
        "rE_trace": ds["r"].isel(batch=0).values[:, e].mean(axis=1).tolist(),
        "xE_trace": ds["x"].isel(batch=0).values[:, e].mean(axis=1).tolist(),
        "trace_dt_ms": float(prepared["dt_ms"] * stride),
        "J_EI": k["J_EI"], "J_IE": k["J_IE"], "J_II": k["J_II"], "hE": hE, "hI": hI,
    }


def _analyze(ds: xr.Dataset, params: AmplificationParams, opt: AnalysisOptions) -> Analysis:
    test = _label(params.test_J_EE)
    gain = condition_values(ds, "gain", test)
    rem = condition_values(ds, "remaining", test)
    comps = [
        Comparison(f"{test}: recurrence amplifies x_E (gain r_E/x_E > 1)",
                   opt.compare(gain, null_value=1.0, alternative="greater"), params.min_gain_effect),
        Comparison(f"{test}: silencing recurrence leaves more than {params.remaining_low:.3g} of r_E",
                   opt.compare(rem, null_value=params.remaining_low, alternative="greater"), 0.0),
        Comparison(f"{test}: silencing recurrence leaves less than {params.remaining_high:.3g} of r_E",
                   opt.compare(rem, null_value=params.remaining_high, alternative="less"), 0.0),
    ]
    if "spiking" in params.backends:
        sg = condition_values(ds, "gain", test + " spiking")
        comps.append(Comparison(f"{test} spiking: recurrence amplifies the E pool rate (gain > 1)",
                                opt.compare(sg, null_value=1.0, alternative="greater"), params.min_gain_effect))
    table = summary_rows(ds, {"J_EE": "J_EE", "amp": "input", "stable": "stable (fraction)", "isn": "ISN (fraction)",
                              "gain": "gain r_E/x_E", "pred_gain": "gain, linear prediction (unit level)",
                              "pop_gain": "gain, two-population formula", "remaining": "x_E/r_E left"})
    diff = np.abs(ds["gain"] - ds["pred_gain"]).values
    err = float(np.nanmax(diff)) if np.isfinite(diff).any() else float("nan")
    pg = ds["pop_gain"].sel(condition=test).values
    pg = float(np.nanmean(pg)) if np.isfinite(pg).any() else float("nan")
    notes = [f"Unit-level threshold-linear prediction (I - DW)^-1 D h reproduces the Newton steady-state gains "
             f"to {err:.2g} (max abs)." if np.isfinite(err) else
             "Unit-level threshold-linear prediction: not applicable (a transfer function is not relu/linear).",
             f"Two-population formula at J_EE = {params.test_J_EE:g}: gain {pg:.4g}, fraction left "
             f"{1 / pg:.3g} (published: 0.46 in cat V1, Chung & Ferster 1998; ~1/3 in mouse L4, "
             "Lien & Scanziani 2013)." if np.isfinite(pg) else
             f"Named populations: the gain is that of population {params.population or '(the first excitatory)'}, J_EE its "
             "self-excitation (connectivity.pathways.POP.POP.J); the two-population formula does not apply."]
    bad = int(np.sum(ds["stable"].values == 0))
    if bad:
        notes.append(f"{bad} (condition, seed) cell(s) had no stable steady state (NaN in the table).")
    return Analysis(comps, table, notes, primary=0, extra={"linear_prediction_max_abs_error": err})


def _figure(ds: xr.Dataset, analysis: Analysis, params: AmplificationParams, path: Path) -> Path:
    with hypothesis_figure(path, 2, width=2) as (a1, a2):
        backend = np.asarray(ds["backend"].values).astype(str)
        jee = np.asarray(ds["J_EE"].values, float)
        for i, j in enumerate(jee):
            g = np.asarray(ds["gain"].isel(condition=i).values, float)
            spk = backend[i] == "spiking"
            a1.scatter(np.full(g.size, j) + (0.04 if spk else 0.0), g, s=10, marker="^" if spk else "o",
                       color=PALETTE["orange"] if spk else POP_COLORS["E"], alpha=0.7, zorder=3,
                       label=("spiking (per seed)" if spk else "rate steady state (per seed)")
                       if spk or i == 0 else None)
        first = {k: float(np.nanmean(ds[k].values)) for k in ("J_EI", "J_IE", "J_II", "hE", "hI")}
        grid = np.linspace(0.0, max(jee.max(), 0.1), 200)
        curve = []
        for j in grid:
            p = population_prediction(j, first["J_EI"], first["J_IE"], first["J_II"])
            curve.append((p["dE_dgE"] * first["hE"] + p["dE_dgI"] * first["hI"]) / first["hE"] if p["D"] > 0 else np.nan)
        a1.plot(grid, curve, color=PALETTE["black"], lw=1, label="two-population formula")
        a1.axhspan(1 / params.remaining_high, 1 / params.remaining_low, color=PALETTE["green"], alpha=0.15,
                   label="published range (2-3x)")
        a1.set_xlabel("J_EE (recurrent excitation)")
        a1.set_ylabel("gain r_E / x_E")
        verdict_title(a1, "amplification", analysis)
        a1.legend(loc="upper left")
        sel = ds.sel(condition=_label(params.test_J_EE)).isel(seed=0)
        dt = float(sel["trace_dt_ms"])
        n = int(np.isfinite(sel["rE_trace"].values).sum())
        t = np.arange(n) * dt
        a2.plot(t, sel["rE_trace"].values[:n], color=POP_COLORS["E"], label="r_E = x_E + F(x)")
        a2.plot(t, sel["xE_trace"].values[:n], color=POP_COLORS["E"], ls="--", label="x_E (recurrence silenced)")
        a2.plot(t, sel["rE_trace"].values[:n] - sel["xE_trace"].values[:n], color=PALETTE["black"], ls=":",
                label="F(x)_E")
        a2.set_xlabel("time (ms)")
        a2.set_ylabel("mean E rate (model units)")
        a2.set_title(f"J_EE = {params.test_J_EE:g}, first seed", loc="left")
        a2.legend(loc="best")
    return Path(path)


HYPOTHESIS = circuit_hypothesis(
    name="amplification",
    claim="Recurrent excitation amplifies the input-driven pyramidal response by the gain the linear "
          "E-I analysis predicts; silencing recurrence leaves 1/3 to 1/2 of it.",
    h0="The recurrent response is not larger than the input-driven one (gain <= 1), or the fraction left "
       "without recurrence is outside [1/3, 1/2].",
    h1="Gain r_E/x_E > 1 and 1/3 < x_E/r_E < 1/2 in the calibrated circuit (Chung & Ferster 1998: 46 %; "
       "Lien & Scanziani 2013: ~1/3).",
    runtime={"quick": "~10 s", "full": "~2 min"},
    references=("Douglas, Koch, Mahowald, Martin & Suarez (1995) Science 269:981",
                "Chung & Ferster (1998) Neuron 20:1177", "Lien & Scanziani (2013) Nat Neurosci 16:1315"),
    params_model=AmplificationParams,
    prepare=_prepare,
    design=_design,
    task=_task,
    analyze=_analyze,
    figure=_figure,
    var_dims={"rE_trace": ("time",), "xE_trace": ("time",)},
)
