"""The figure of a hypothesis: one context manager for the preamble (style, axes) and the tail
(atomic save, close), and the verdict title; each module draws only its own panels.

    with hypothesis_figure(path, ncols=2) as (a1, a2):
        a1.plot(...)
        verdict_title(a1, "amplification", analysis)
    return path
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from cortex_resnet.plots.base import COLUMN_WIDTH_IN, PALETTE, POP_COLORS, STYLE, save_figure
from cortex_resnet.hypotheses.base import Analysis

__all__ = ["hypothesis_figure", "verdict_title", "strip_plot", "PALETTE", "POP_COLORS"]


@contextmanager
def hypothesis_figure(path: str | Path, ncols: int = 1, *, width: float = 2.0,
                      height_in: float = 2.6) -> Iterator[Sequence[Any]]:
    """A row of ``ncols`` axes in the project's style, saved atomically to ``path`` on exit.

    ``width``: figure width in columns (:data:`COLUMN_WIDTH_IN` inches each); ``height_in``: inches.
    The figure is closed either way; nothing is written when the body raises.
    """
    with matplotlib.rc_context(STYLE):
        fig, axes = plt.subplots(1, ncols, figsize=(width * COLUMN_WIDTH_IN, height_in), squeeze=False)
        try:
            yield list(axes[0])
        except BaseException:
            plt.close(fig)
            raise
        save_figure(fig, path)


def verdict_title(ax: Any, name: str, analysis: Analysis, detail: str = "") -> None:
    """``NAME[ (detail)]: verdict`` as the panel's left-aligned title."""
    ax.set_title(f"{name}{f' ({detail})' if detail else ''}: {analysis.verdict}", loc="left")


def strip_plot(ax: Any, ds: xr.Dataset, var: str, *, conditions: Sequence[str] | None = None,
               color: str | None = None, label: str | None = None) -> None:
    """One dot per seed and the mean (bar) per condition of a scalar variable."""
    conds = list(conditions) if conditions is not None else [str(c) for c in ds["condition"].values]
    c = color or PALETTE["blue"]
    for i, cond in enumerate(conds):
        v = np.asarray(ds[var].sel(condition=cond).values, dtype=float).ravel()
        v = v[np.isfinite(v)]
        jitter = np.linspace(-0.12, 0.12, v.size) if v.size > 1 else np.zeros(v.size)
        ax.scatter(i + jitter, v, s=10, color=c, alpha=0.7, zorder=3, label=label if i == 0 else None)
        if v.size:
            ax.hlines(v.mean(), i - 0.25, i + 0.25, color="k", lw=1.2, zorder=4)
    ax.set_xticks(range(len(conds)))
    ax.set_xticklabels(conds)
