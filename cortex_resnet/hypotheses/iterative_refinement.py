"""``iterative-refinement``: an approximate picture right away, refined by recurrence.

A residual (leaky, ``alpha = dt / tau``) and a plain (``alpha = 1``) circuit are
trained with the loss on every step's readout (anytime readout). Measured on
the test set:

* accuracy per step: it rises from the first to the last step and is above
  chance early (at step ``max(1, K // 4)``);
* relative residual increments ``|r_{k+1} - r_k| / |r_k|`` (mean over stimuli):
  small, and shrinking along the unroll (Greff, Srivastava & Schmidhuber 2017)
  -- the log ratio of the last to the first increment is negative;
* lesions: skipping one block (``r_{k+1} = r_k``) for each ``k`` in turn; the mean
  drop of the final accuracy, as a fraction of the accuracy above chance, is
  small for the residual net and large for the plain one (Veit, Wilber &
  Belongie 2016). Veit et al. lesioned feedforward nets, where the input enters
  once: the lesion comparison uses a residual and a plain net with the input
  as a pulse (with sustained input every block gets the input again and a
  lesion is bridged by it).

Conditions: ``residual`` (input ``input_mode``, for the first three claims),
``residual pulse`` and ``plain pulse`` (for the lesions).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import xarray as xr
from pydantic import Field

from cortex_resnet.hypotheses._figures import PALETTE, hypothesis_figure
from cortex_resnet.hypotheses.base import Analysis, AnalysisOptions, comparison, condition_values, paired_values, summary_rows
from cortex_resnet.hypotheses._training import trained_hypothesis, TrainingParams, train_classifier

__all__ = ["HYPOTHESIS", "RefinementParams", "states_with_lesion"]


class RefinementParams(TrainingParams):
    """``steps``: depth K; ``tied``: one W for all steps (the recurrent circuit) instead of one per
    step (a ResNet vs a plain net, as Greff et al. and Veit et al. studied); minimum effects:
    accuracy rise, accuracy above chance, log shrink of increments, extra lesion cost of plain."""

    loss_steps: Literal["last", "all"] = "all"
    input_mode: Literal["pulse", "sustained"] = "sustained"
    steps: int = Field(default=8, ge=2, le=1000)
    tied: bool = False
    min_rise: float = Field(default=0.01, ge=0.0)
    min_above_chance: float = Field(default=0.05, ge=0.0)
    min_log_shrink: float = Field(default=math.log(1.1), ge=0.0)
    min_lesion_gap: float = Field(default=0.01, ge=0.0)


def _design(params: RefinementParams) -> list[dict[str, Any]]:
    res = "tied" if params.tied else "untied"
    return [{"condition": "residual", "variant": res, "steps": params.steps, "input_mode": params.input_mode},
            {"condition": "residual pulse", "variant": res, "steps": params.steps, "input_mode": "pulse"},
            {"condition": "plain pulse", "variant": "plain", "steps": params.steps, "input_mode": "pulse"}]


@torch.no_grad()
def states_with_lesion(model: torch.nn.Module, x: torch.Tensor, skip: int | None = None) -> torch.Tensor:
    """States ``r_0..r_K`` (K + 1, batch, N) of a classifier's unrolled net, block ``skip`` replaced by
    the identity (``skip=None``: the intact net, equal to ``model.net(model.encode(x))``)."""
    net = model.net
    u = model.encode(x)
    r = net.initial_state(u)
    drive = net.b.expand(u.shape[0], -1) if net.input_mode == "pulse" else net.drive(u)
    WTs = net.W.transposed().unbind(0)
    states = [r]
    for k in range(net.steps):
        if k != skip:
            r = net.step(r, drive, k, WTs[min(k, len(WTs) - 1)])
        states.append(r)
    return torch.stack(states)


def _task(prepared: dict[str, Any], condition: dict[str, Any], seed: int) -> dict[str, Any]:
    t = train_classifier(prepared, seed, variant=condition["variant"], steps=condition["steps"],
                         tied=prepared["tied"] if condition["variant"] != "untied" else False,
                         input_mode=condition["input_mode"])
    model, K = t.model.eval(), condition["steps"]
    y = t.y_test
    states = states_with_lesion(model, t.x_test)
    diffs = (states[1:] - states[:-1]).norm(dim=-1)
    norms = states[:-1].norm(dim=-1)
    ok = norms > 0
    inc = [float((diffs[k][ok[k]] / norms[k][ok[k]]).mean()) if bool(ok[k].any()) else float("nan")
           for k in range(K)]
    final = float((model.readout(states[-1][:, : model.net.n_E]).argmax(-1) == y).double().mean())
    lesion = []
    for k in range(1, K):  # block 0 builds the first state from r_0 (zero in sustained mode): not a lesion
        s = states_with_lesion(model, t.x_test, skip=k)
        lesion.append(final - float((model.readout(s[-1][:, : model.net.n_E]).argmax(-1) == y).double().mean()))
    first = next((v for v in inc if np.isfinite(v) and v > 0), float("nan"))
    acc = t.accuracy_per_step
    early = max(1, K // 4)
    above = final - 1.0 / model.n_classes
    return {"accuracy": acc, "increment": inc, "lesion_drop": lesion, "mean_lesion_drop": float(np.mean(lesion)),
            "relative_lesion_cost": float(np.mean(lesion)) / above if above > 0.02 else float("nan"),
            "acc_first": acc[0], "acc_early": acc[early - 1], "acc_last": acc[-1],
            "rise": acc[-1] - acc[0], "mean_increment": float(np.nanmean(inc)),
            "log_increment_shrink": math.log(inc[-1] / first) if inc[-1] > 0 and first > 0 else float("nan"),
            "chance": 1.0 / model.n_classes, "params": float(t.params)}


def _analyze(ds: xr.Dataset, params: RefinementParams, opt: AnalysisOptions) -> Analysis:
    chance = float(np.nanmean(ds["chance"]))
    early = max(1, params.steps // 4)
    comps = [
        comparison("residual: anytime accuracy rises from the first to the last step",
                   lambda: opt.compare(condition_values(ds, "rise", "residual"),
                                       alternative="greater"), params.min_rise),
        comparison(f"residual: above chance ({chance:.3g}) early, at step {early}",
                   lambda: opt.compare(condition_values(ds, "acc_early", "residual"), null_value=chance,
                                       design="one-sample", alternative="greater"), params.min_above_chance),
        comparison("residual: increments |F|/|x| shrink along the unroll (log last/first < 0)",
                   lambda: opt.compare(condition_values(ds, "log_increment_shrink", "residual"),
                                       alternative="less"), params.min_log_shrink),
        comparison("lesioning one step costs the plain net more of its above-chance accuracy than the residual "
                   "net (input as a pulse)",
                   lambda: opt.compare(*paired_values(ds, "relative_lesion_cost", "plain pulse", "residual pulse"),
                                       design="paired", alternative="greater"), params.min_lesion_gap),
    ]
    table = summary_rows(ds, {"acc_first": "accuracy step 1", "acc_early": f"accuracy step {early}",
                              "acc_last": f"accuracy step {params.steps}", "mean_increment": "mean |F|/|x|",
                              "log_increment_shrink": "log(last/first increment)",
                              "mean_lesion_drop": "mean accuracy drop, one step lesioned",
                              "relative_lesion_cost": "drop / (accuracy - chance)"})
    notes = [f"Depth K = {params.steps}, {'tied' if params.tied else 'untied'} residual net, loss on "
             f"{params.loss_steps} steps, input {params.input_mode}, {params.epochs} epochs on {params.dataset}.",
             "Greff et al. (2017): residual increments are small and shrink (unrolled iterative estimation); Veit "
             "et al. (2016): deleting one block of a ResNet costs little, of a plain net (VGG) a lot."]
    return Analysis(comps, table, notes)


def _figure(ds: xr.Dataset, analysis: Analysis, params: RefinementParams, path: Path) -> Path:
    with hypothesis_figure(path, 3, width=2, height_in=2.3) as axes:
        axes[0].figure.subplots_adjust(wspace=0.5)
        colors = {"residual": PALETTE["blue"], "residual pulse": PALETTE["sky"], "plain pulse": PALETTE["vermillion"]}
        for cond in ds["condition"].values:
            sub = ds.sel(condition=cond)
            for ax, var in zip(axes, ("accuracy", "increment", "lesion_drop")):
                if var != "lesion_drop" and cond != "residual" or var == "lesion_drop" and cond == "residual":
                    continue
                v = np.asarray(sub[var].values, float)
                x = np.arange(1, v.shape[1] + 1) if var != "lesion_drop" else np.arange(2, v.shape[1] + 2)
                cols = np.isfinite(v).any(axis=0)
                mean = np.array([np.mean(c[np.isfinite(c)]) for c in v.T[cols]])
                ax.plot(x[cols], mean, color=colors[str(cond)], marker="o", ms=2.5, label=str(cond))
                ax.fill_between(x[cols], np.nanmin(v[:, cols], axis=0), np.nanmax(v[:, cols], axis=0),
                                color=colors[str(cond)], alpha=0.15)
        axes[0].axhline(float(np.nanmean(ds["chance"])), color="0.6", ls="--", lw=0.6)
        axes[0].set(xlabel="step k", ylabel="test accuracy (anytime readout)")
        axes[1].set(xlabel="step k", ylabel="|r_k+1 - r_k| / |r_k|", yscale="log")
        axes[2].set(xlabel="lesioned step", ylabel="accuracy drop")
        axes[0].legend(loc="lower right")
        axes[2].legend(loc="best")
        axes[0].set_title(f"iterative-refinement: {analysis.verdict}", loc="left")
    return Path(path)


HYPOTHESIS = trained_hypothesis(
    name="iterative-refinement",
    claim="Readout accuracy rises with the time step and is above chance early; residual increments |F|/|x| "
          "shrink along the unroll; lesioning one step costs little in a residual net and much in a plain one.",
    h0="Accuracy does not rise, or is at chance early, or increments do not shrink, or a lesion costs the "
       "plain net no more than the residual net.",
    h1="All four: rise > 0, early accuracy > chance, log(last/first increment) < 0, lesion drop plain > "
       "residual (Greff et al. 2017; Veit et al. 2016).",
    runtime={"quick": "~20 s", "full": "~10 min"},
    references=("Greff, Srivastava & Schmidhuber (2017) ICLR, arXiv:1612.07771",
                "Veit, Wilber & Belongie (2016) NeurIPS, arXiv:1605.06431",
                "Liao & Poggio (2016) arXiv:1604.03640"),
    params_model=RefinementParams,
    design=_design,
    task=_task,
    analyze=_analyze,
    figure=_figure,
    var_dims={"accuracy": ("step",), "increment": ("step",), "lesion_drop": ("lesioned_step",)},
)
