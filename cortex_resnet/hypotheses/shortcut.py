"""``shortcut``: identity vs projection shortcut, accuracy and parameter cost.

Identity (the membrane's memory): ``r_{k+1} = (1 - alpha) r_k + alpha phi(W r_k + B u + b)``.
Projection: ``r_{k+1} = P r_k + alpha phi(...)`` with a learned ``P = diag(1 - alpha) + Q``
(``Q = 0`` at initialisation), one ``Q`` per step like ``W`` (bridge variant
``projection``). He et al. (2015): projection shortcuts everywhere (option C) are
marginally better than identity ones on ImageNet at a large parameter cost;
He et al. (2016): a 1x1 projection on every block of ResNet-110 is *worse*
(12.22 % vs 6.61 % error on CIFAR-10).

Statistic, paired by seed: test accuracy of identity minus projection above
``-margin`` (identity does at least about as well); the parameter cost is
reported beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr
from pydantic import Field

from cortex_resnet.hypotheses._figures import PALETTE, hypothesis_figure, strip_plot, verdict_title
from cortex_resnet.hypotheses.base import Analysis, AnalysisOptions, comparison, paired_values, summary_rows
from cortex_resnet.hypotheses._training import trained_hypothesis, TrainingParams, train_classifier

__all__ = ["HYPOTHESIS", "ShortcutParams"]


class ShortcutParams(TrainingParams):
    """``steps``: depth; ``tied``: one W (and Q) for all steps instead of one per step; ``margin``:
    accuracy the identity net may lose and still count as at least as good."""

    input_mode: Literal["pulse", "sustained"] = "sustained"
    steps: int = Field(default=8, ge=1, le=1000)
    tied: bool = False
    margin: float = Field(default=0.02, gt=0.0, lt=1.0)


def _design(params: ShortcutParams) -> list[dict[str, Any]]:
    ident = "tied" if params.tied else "untied"
    return [{"condition": "identity", "variant": ident, "steps": params.steps},
            {"condition": "projection", "variant": "projection", "steps": params.steps}]


def _task(prepared: dict[str, Any], condition: dict[str, Any], seed: int) -> dict[str, Any]:
    tied = prepared["tied"]
    t = train_classifier(prepared, seed, variant=condition["variant"], steps=condition["steps"], tied=tied)
    return {"test_accuracy": t.accuracy_per_step[-1], "train_loss": t.train_loss, "params": float(t.params),
            "train_seconds": t.seconds}


def _analyze(ds: xr.Dataset, params: ShortcutParams, opt: AnalysisOptions) -> Analysis:
    def diff():
        ai, ap = paired_values(ds, "test_accuracy", "identity", "projection")
        return opt.compare(ai - ap, null_value=-params.margin, alternative="greater")

    comps = [comparison(f"identity at least as accurate: accuracy(identity) - accuracy(projection) > "
                        f"-{params.margin:g}", diff, 0.0)]
    ai = np.asarray(ds["test_accuracy"].sel(condition="identity").values, float)
    ap = np.asarray(ds["test_accuracy"].sel(condition="projection").values, float)
    table = summary_rows(ds, {"test_accuracy": "test accuracy", "train_loss": "training loss",
                              "params": "parameters", "train_seconds": "training time (s)"})
    pi = float(np.nanmean(ds["params"].sel(condition="identity")))
    pp = float(np.nanmean(ds["params"].sel(condition="projection")))
    diff = ai - ap
    notes = [f"Parameter cost of the projection: {pp - pi:.0f} extra ({pp / pi:.2f}x the identity net).",
             f"Mean accuracy difference identity - projection: {np.nanmean(diff):+.4f} (per seed: "
             + ", ".join(f"{d:+.3f}" for d in diff) + ").",
             "He et al. (2016): projection shortcuts on every block of ResNet-110 are worse (12.22 % vs 6.61 % "
             "CIFAR-10 error); He et al. (2015): option C marginally better than B on ImageNet."]
    return Analysis(comps, table, notes)


def _figure(ds: xr.Dataset, analysis: Analysis, params: ShortcutParams, path: Path) -> Path:
    with hypothesis_figure(path, 2, width=2, height_in=2.4) as (a1, a2):
        strip_plot(a1, ds, "test_accuracy", color=PALETTE["blue"])
        a1.set_ylabel("test accuracy")
        verdict_title(a1, "shortcut", analysis, f"K = {params.steps}")
        strip_plot(a2, ds, "params", color=PALETTE["vermillion"])
        a2.set_ylabel("parameters")
        a2.set_title("parameter cost", loc="left")
    return Path(path)


HYPOTHESIS = trained_hypothesis(
    name="shortcut",
    claim="Identity shortcuts (the leak) do at least as well as learned projection shortcuts, at a lower "
          "parameter cost.",
    h0="The identity net is less accurate than the projection net by more than the margin.",
    h1="accuracy(identity) - accuracy(projection) > -margin (He et al. 2016: projections on every block hurt).",
    runtime={"quick": "~15 s", "full": "~10 min"},
    references=("He, Zhang, Ren & Sun (2015) arXiv:1512.03385", "He, Zhang, Ren & Sun (2016) arXiv:1603.05027"),
    params_model=ShortcutParams,
    design=_design,
    task=_task,
    analyze=_analyze,
    figure=_figure,
)
