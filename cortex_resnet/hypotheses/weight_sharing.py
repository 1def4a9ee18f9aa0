"""``weight-sharing``: tied weights (the recurrent circuit) vs untied (a ResNet) at equal depth.

Liao & Poggio (2016): a ResNet whose blocks share their weights -- a recurrent
net -- performs about as well with far fewer parameters. Here the same circuit
unrolled ``steps`` times, with one weight matrix (``tied``: the cortical
circuit, step for step) or one per step (``untied``: areas in a chain).

Statistics, paired by seed (same circuit, data order and initial weights): one
non-inferiority test, test accuracy of tied minus untied above ``-margin``. It
can fail both ways: *supported* when the paired difference is significantly
above ``-margin``, *not supported* when its confidence interval lies entirely
below ``-margin`` (the tied net loses more than the margin). The parameter
counts (tied: one recurrent weight set; untied: ``steps`` of them) differ by
construction and are reported, not tested: an "accuracy per parameter" claim
would be true for any two nets of similar accuracy and so could not fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr
from pydantic import Field

from cortex_resnet.hypotheses._figures import PALETTE, hypothesis_figure, verdict_title
from cortex_resnet.hypotheses.base import Analysis, AnalysisOptions, comparison, paired_values, summary_rows
from cortex_resnet.hypotheses._training import trained_hypothesis, TrainingParams, train_classifier

__all__ = ["HYPOTHESIS", "WeightSharingParams"]


class WeightSharingParams(TrainingParams):
    """``steps``: depth of both nets; ``margin``: accuracy (fraction) the tied net may lose and still
    count as performing as well (the non-inferiority margin)."""

    input_mode: Literal["pulse", "sustained"] = "sustained"
    steps: int = Field(default=8, ge=1, le=1000)
    margin: float = Field(default=0.02, gt=0.0, lt=1.0)


def _design(params: WeightSharingParams) -> list[dict[str, Any]]:
    return [{"condition": "tied", "variant": "tied", "steps": params.steps},
            {"condition": "untied", "variant": "untied", "steps": params.steps}]


def _task(prepared: dict[str, Any], condition: dict[str, Any], seed: int) -> dict[str, Any]:
    t = train_classifier(prepared, seed, variant=condition["variant"], steps=condition["steps"])
    acc = t.accuracy_per_step[-1]
    return {"test_accuracy": acc, "train_loss": t.train_loss, "params": float(t.params),
            "accuracy_per_kparam": 1000.0 * acc / t.params, "train_seconds": t.seconds}


def _analyze(ds: xr.Dataset, params: WeightSharingParams, opt: AnalysisOptions) -> Analysis:
    def similar():
        at, au = paired_values(ds, "test_accuracy", "tied", "untied")
        return opt.compare(at - au, null_value=-params.margin, alternative="greater")

    comps = [comparison(f"tied is non-inferior: accuracy(tied) - accuracy(untied) > -{params.margin:g}",
                        similar, 0.0)]
    table = summary_rows(ds, {"test_accuracy": "test accuracy", "params": "parameters",
                              "accuracy_per_kparam": "accuracy per 1000 parameters", "train_loss": "training loss",
                              "train_seconds": "training time (s)"})
    pt = float(np.nanmean(ds["params"].sel(condition="tied")))
    pu = float(np.nanmean(ds["params"].sel(condition="untied")))
    notes = [f"Parameters: tied {pt:.0f}, untied {pu:.0f} ({pu / pt:.2f}x) at depth K = {params.steps}; "
             f"{params.epochs} epochs on {params.dataset}, input {params.input_mode}.",
             "Liao & Poggio (2016): weight sharing across ResNet blocks costs little accuracy on CIFAR-10."]
    return Analysis(comps, table, notes)


def _figure(ds: xr.Dataset, analysis: Analysis, params: WeightSharingParams, path: Path) -> Path:
    with hypothesis_figure(path, width=1.3) as (ax,):
        for cond, color in (("tied", PALETTE["blue"]), ("untied", PALETTE["vermillion"])):
            sub = ds.sel(condition=cond)
            ax.scatter(sub["params"].values, sub["test_accuracy"].values, color=color, s=14, alpha=0.8,
                       label=f"{cond} ({'recurrent circuit' if cond == 'tied' else 'ResNet'})")
        for s in ds["seed"].values:
            pts = ds.sel(seed=s)
            ax.plot(pts["params"].values, pts["test_accuracy"].values, color="0.8", lw=0.6, zorder=0)
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel("test accuracy")
        verdict_title(ax, "weight-sharing", analysis, f"K = {params.steps}")
        ax.legend(loc="lower right")
    return Path(path)


HYPOTHESIS = trained_hypothesis(
    name="weight-sharing",
    claim="Tied weights (the recurrent circuit, K-fold fewer recurrent weights) reach the accuracy of untied "
          "weights (a ResNet) at equal depth K, within a margin.",
    h0="The tied net loses at least the margin in accuracy: accuracy(tied) - accuracy(untied) <= -margin.",
    h1="accuracy(tied) - accuracy(untied) > -margin (non-inferiority; Liao & Poggio 2016). The parameter "
       "counts differ by construction (K-fold in the recurrent weights) and are reported, not tested.",
    runtime={"quick": "~15 s", "full": "~10 min"},
    references=("Liao & Poggio (2016) arXiv:1604.03640",),
    params_model=WeightSharingParams,
    design=_design,
    task=_task,
    analyze=_analyze,
    figure=_figure,
)
