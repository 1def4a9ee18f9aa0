"""Reports of a hypothesis run: ``report.md``, ``report.json``, the figure, ``results.nc``.

The JSON summary starts with the documented contract keys
``name, verdict, test, statistic, p_value, effect_size, ci, seeds, out``
(those of the primary comparison; ``p_value`` is Holm-adjusted over all
comparisons of the hypothesis, ``p_value_raw`` is not) and adds the rest.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import xarray as xr

from cortex_resnet.core.jsonable import to_jsonable
from cortex_resnet.io.results import atomic_write_text, library_versions, save_dataset
from cortex_resnet.hypotheses.base import Analysis
from cortex_resnet.hypotheses.config import RunConfig

__all__ = ["write_report", "render_markdown", "markdown_table", "fmt"]


def fmt(x: Any, digits: int = 4) -> str:
    """Numbers for humans: 4 significant digits, p-values like 3.2e-05, inf as ∞."""
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(fmt(v, digits) for v in x) + "]"
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        f = float(x)
        if math.isnan(f):
            return "n/a"
        if math.isinf(f):
            return "∞" if f > 0 else "−∞"
        return f"{f:.{digits}g}"
    return str(x)


def _finite(x: Any) -> Any:
    """JSON-safe: NaN/inf -> None, NumPy -> Python."""
    return to_jsonable(x)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """A GitHub-flavoured Markdown table from dict rows (columns = union of keys, in order)."""
    if not rows:
        return "(no rows)\n"
    cols: list[str] = []
    for r in rows:
        cols.extend(k for k in r if k not in cols)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def summary_dict(out_dir: Path, cfg: RunConfig, analysis: Analysis, *, runtime_s: float,
                 compute_s: float, figure_rel: str | None) -> dict[str, Any]:
    hyp, main = cfg.hypothesis, analysis.main
    r = main.result
    return {
        "name": hyp.name, "verdict": analysis.verdict, "test": r.test, "statistic": r.statistic,
        "p_value": main.p_adjusted, "effect_size": r.effect_size, "ci": list(r.ci), "seeds": len(cfg.seeds),
        "out": str(out_dir),
        "claim": hyp.claim, "h0": hyp.h0, "h1": hyp.h1, "primary": main.label,
        "p_value_raw": r.p_value, "effect_name": r.effect_name, "estimate": r.estimate,
        "null_value": r.null_value, "alternative": r.alternative, "ci_level": r.ci_level,
        "alpha": cfg.spec.alpha, "seed_values": list(cfg.seeds), "quick": cfg.quick,
        "comparisons": [c.to_json() for c in analysis.comparisons], "table": analysis.table,
        "notes": analysis.notes, "extra": analysis.extra,
        "params": cfg.params.model_dump(mode="json"), "spec": str(cfg.spec_path or "(built-in defaults)"),
        "test_family": cfg.spec.test, "figure": figure_rel, "report": str(out_dir / "report.md"),
        "results": str(out_dir / "results.nc"), "runtime_s": runtime_s, "compute_s": compute_s,
        "references": list(hyp.references), "versions": library_versions(),
    }


def render_markdown(summary: dict[str, Any], cfg: RunConfig, analysis: Analysis,
                    conditions: list[dict[str, Any]]) -> str:
    """The human report (claim, design, table, tests, verdict, figure, provenance)."""
    hyp = cfg.hypothesis
    parts = [f"# Hypothesis `{hyp.name}`: **{analysis.verdict}**\n",
             f"**Claim.** {hyp.claim}\n", f"**H0.** {hyp.h0}\n", f"**H1.** {hyp.h1}\n",
             "## Design\n",
             f"- conditions × seeds: {len(conditions)} × {len(cfg.seeds)} independent tasks "
             f"(seeds {cfg.seeds[0]}..{cfg.seeds[-1]}){' — quick mode' if cfg.quick else ''}",
             f"- spec: `{summary['spec']}`; tests: {'t-tests' if cfg.spec.test == 't' else 'rank tests'}, "
             f"α = {cfg.spec.alpha}, Holm correction over {len(analysis.comparisons)} comparison(s), "
             f"two-sided {100 * analysis.main.result.ci_level:g} % CIs: "
             + ("Student/Welch t-intervals" if cfg.spec.test == "t"
                else "exact Hodges-Lehmann intervals (Walsh averages / pairwise differences)"),
             "- conditions:"]
    for c in conditions:
        rest = ", ".join(f"{k} = {fmt(v)}" for k, v in c.items() if k != "condition")
        parts.append(f"  - `{c['condition']}`" + (f": {rest}" if rest else ""))
    parts.append("- parameters: `" + json.dumps(summary["params"], sort_keys=True) + "`\n")
    parts += ["## Results (mean ± sd over seeds)\n", markdown_table(analysis.table), "## Tests\n"]
    rows = []
    for c in analysis.comparisons:
        r = c.result
        rows.append({"sub-claim": c.label, "test": f"{r.test} ({r.alternative}, vs {fmt(r.null_value)})",
                     "statistic": r.statistic, "p": r.p_value, "p (Holm)": c.p_adjusted,
                     "effect size": f"{fmt(r.effect_size, 3)} ({r.effect_name})",
                     "estimate [CI]": f"{fmt(r.estimate)} [{fmt(r.ci[0])}, {fmt(r.ci[1])}]",
                     "min effect": c.min_effect, "n": r.n, "verdict": c.verdict})
    parts.append(markdown_table(rows))
    unbounded = [c.label for c in analysis.comparisons if c.testable and not np.all(np.isfinite(c.result.ci))]
    if unbounded:
        parts.append(f"No finite exact {100 * analysis.main.result.ci_level:g} % rank interval exists at these "
                     f"seed counts (shown as [-inf, inf]; such a sub-claim cannot be *not supported*): "
                     + "; ".join(unbounded) + "\n")
    parts += ["## Verdict\n",
              f"**{analysis.verdict}** (α = {cfg.spec.alpha}). Primary comparison: {analysis.main.label} — "
              f"{analysis.main.result.test}, statistic {fmt(analysis.main.result.statistic)}, "
              f"p (Holm) = {fmt(analysis.main.p_adjusted)}, effect size {fmt(analysis.main.result.effect_size, 3)}, "
              f"estimate {fmt(analysis.main.result.estimate)} "
              f"[{fmt(analysis.main.result.ci[0])}, {fmt(analysis.main.result.ci[1])}].\n",
              "A sub-claim is *supported* when its Holm-adjusted p < α in the predicted direction, "
              "*not supported* when the CI excludes every effect of at least its smallest effect of "
              "interest in that direction, *inconclusive* otherwise; the hypothesis is supported when "
              "every sub-claim is.\n"]
    if analysis.notes:
        parts += ["### Notes\n"] + [f"- {n}" for n in analysis.notes] + [""]
    if summary.get("figure"):
        parts += ["## Figure\n", f"![{hyp.name}]({summary['figure']})\n"]
    parts += ["## Provenance\n",
              f"- runtime: {summary['runtime_s']:.1f} s (tasks {summary['compute_s']:.1f} s)",
              "- versions: " + ", ".join(f"{k} {v}" for k, v in summary["versions"].items()),
              "- references: " + "; ".join(hyp.references), ""]
    return "\n".join(parts)


def write_report(out_dir: Path, cfg: RunConfig, ds: xr.Dataset, analysis: Analysis, *,
                 runtime_s: float, compute_s: float, figure: bool = True,
                 save_results: bool = True) -> dict[str, Any]:
    """Write results.nc, the figure, report.md and (last) report.json; return the summary."""
    hyp = cfg.hypothesis
    if save_results:
        save_dataset(ds, out_dir / "results.nc")
    figure_rel = None
    if figure:
        (out_dir / "figures").mkdir(exist_ok=True)
        hyp.figure(ds, analysis, cfg.params, out_dir / "figures" / f"{hyp.name}.png")
        figure_rel = f"figures/{hyp.name}.png"
    summary = summary_dict(out_dir, cfg, analysis, runtime_s=runtime_s, compute_s=compute_s,
                           figure_rel=figure_rel)
    conditions = hyp.design(cfg.params)
    atomic_write_text(out_dir / "report.md", render_markdown(summary, cfg, analysis, conditions))
    summary = _finite(summary)
    atomic_write_text(out_dir / "report.json", json.dumps(summary, indent=2))
    return summary
