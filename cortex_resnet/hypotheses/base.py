"""What a hypothesis is: claim, H0/H1, design (conditions x seeds), task, analysis, figure.

A hypothesis module defines one :class:`Hypothesis` object named ``HYPOTHESIS``.
Its experiment spec (``experiments/hypotheses/NAME.toml``) is validated by
:class:`HypothesisSpec` and the module's own pydantic ``params_model``, so users
change conditions, sizes and seeds without touching code::

    hypothesis = "isn-paradox"
    seeds = 8            # independent random circuits (>= 2)
    seed = 0             # task seeds are seed, seed + 1, ...
    alpha = 0.05
    test = "t"           # "t" (t-tests) or "rank" (Wilcoxon / Mann-Whitney)
    [params]             # the hypothesis's own parameters
    weight_cv = 0.2
    [quick]              # overrides for --quick
    seeds = 3
    [quick.params]
    n_E = 40
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import xarray as xr
from pydantic import Field, ValidationError

from cortex_resnet.errors import SpecError, TooFewSeedsError
from cortex_resnet.model.spec import validation_to_spec_error
from cortex_resnet.core.specbase import Frozen
from cortex_resnet.hypotheses.stats import (Alternative, TestResult, combine_verdicts, compare, decide, holm,
                                           require_seeds)

__all__ = ["Hypothesis", "HypothesisSpec", "QuickSpec", "Params", "Comparison", "comparison", "Analysis",
           "AnalysisOptions", "parse_hypothesis_spec", "condition_values", "paired_values", "summary_rows"]


class Params(Frozen):
    """Base class of a hypothesis's parameters (unknown fields, non-finite numbers, booleans or
    strings for numbers are refused: :class:`cortex_resnet.core.specbase.Frozen`)."""


class QuickSpec(Frozen):
    """Overrides applied with ``--quick``."""
    seeds: int | None = None
    params: dict[str, Any] = {}


class HypothesisSpec(Frozen):
    """An experiment spec file (``experiments/hypotheses/*.toml``)."""
    hypothesis: str
    description: str = ""
    seeds: int = 5
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    test: Literal["t", "rank"] = "t"
    params: dict[str, Any] = {}
    quick: QuickSpec = QuickSpec()


def parse_hypothesis_spec(data: dict[str, Any], source: str | None = None) -> HypothesisSpec:
    """Validate a parsed TOML table; errors name the field (exit 2)."""
    try:
        return HypothesisSpec.model_validate(data)
    except ValidationError as err:
        raise validation_to_spec_error(err, source) from None


@dataclass(frozen=True)
class AnalysisOptions:
    """Settings of the statistics: significance level and test family (``"t"`` or ``"rank"``)."""

    alpha: float = 0.05
    test: str = "t"

    def compare(self, a: Sequence[float], b: Sequence[float] | None = None, *, null_value: float = 0.0,
                alternative: Alternative = "greater",
                design: Literal["one-sample", "paired", "independent"] = "one-sample") -> TestResult:
        """:func:`~cortex_resnet.hypotheses.stats.compare` in this run's test family (t or rank)."""
        return compare(a, b, null_value=null_value, alternative=alternative, design=design,
                       family=self.test)  # type: ignore[arg-type]


@dataclass
class Comparison:
    """One tested sub-claim, with its smallest effect of interest (estimate units).

    ``result.n < 2`` marks a sub-claim that could not be tested (too few seeds left after
    dropping failed ones); it is *inconclusive* and ``note`` says why.
    """

    label: str
    result: TestResult
    min_effect: float = 0.0
    p_adjusted: float = math.nan
    verdict: str = ""
    note: str = ""

    @property
    def testable(self) -> bool:
        return self.result.n >= 2

    def to_json(self) -> dict[str, Any]:
        out = {"label": self.label, **self.result.to_json(), "p_adjusted": self.p_adjusted,
               "min_effect": self.min_effect, "verdict": self.verdict}
        if self.note:
            out["note"] = self.note
        return out

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return f"Comparison({self.label[:50]!r}: {self.verdict}, p_adjusted={self.p_adjusted:.3g}, {self.result.test})"


def comparison(label: str, make: Callable[[], TestResult], min_effect: float = 0.0) -> Comparison:
    """A :class:`Comparison`, or an untestable one when fewer than 2 seeds have usable values
    (e.g. every net of a condition stayed at chance); other errors propagate."""
    try:
        return Comparison(label, make(), min_effect)
    except TooFewSeedsError as err:
        nan = math.nan
        empty = TestResult("not testable", nan, nan, nan, "", nan, (nan, nan), 0.95, 0, "greater", nan)
        return Comparison(label, empty, min_effect, note=f"not testable: {err}")


@dataclass
class Analysis:
    """The statistics of one run: comparisons (Holm-corrected together), a table, notes.

    ``primary`` indexes the comparison reported in the top-level JSON summary.
    """

    comparisons: list[Comparison]
    table: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    primary: int = 0
    verdict: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def finalize(self, alpha: float) -> "Analysis":
        """Holm-adjust the p-values, decide each comparison and the overall verdict."""
        if not self.comparisons:
            raise SpecError("comparisons", [], "at least one statistical comparison")
        testable = [c for c in self.comparisons if c.testable]
        adj = holm([c.result.p_value for c in testable])
        for c, p in zip(testable, adj):
            c.p_adjusted = float(p)
            c.verdict = decide(c.result, alpha=alpha, min_effect=c.min_effect, p_value=float(p))
        for c in self.comparisons:
            if not c.testable:
                c.verdict = "inconclusive"
                self.notes.append(f"{c.label}: {c.note}")
        self.verdict = combine_verdicts([c.verdict for c in self.comparisons])
        return self

    @property
    def main(self) -> Comparison:
        return self.comparisons[self.primary]

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return f"Analysis({self.verdict}: {len(self.comparisons)} comparisons, primary {self.primary}, {len(self.table)} table rows)"


@dataclass(frozen=True)
class Hypothesis:
    """A named, runnable claim.

    Attributes
    ----------
    name, claim, h0, h1 : identity and the claim in words
    runtime : expected wall time on 2 CPU cores, ``{"quick": "...", "full": "..."}``
    references : the published results the claim rests on
    params_model : pydantic model of the spec's ``[params]``
    design : ``params -> conditions``; each condition a dict with a ``"condition"`` label
    task : ``(prepared, condition, seed) -> dict`` of numbers (one (condition, seed) cell);
        a module-level function, so Dask workers import it by reference
    analyze : ``(dataset, params, options) -> Analysis`` (not yet finalized)
    figure : ``(dataset, analysis, params, path) -> path``
    prepare : ``(params, base_dir) -> dict`` of plain data handed to every task (files are read
        here, so the task inputs, and the cache key, contain their content)
    var_dims : names of extra dims of list-valued task results
    requires : modules that must import (e.g. the bridge); missing ones make ``run`` refuse
    version : bump when the task's code changes its numbers (part of the cache key)
    """

    name: str
    claim: str
    h0: str
    h1: str
    runtime: dict[str, str]
    references: tuple[str, ...]
    params_model: type[Params]
    design: Callable[[Any], list[dict[str, Any]]]
    task: Callable[[dict[str, Any], dict[str, Any], int], dict[str, Any]]
    analyze: Callable[[xr.Dataset, Any, AnalysisOptions], Analysis]
    figure: Callable[[xr.Dataset, Analysis, Any, Path], Path]
    prepare: Callable[[Any, Path | None], dict[str, Any]] | None = None
    var_dims: dict[str, tuple[str, ...]] = field(default_factory=dict)
    requires: tuple[str, ...] = ()
    version: int = 1

    def parse_params(self, data: dict[str, Any], source: str | None = None) -> Params:
        try:
            return self.params_model.model_validate(data)
        except ValidationError as err:
            e = validation_to_spec_error(err, source)
            raise SpecError(f"params.{e.field}", e.value, e.allowed, source=source) from None

    def prepared(self, params: Params, base_dir: Path | None) -> dict[str, Any]:
        if self.prepare is not None:
            return self.prepare(params, base_dir)
        return params.model_dump(mode="json")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "claim": self.claim, "h0": self.h0, "h1": self.h1,
                "runtime": dict(self.runtime), "references": list(self.references),
                "requires": list(self.requires)}

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return f"Hypothesis({self.name!r} v{self.version}: {self.claim[:100]!r})"


def condition_values(ds: xr.Dataset, var: str, condition: str) -> np.ndarray:
    """Values of ``var`` over seeds in one condition (NaN-free, at least 2)."""
    if condition not in list(ds["condition"].values):
        raise SpecError("condition", condition, f"one of {list(ds['condition'].values)}")
    vals = np.asarray(ds[var].sel(condition=condition).values, dtype=float).ravel()
    vals = vals[np.isfinite(vals)]
    require_seeds(vals.size, f"{var} in condition {condition}")
    return vals


def paired_values(ds: xr.Dataset, var: str, cond_a: str, cond_b: str) -> tuple[np.ndarray, np.ndarray]:
    """``var`` in two conditions, paired by seed; seeds with NaN in either are dropped."""
    a = np.asarray(ds[var].sel(condition=cond_a).values, dtype=float).ravel()
    b = np.asarray(ds[var].sel(condition=cond_b).values, dtype=float).ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    require_seeds(int(ok.sum()), f"{var} in conditions {cond_a} and {cond_b}")
    return a[ok], b[ok]


def summary_rows(ds: xr.Dataset, variables: dict[str, str]) -> list[dict[str, Any]]:
    """A table row per condition: mean and sd over seeds of each scalar variable.

    ``variables`` maps a variable name to its column title (with units).
    """
    rows = []
    for cond in ds["condition"].values:
        row: dict[str, Any] = {"condition": str(cond)}
        sub = ds.sel(condition=cond)
        for var, title in variables.items():
            v = np.asarray(sub[var].values, dtype=float).ravel()
            v = v[np.isfinite(v)]
            row[title] = (f"{v.mean():.4g} ± {v.std(ddof=1):.2g}" if v.size > 1
                          else (f"{v.mean():.4g}" if v.size else "n/a"))
        row["seeds"] = int(sub["seed"].size)
        rows.append(row)
    return rows
