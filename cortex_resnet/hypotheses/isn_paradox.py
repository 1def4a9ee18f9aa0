"""``isn-paradox``: in the inhibition-stabilised regime extra drive to I lowers the I rate.

Tsodyks, Skaggs, Sejnowski & McNaughton (1997); Ozeki, Finn, Schaffer, Miller &
Ferster (2009). In a threshold-linear E-I circuit above threshold the steady
state I rate changes by ``dr_I/dg_I = (1 - J_EE) / D`` with
``D = (1 - J_EE)(1 + J_II) + J_EI J_IE``: negative exactly when the E subnetwork
alone is unstable (``J_EE > 1``, the ISN regime) and positive otherwise.

Design: two conditions (``isn``: ``J_EE = isn_J_EE``; ``control``:
``J_EE = control_J_EE``) x seeds; each seed is an independent random circuit
(``weight_cv`` heterogeneity). Per task: steady states without and with the
extra I drive (Newton), the unit-level linear prediction
``(I - D W)^-1 D B du`` and the two-population formula, and a simulated time
course (Euler) that must end at the same rates.

Named circuits (e.g. ``models/e_pv_som.toml``, the cortical column): ``inhibitory``
names the driven populations (default: every inhibitory one), which get
``extra_drive`` as extra bias on their units; the ``isn`` condition is the model as
given, the ``control`` scales every excitatory population's self-excitation
(``connectivity.pathways.X.X.J``) by ``control_scale``. Each row also reports the
change of every population's mean rate (``delta_NAME``) and the ISN test of every
excitatory sub-network (``isn_NAME``: its own E-E loop unstable, the circuit stable).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import xarray as xr
from pydantic import Field, model_validator

from cortex_resnet.model.analysis import analyze as linear_analysis
from cortex_resnet.errors import SimulationError, SpecError
from cortex_resnet.model.fixedpoint import steady_state
from cortex_resnet.hypotheses._figures import PALETTE, POP_COLORS, hypothesis_figure, strip_plot
from cortex_resnet.hypotheses.base import Analysis, AnalysisOptions, Comparison, condition_values, summary_rows
from cortex_resnet.hypotheses._circuits import (circuit_hypothesis, CircuitParams, circuit_for_seed, linear_response, pop_mean, population_prediction,
                        prepare_circuit, spiking_circuit_for_seed)
from cortex_resnet.fanout.batches import amp_batch
from cortex_resnet.hypotheses._spiking import circuits_run, condition_run, window_means
from cortex_resnet.hypotheses._isn_named import named_task, prepare_named, step_response

__all__ = ["HYPOTHESIS", "IsnParadoxParams"]


class IsnParadoxParams(CircuitParams):
    """``extra_drive``: added input on the I channel (model units); ``min_effect``: smallest
    change of the mean I rate that counts (rate units); ``onset_ms``/``duration_ms``: the
    simulated time course (ms); ``backends``: ``rate`` and/or ``spiking`` (pools of
    ``spiking_pool_size`` LIF neurons per unit, extra drive at ``spiking_onset_ms``, rates
    compared in the second halves before and after it); ``spiking_extra_drives``: the spiking rows'
    extra-drive levels (None: ``[extra_drive]``; must hold ``extra_drive``, the tested level; 0 is a
    sham); ``engine``: ``brian2`` or ``torch``, which runs a circuit's levels as one batch
    (``batch_conditions``; False: one run each, the same replica seeds and results)."""

    model: str = "models/isn.toml"
    weight_cv: float | None = Field(default=0.2, ge=0.0, le=2.0)
    extra_drive: float = Field(default=0.3, gt=0.0)
    isn_J_EE: float = Field(default=2.0, ge=0.0)
    control_J_EE: float = Field(default=0.5, ge=0.0)
    min_effect: float = Field(default=0.01, ge=0.0)
    onset_ms: float = Field(default=100.0, gt=0.0)
    duration_ms: float = Field(default=300.0, gt=0.0)
    dt_ms: float = Field(default=0.1, gt=0.0)
    backends: list[Literal["rate", "spiking"]] = Field(default=["rate"], min_length=1)
    spiking_pool_size: int | None = Field(default=None, ge=1, le=100_000)
    spiking_onset_ms: float = Field(default=300.0, gt=0.0)
    spiking_duration_ms: float = Field(default=600.0, gt=0.0)
    inhibitory: list[str] | None = Field(default=None, min_length=1, max_length=1000)
    control_scale: float = Field(default=0.25, ge=0.0, lt=1.0)
    spiking_extra_drives: list[Annotated[float, Field(ge=0.0)]] | None = Field(default=None, min_length=1,
                                                                                 max_length=64)
    engine: Literal["brian2", "torch"] = "brian2"
    batch_conditions: bool = True

    @model_validator(mode="after")
    def _levels(self) -> "IsnParadoxParams":
        lv = self.spiking_extra_drives
        if lv is not None and (self.extra_drive not in lv or len(set(lv)) != len(lv)):
            raise ValueError(f"spiking_extra_drives {lv} must be distinct and hold extra_drive = {self.extra_drive}")
        return self


def _levels(prepared: dict[str, Any]) -> list[float]:
    """The spiking rows' extra-drive levels (model units)."""
    return [float(v) for v in prepared.get("spiking_extra_drives") or [prepared["extra_drive"]]]


def _prepare(params: IsnParadoxParams, base_dir: Path | None) -> dict[str, Any]:
    out = prepare_circuit(params, base_dir)
    if out["named"]:
        return prepare_named(params, out)
    if params.inhibitory is not None:
        raise SpecError("params.inhibitory", params.inhibitory, "no value for an E/I shorthand model (the I "
                        "channel is driven); named populations need a model with [populations.NAME] tables")
    inp = out["circuit_spec"]["input"]
    if inp["projection"] != "by_population":
        raise SpecError("params.model", params.model, "a model with input.projection = 'by_population' "
                        "(channel 0 -> E, channel 1 -> I), e.g. models/isn.toml")
    if params.onset_ms >= params.duration_ms:
        raise SpecError("params.onset_ms", params.onset_ms, f"a time before duration_ms = {params.duration_ms}")
    return out


def _design(params: IsnParadoxParams) -> list[dict[str, Any]]:
    out = []
    for backend in params.backends:
        suffix = "" if backend == "rate" else f" {backend}"
        drives = [params.extra_drive] if backend == "rate" else params.spiking_extra_drives or [params.extra_drive]
        for d in drives:
            at = "" if d == params.extra_drive else f" drive={d:g}"
            out += [{"condition": "isn" + suffix + at, "J_EE": params.isn_J_EE, "ee_scale": 1.0, "backend": backend,
                     "drive": d},
                    {"condition": "control" + suffix + at, "J_EE": params.control_J_EE,
                     "ee_scale": params.control_scale, "backend": backend, "drive": d}]
    return out


def _spiking_task(prepared: dict[str, Any], condition: dict[str, Any], seed: int) -> dict[str, Any]:
    """The spiking row: the circuit's extra-drive levels and a sham (no extra drive) are the replicas of
    one step stimulus (on the I channel at ``spiking_onset_ms``) with common random numbers: identical
    until the torch engine's random-number chunk that holds the step (16 steps). The change between the
    pre and post windows minus the sham's change (the network's drift, ``drift_rI``) is ``delta_rI``."""
    Js = list(dict.fromkeys((prepared["isn_J_EE"], prepared["control_J_EE"])))  # torch: both circuits, one batch
    circuits = [spiking_circuit_for_seed(prepared, seed, J) for J in Js]
    c = circuits[Js.index(condition["J_EE"])]
    on, dur = prepared["spiking_onset_ms"], prepared["spiking_duration_ms"]
    levels, engine = _levels(prepared), prepared.get("engine", "brian2")
    levels = levels if 0.0 in levels else [0.0] + levels  # the sham: the drift without extra drive
    drive = float(condition.get("drive", prepared["extra_drive"]))
    stim = amp_batch(f"step:amp=1,onset_ms={on},channels=[1]", levels)
    batched = engine == "torch" and bool(prepared.get("batch_conditions", True))
    change = {}
    for level in dict.fromkeys((0.0, drive)):
        opts = {"decompose": False, "batched": batched, "shared_streams": True, "mean_field": False}
        ds, b = (circuits_run(circuits, Js.index(condition["J_EE"]), stim, levels.index(level), dur, seed, **opts)
                 if engine == "torch" else condition_run(c, stim, levels.index(level), dur, seed, engine=engine,
                                                         **opts))
        pre, post = window_means(ds, "r", on / 2, on, batch=b), window_means(ds, "r", on + (dur - on) / 2, dur, batch=b)
        change[level] = {p: post[p] - pre[p] for p in ("E", "I")}
    k = c.spec.connectivity
    pop = population_prediction(k.J_EE, k.J_EI, k.J_IE, k.J_II)
    r = ds["r"].isel(batch=b).values
    e = np.asarray(ds["population"].values).astype(str) == "E"
    # the sham's change (same random streams, no extra drive) is the drift of the spiking network between
    # the windows; subtracted, what is left is the effect of the drive
    return {"delta_rI": change[drive]["I"] - change[0.0]["I"], "delta_rE": change[drive]["E"] - change[0.0]["E"],
            "drift_rI": change[0.0]["I"], "drift_rE": change[0.0]["E"], "rI0": pre["I"], "rE0": pre["E"],
            "pop_pred_delta_rI": pop["dI_dgI"] * c.spec.input.gain_I * drive,
            "rI_trace": r[:, ~e].mean(axis=1).tolist(), "rE_trace": r[:, e].mean(axis=1).tolist(),
            "trace_dt_ms": float(np.diff(ds["time"].values[:2])[0])}


def _task(prepared: dict[str, Any], condition: dict[str, Any], seed: int) -> dict[str, Any]:
    if condition["backend"] == "spiking":
        return _spiking_task(prepared, condition, seed)
    if prepared.get("named"):
        return named_task(prepared, condition, seed)

    c = circuit_for_seed(prepared, seed, **{"connectivity.J_EE": condition["J_EE"]})
    du = np.array([0.0, prepared["extra_drive"]])
    u0 = np.zeros(2)
    r0 = steady_state(c, u0).numpy()[0]
    r1 = steady_state(c, u0 + du).numpy()[0]
    lin = linear_analysis(c, u0, r_star=r0)
    if lin.condition in ("singular", "marginal"):  # the paradox is defined around a stable fixed point
        raise SimulationError(f"seed {seed}, J_EE = {condition['J_EE']:g}: the circuit is {lin.condition} at its "
                              f"fixed point (condition number {lin.condition_number:.3g}, max Re(eig) "
                              f"{lin.max_eig_real:+.3g} /ms); the ISN test needs a stable fixed point: change J_EE")
    pred = linear_response(c, r0, u0, du)
    z0, z1 = c.W @ r0 + c.B @ u0 + c.b, c.W @ r1 + c.B @ (u0 + du) + c.b
    k = c.spec.connectivity
    pop = population_prediction(k.J_EE, k.J_EI, k.J_IE, k.J_II)
    r, onset, trace_dt = step_response(c, prepared["extra_drive"], 1, prepared)
    return {
        "delta_rI": pop_mean(r1 - r0, c, "I"), "delta_rE": pop_mean(r1 - r0, c, "E"),
        "rI0": pop_mean(r0, c, "I"), "rE0": pop_mean(r0, c, "E"),
        "pred_delta_rI": pop_mean(pred, c, "I"),
        "pop_pred_delta_rI": pop["dI_dgI"] * c.spec.input.gain_I * prepared["extra_drive"],
        "frac_I_down": float(np.mean((r1 - r0)[c.population == "I"] < 0)),
        "n_threshold_crossings": float(np.sum((z0 > 0) != (z1 > 0))),
        "isn": float(lin.inhibition_stabilized), "stable": float(lin.stable),
        "ee_loop_gain": lin.ee_loop_gain, "max_eig_real": lin.max_eig_real,
        "sim_delta_rI": pop_mean(r[-1] - r[onset - 1], c, "I"),
        "rI_trace": r[:, c.population == "I"].mean(axis=1).tolist(),
        "rE_trace": r[:, c.population == "E"].mean(axis=1).tolist(),
        "trace_dt_ms": trace_dt,
    }


def _analyze(ds: xr.Dataset, params: IsnParadoxParams, opt: AnalysisOptions) -> Analysis:
    isn = opt.compare(condition_values(ds, "delta_rI", "isn"), null_value=0.0, alternative="less")
    ctl = opt.compare(condition_values(ds, "delta_rI", "control"), null_value=0.0, alternative="greater")
    named = "ee_scale" in ds and any(str(v).startswith("isn_") for v in ds.data_vars)
    isn_what = "model as given" if named else f"J_EE = {params.isn_J_EE:g}"
    ctl_what = f"E self-excitation x {params.control_scale:g}" if named else f"J_EE = {params.control_J_EE:g}"
    comps = [Comparison(f"ISN ({isn_what}): extra I drive lowers mean r_I", isn, params.min_effect),
             Comparison(f"control ({ctl_what}): extra I drive raises mean r_I", ctl, params.min_effect)]
    if "spiking" in params.backends:
        comps += [Comparison("spiking ISN: extra I drive lowers the mean I pool rate",
                             opt.compare(condition_values(ds, "delta_rI", "isn spiking"), null_value=0.0,
                                         alternative="less"), params.min_effect),
                  Comparison("spiking control: extra I drive raises the mean I pool rate",
                             opt.compare(condition_values(ds, "delta_rI", "control spiking"), null_value=0.0,
                                         alternative="greater"), params.min_effect)]
    cols = {"J_EE": "J_EE", "drive": "extra drive", "isn": "ISN (fraction of seeds)", "ee_loop_gain": "E-E loop gain",
            "rI0": "r_I before", "delta_rI": "Δr_I (steady state)",
            "pred_delta_rI": "Δr_I linear prediction (unit level)",
            "pop_pred_delta_rI": "Δr_I two-population formula",
            "sim_delta_rI": "Δr_I simulated (Euler)", "frac_I_down": "fraction of I units down"}
    named = [str(v) for v in ds.data_vars if str(v).startswith(("delta_", "isn_")) and v not in ("delta_rI", "delta_rE")]
    if named:  # named populations: the E self-excitation scale, each population's change, ISN per sub-network
        cols = {"ee_scale": "E self-excitation (x model)", **{k: v for k, v in cols.items() if k != "J_EE"},
                **{v: v for v in named}}
    table = summary_rows(ds, cols)
    rate = ds.sel(condition=[c["condition"] for c in _design(params) if c["backend"] == "rate"])
    err_lin = float(np.nanmax(np.abs(rate["delta_rI"] - rate["pred_delta_rI"])))
    err_sim = float(np.nanmax(np.abs(rate["delta_rI"] - rate["sim_delta_rI"])))
    unstable = int(np.sum(rate["stable"].values == 0))
    crossings = float(np.nanmean(rate["n_threshold_crossings"]))
    notes = [f"Unit-level linear prediction (I - DW)^-1 D B du matches the Newton steady states to "
             f"{err_lin:.2g} (max abs over seeds; exact while no unit crosses threshold, here "
             f"{crossings:.3g} units per circuit on average do); the simulated time course ends within "
             f"{err_sim:.2g}.",
             ("Named populations: the driven populations get the extra drive as bias; delta_NAME is each "
              "population's steady-state change, isn_NAME the ISN test of each excitatory sub-network."
              if named else "Two-population formula dr_I/dg_I = (1 - J_EE)/D predicts the sign: "
             + ", ".join(f"{r['condition']}: {float(np.nanmean(ds['pop_pred_delta_rI'].sel(condition=r['condition']))):+.4g}"
                         for r in table) + ".")]
    if "spiking" in params.backends:
        notes.append("Spiking rows: pool rates (rate-model units) in the second half of the window before and "
                     f"after the extra drive at {params.spiking_onset_ms:g} ms, minus the same change of a sham run "
                     "(no extra drive, the same random streams: the network's drift, drift_rI) "
                     f"({params.engine} engine, LIF pools"
                     + ("; the extra-drive levels of a circuit ran as one batch" if params.engine == "torch"
                        and params.batch_conditions else "") + ").")
    if unstable:
        notes.append(f"{unstable} circuit(s) had an unstable fixed point (max Re eig >= 0): their steady "
                     "state is not reached dynamically.")
    return Analysis(comps, table, notes, primary=0,
                    extra={"linear_prediction_max_abs_error": err_lin, "simulation_max_abs_error": err_sim})


def _figure(ds: xr.Dataset, analysis: Analysis, params: IsnParadoxParams, path: Path) -> Path:
    with hypothesis_figure(path, 2, width=2) as (a1, a2):
        strip_plot(a1, ds, "delta_rI", color=POP_COLORS["I"], label="Newton steady state")
        for i, cond in enumerate(ds["condition"].values):
            a1.scatter([i + 0.3], [float(ds["pop_pred_delta_rI"].sel(condition=cond).mean())], marker="x",
                       color=PALETTE["black"], label="(1 - J_EE)/D prediction" if i == 0 else None, zorder=5)
        a1.axhline(0, color="0.7", lw=0.6)
        a1.set_ylabel("Δ mean I rate (model units)")
        a1.set_title(f"extra I drive {params.extra_drive:g}: {analysis.verdict}", loc="left")
        a1.legend(loc="best")
        for cond, ls in zip(ds["condition"].values[:2], ("-", "--")):
            tr = ds.sel(condition=cond).isel(seed=0)
            dt = float(tr["trace_dt_ms"])
            t = np.arange(np.isfinite(tr["rI_trace"].values).sum()) * dt
            a2.plot(t, tr["rI_trace"].values[: t.size], color=POP_COLORS["I"], ls=ls, label=f"I ({cond})")
            a2.plot(t, tr["rE_trace"].values[: t.size], color=POP_COLORS["E"], ls=ls, label=f"E ({cond})")
        a2.axvline(params.onset_ms, color="0.6", lw=0.6)
        a2.set_xlabel("time (ms)")
        a2.set_ylabel("mean rate (model units)")
        a2.set_title("time course, first seed (extra I drive at the line)", loc="left")
        a2.legend(loc="best", ncol=2)
    return Path(path)


HYPOTHESIS = circuit_hypothesis(
    name="isn-paradox",
    claim="In the inhibition-stabilised regime extra drive to inhibitory cells lowers their rate "
          "(paradoxical response), while a non-ISN control responds normally.",
    h0="Extra I drive does not lower the mean I rate in the ISN circuit (mean Δr_I >= 0), or does not "
       "raise it in the control.",
    h1="Mean Δr_I < 0 in the ISN circuit (J_EE > 1) and > 0 in the control (J_EE < 1), as "
       "(1 - J_EE)/D predicts.",
    runtime={"quick": "~5 s", "full": "~20 s"},
    references=("Tsodyks, Skaggs, Sejnowski & McNaughton (1997) J Neurosci 17:4382",
                "Ozeki, Finn, Schaffer, Miller & Ferster (2009) Neuron 62:578"),
    params_model=IsnParadoxParams,
    design=_design,
    task=_task,
    analyze=_analyze,
    figure=_figure,
    prepare=_prepare,
    var_dims={"rI_trace": ("time",), "rE_trace": ("time",)},
)
