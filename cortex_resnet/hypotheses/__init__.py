"""Named, runnable hypotheses: claim, H0/H1, multi-seed design, statistics, verdict, report.

Registry: :data:`HYPOTHESES` (:mod:`cortex_resnet.hypotheses.registry`) maps a name to its
module (one module per hypothesis, each defining ``HYPOTHESIS``). Add one by one line there.

    from cortex_resnet.hypotheses import run_hypothesis
    summary = run_hypothesis("isn-paradox", quick=True, workers=0)
    summary["verdict"]   # "supported" / "not supported" / "inconclusive"
"""

from __future__ import annotations

from cortex_resnet.hypotheses.base import Analysis, AnalysisOptions, Comparison, Hypothesis, HypothesisSpec, Params
from cortex_resnet.hypotheses.registry import HYPOTHESES, get_hypothesis, known_hypotheses, list_hypotheses
from cortex_resnet.hypotheses.runner import rebuild_report, run_hypothesis

__all__ = ["HYPOTHESES", "known_hypotheses", "get_hypothesis", "list_hypotheses", "run_hypothesis",
           "rebuild_report", "Hypothesis", "HypothesisSpec", "Params", "Analysis", "AnalysisOptions",
           "Comparison"]
