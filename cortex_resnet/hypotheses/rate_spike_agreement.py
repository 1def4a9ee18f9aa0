"""``rate-spike-agreement``: the spiking circuit's population rates follow the LIF rate model.

The rate model with the LIF transfer function (Siegert / Ricciardi first-passage
rate, :mod:`cortex_resnet.model.transfer`) predicts the steady-state population rates
of the same circuit run as pools of LIF neurons (Brunel 2000, model A by
default). For each input level (a condition) and seed (network realisation,
initial potentials, input spikes) the task runs the spiking network
(:mod:`cortex_resnet.spiking.simulator`) and compares its E and I rates in the second
half of the run with the rate model's steady state (Anderson solver). The
statistic is the relative error ``|r_spiking - r_rate| / r_rate``, averaged over
input levels per seed, tested against a tolerance; the spiking backend's own
mean-field rates are reported beside it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr
from pydantic import Field

from cortex_resnet.model.fixedpoint import steady_state
from cortex_resnet.hypotheses._figures import POP_COLORS, hypothesis_figure, verdict_title
from cortex_resnet.hypotheses.base import Analysis, AnalysisOptions, Comparison, summary_rows
from cortex_resnet.hypotheses._circuits import circuit_hypothesis, CircuitParams, circuit_for_seed, pop_mean
from cortex_resnet.hypotheses._spiking import condition_run, mean_field_of, run_spiking, window_means

__all__ = ["HYPOTHESIS", "AgreementParams"]


class AgreementParams(CircuitParams):
    """``input_amps``: input levels (model units; the conditions); ``duration_ms``: spiking run,
    rates from its second half; ``pool_size``: LIF neurons per rate unit (None: the model's);
    ``tolerance``: relative error still counted as agreement; ``engine``: spiking engine, ``torch``
    runs a seed's input levels as one batch (``batch_conditions``; False: one run each, the
    same replica seeds and results)."""

    model: str = "models/brunel_2000.toml"
    input_amps: list[float] = Field(default=[30.0, 40.0, 50.0], min_length=1)
    duration_ms: float = Field(default=1000.0, gt=0.0)
    pool_size: int | None = Field(default=None, ge=1, le=100_000)
    tolerance: float = Field(default=0.2, gt=0.0)
    engine: Literal["brian2", "torch"] = "brian2"
    batch_conditions: bool = True


def _label(a: float) -> str:
    return f"u={a:g}"


def _design(params: AgreementParams) -> list[dict[str, Any]]:
    return [{"condition": _label(a), "amp": a} for a in params.input_amps]


def _task(prepared: dict[str, Any], condition: dict[str, Any], seed: int) -> dict[str, Any]:
    changes = {} if prepared["pool_size"] is None else {"spiking.pool_size": prepared["pool_size"]}
    c = circuit_for_seed(prepared, seed, **changes)
    u = np.full(c.n_inputs, condition["amp"])
    r_rate = steady_state(c, u, method="anderson").numpy()[0]
    dur = prepared["duration_ms"]
    if prepared.get("engine", "brian2") == "torch":
        amps = [float(a) for a in prepared["input_amps"]]
        u_all = np.repeat(np.asarray(amps)[:, None], c.n_inputs, axis=1)
        ds, b = condition_run(c, u_all, amps.index(float(condition["amp"])), dur, seed, decompose=False,
                              batched=bool(prepared.get("batch_conditions", True)))
    else:
        ds, b = run_spiking(c, f"constant:amp={condition['amp']}", dur, seed, decompose=False), 0
    spk = window_means(ds, "r", dur / 2, dur, batch=b)
    out: dict[str, Any] = {}
    for pop in ("E", "I"):
        rate = pop_mean(r_rate, c, pop)
        out[f"rate_{pop}"] = rate
        out[f"spiking_{pop}"] = spk[pop]
        out[f"rel_err_{pop}"] = abs(spk[pop] - rate) / rate if rate > 0 else float("nan")
    mf = mean_field_of(ds, b)
    hz = c.rate_units == "Hz"  # the mean field is in Hz; comparable when the rates are too
    for pop in ("E", "I"):
        out[f"meanfield_{pop}"] = float(mf[pop]) if hz and mf and pop in mf else float("nan")
    return out


def _analyze(ds: xr.Dataset, params: AgreementParams, opt: AnalysisOptions) -> Analysis:
    comps = []
    for pop in ("E", "I"):
        per_seed = np.asarray(ds[f"rel_err_{pop}"].mean("condition", skipna=True).values, float)
        per_seed = per_seed[np.isfinite(per_seed)]
        comps.append(Comparison(f"{pop}: spiking rates within {100 * params.tolerance:g} % of the LIF rate model "
                                "(mean relative error over input levels)",
                                opt.compare(per_seed, null_value=params.tolerance, alternative="less"), 0.0))
    table = summary_rows(ds, {"amp": "input", "rate_E": "rate model E", "spiking_E": "spiking E",
                              "meanfield_E": "spiking mean field E", "rel_err_E": "relative error E",
                              "rate_I": "rate model I", "spiking_I": "spiking I", "rel_err_I": "relative error I"})
    rE = np.asarray(ds["rate_E"].values, float).ravel()
    sE = np.asarray(ds["spiking_E"].values, float).ravel()
    ok = np.isfinite(rE) & np.isfinite(sE)
    corr = float(np.corrcoef(rE[ok], sE[ok])[0, 1]) if ok.sum() > 2 and np.std(rE[ok]) > 0 else math.nan
    notes = [f"Spiking rates from the second half of {params.duration_ms:g} ms runs; rate model: the same circuit's "
             "steady state with its LIF (Siegert) transfer function.",
             f"Correlation of rate-model and spiking E rates across input levels and seeds: {corr:.3g}."]
    return Analysis(comps, table, notes, extra={"correlation_E": corr})


def _figure(ds: xr.Dataset, analysis: Analysis, params: AgreementParams, path: Path) -> Path:
    with hypothesis_figure(path, width=1.3) as (ax,):
        amps = np.asarray(ds["amp"].values, float)
        for pop in ("E", "I"):
            rate = np.nanmean(np.asarray(ds[f"rate_{pop}"].values, float), axis=1)
            ax.plot(amps, rate, color=POP_COLORS[pop], label=f"{pop} rate model (LIF)")
            spk = np.asarray(ds[f"spiking_{pop}"].values, float)
            for i, a in enumerate(amps):
                ax.scatter(np.full(spk.shape[1], a), spk[i], color=POP_COLORS[pop], marker="^", s=12, alpha=0.7,
                           label=f"{pop} spiking (per seed)" if i == 0 else None)
        ax.set_xlabel("input (model units)")
        ax.set_ylabel("population rate (Hz)")
        verdict_title(ax, "rate-spike-agreement", analysis)
        ax.legend(loc="best")
    return Path(path)


HYPOTHESIS = circuit_hypothesis(
    name="rate-spike-agreement",
    claim="The spiking circuit's population rates follow the rate model with the LIF transfer function.",
    h0="The mean relative error between spiking and rate-model population rates is at least the tolerance.",
    h1="Mean relative error < tolerance for E and for I (across input levels, per seed).",
    runtime={"quick": "~1 min", "full": "~15 min"},
    references=("Brunel (2000) J Comput Neurosci 8:183", "Amit & Brunel (1997) Cereb Cortex 7:237",
                "Ricciardi (1977) Diffusion Processes and Related Topics in Biology"),
    params_model=AgreementParams,
    design=_design,
    task=_task,
    analyze=_analyze,
    figure=_figure,
    requires=("cortex_resnet.spiking.simulator", "brian2"),  # brian2: the default engine
)
