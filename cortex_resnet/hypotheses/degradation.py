"""``degradation``: deeper plain nets train worse; residual ones (the membrane leak as skip path) do not.

He, Zhang, Ren & Sun (2015): a plain 56-layer net has a higher *training*
error than a plain 20-layer one on CIFAR-10, while residual nets improve with
depth. Here a net of depth ``K`` is the circuit unrolled ``K`` steps (one
weight matrix per step by default, like a ResNet). *Plain*: ``alpha = 1``,
``r_{k+1} = phi(W_k r_k + b)``. *Residual*: ``alpha = dt / tau`` with
``dt = total_ms / K`` -- deeper is a finer discretisation of the same leaky
dynamics. Input as a pulse (``r_0 = phi(B u + b)``), as in a feedforward net.

Statistic: the final training loss (cross-entropy of the last step on the whole
training set), paired by seed (same circuit and initial parameters across
depths): plain deep minus plain shallow > 0; residual deep minus residual
shallow below a non-inferiority margin; plain deep minus residual deep > 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from pydantic import Field, field_validator

from cortex_resnet.hypotheses._figures import PALETTE, hypothesis_figure
from cortex_resnet.hypotheses.base import Analysis, AnalysisOptions, comparison, paired_values, summary_rows
from cortex_resnet.hypotheses._training import trained_hypothesis, TrainingParams, train_classifier

__all__ = ["HYPOTHESIS", "DegradationParams"]


class DegradationParams(TrainingParams):
    """``depths``: the K values (first = shallow, last = deep); ``tied``: one W for all steps
    instead of a ResNet-like W per step; ``margin``: how much worse (training loss, nats) a deep
    residual net may be and still count as not degrading; ``min_effect``: smallest loss increase
    that counts as degradation."""

    depths: list[int] = Field(default=[2, 4, 8, 16, 32], min_length=2)
    tied: bool = False
    margin: float = Field(default=0.1, gt=0.0)
    min_effect: float = Field(default=0.05, ge=0.0)

    @field_validator("depths")
    @classmethod
    def _depths(cls, v: list[int]) -> list[int]:
        if any(d < 1 for d in v) or sorted(set(v)) != v:
            raise ValueError(f"depths {v} must be increasing integers >= 1")
        return v


def _label(kind: str, k: int) -> str:
    return f"{kind} K={k}"


def _design(params: DegradationParams) -> list[dict[str, Any]]:
    res_variant = "tied" if params.tied else "untied"
    return [{"condition": _label(kind, k), "kind": kind, "variant": "plain" if kind == "plain" else res_variant,
             "steps": k} for kind in ("plain", "residual") for k in params.depths]


def _task(prepared: dict[str, Any], condition: dict[str, Any], seed: int) -> dict[str, Any]:
    t = train_classifier(prepared, seed, variant=condition["variant"], steps=condition["steps"],
                         tied=prepared["tied"])
    return {"train_loss": t.train_loss, "train_accuracy": t.train_accuracy, "test_accuracy": t.accuracy_per_step[-1],
            "params": float(t.params), "train_seconds": t.seconds}


def _analyze(ds: xr.Dataset, params: DegradationParams, opt: AnalysisOptions) -> Analysis:
    lo, hi = params.depths[0], params.depths[-1]
    def pair(a: str, b: str) -> tuple:
        return paired_values(ds, "train_loss", a, b)

    def residual_change():
        deep, shallow = pair(_label("residual", hi), _label("residual", lo))
        return opt.compare(deep - shallow, null_value=params.margin, alternative="less")

    comps = [
        comparison(f"plain nets degrade: training loss K={hi} minus K={lo} > 0",
                   lambda: opt.compare(*pair(_label("plain", hi), _label("plain", lo)), design="paired",
                                       alternative="greater"), params.min_effect),
        comparison(f"residual nets do not: training loss K={hi} minus K={lo} < margin {params.margin:g}",
                   residual_change, 0.0),
        comparison(f"at K={hi} the plain net trains worse than the residual one",
                   lambda: opt.compare(*pair(_label("plain", hi), _label("residual", hi)), design="paired",
                                       alternative="greater"), params.min_effect),
    ]
    table = summary_rows(ds, {"steps": "depth K", "train_loss": "training loss (nats)",
                              "train_accuracy": "training accuracy", "test_accuracy": "test accuracy",
                              "params": "parameters", "train_seconds": "training time (s)"})
    notes = [f"Residual nets integrate {params.total_ms:g} ms (dt = total_ms / K); plain nets have alpha = 1. "
             f"Input mode {params.input_mode}, {'tied' if params.tied else 'untied'} weights, {params.epochs} "
             f"epochs of Adam (lr {params.lr:g}) on {params.dataset}.",
             "He et al. (2015): plain-56 trains worse than plain-20 on CIFAR-10 (training error), ResNets improve "
             "with depth; the comparison here is the same shape at circuit scale."]
    return Analysis(comps, table, notes)


def _figure(ds: xr.Dataset, analysis: Analysis, params: DegradationParams, path: Path) -> Path:
    with hypothesis_figure(path, 2, width=2) as axes:
        colors = {"plain": PALETTE["vermillion"], "residual": PALETTE["blue"]}
        for ax, var, ylab in zip(axes, ("train_loss", "test_accuracy"), ("training loss (nats)", "test accuracy")):
            for kind in ("plain", "residual"):
                vals = np.array([np.asarray(ds[var].sel(condition=_label(kind, k)).values, float)
                                 for k in params.depths])
                for k, v in zip(params.depths, vals):
                    ax.scatter(np.full(v.size, k), v, s=8, color=colors[kind], alpha=0.5)
                ax.plot(params.depths, np.nanmean(vals, axis=1), color=colors[kind], marker="o", ms=3,
                        label=f"{kind} ({'alpha = 1' if kind == 'plain' else 'alpha = dt/tau'})")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("depth K (steps)")
            ax.set_ylabel(ylab)
        axes[0].legend(loc="best")
        axes[0].set_title(f"degradation: {analysis.verdict}", loc="left")
    return Path(path)


HYPOTHESIS = trained_hypothesis(
    name="degradation",
    claim="Deeper plain unrolled nets (alpha = 1) train worse, while residual ones (alpha = dt/tau: the "
          "membrane leak as the skip path) do not.",
    h0="Plain nets do not train worse with depth, or residual nets degrade by more than the margin, or the "
       "deep plain net is not worse than the deep residual one.",
    h1="Training loss rises from the shallowest to the deepest plain net, stays within the margin for "
       "residual nets, and the deepest plain net is worse than the deepest residual net.",
    runtime={"quick": "~30 s", "full": "~20 min"},
    references=("He, Zhang, Ren & Sun (2015) arXiv:1512.03385 (CVPR 2016)",
                "He, Zhang, Ren & Sun (2016) arXiv:1603.05027 (ECCV 2016)"),
    params_model=DegradationParams,
    design=_design,
    task=_task,
    analyze=_analyze,
    figure=_figure,
)
