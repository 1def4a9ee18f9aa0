"""The figure of ``tuned-amplification``: tuning curves of r and x per circuit, and the width sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from cortex_resnet.hypotheses._figures import PALETTE, hypothesis_figure, verdict_title
from cortex_resnet.hypotheses.base import Analysis

__all__ = ["tuned_figure"]

_COLORS = {"tuned": PALETTE["blue"], "all-to-all": PALETTE["orange"], "ring": PALETTE["green"]}


def _curves(ax: Any, ds: xr.Dataset, cond: str, color: str) -> None:
    """r (solid) and x (dashed) of the first seed, each divided by r's peak; offsets in fractions of the period."""
    sel = ds.sel(condition=cond).isel(seed=0)
    d, r, x = (np.asarray(sel[v].values, float) for v in ("d_profile", "r_profile", "x_profile"))
    ok = np.isfinite(d) & np.isfinite(r) & np.isfinite(x)
    if not ok.any() or np.nanmax(r[ok]) <= 0:
        return
    d, r, x = d[ok], r[ok], x[ok]
    span = 2 * max(abs(d.min()), abs(d.max()))  # the ring's period (offsets cover [-P/2, P/2))
    peak = r.max()
    ax.plot(d / span, r / peak, color=color, label=f"{cond}: r")
    ax.plot(d / span, x / peak, color=color, ls="--", label=f"{cond}: x")


def tuned_figure(ds: xr.Dataset, analysis: Analysis, params: Any, path: Path) -> Path:
    """Left: E tuning curves (r solid, x dashed) of tuned, all-to-all and ring circuits; right: the
    tuned circuit's width ratios and fraction left against its recurrent width."""
    with hypothesis_figure(path, 2, width=2) as (a1, a2):
        for cond, color in _COLORS.items():
            _curves(a1, ds, cond, color)
        a1.set_xlabel("offset from the stimulus (fraction of the ring)")
        a1.set_ylabel("E rate / peak of r")
        a1.set_xlim(-0.5, 0.5)
        verdict_title(a1, "tuned-amplification", analysis)
        a1.legend(loc="upper right", fontsize=6)
        conds = [str(c) for c in ds["condition"].values if str(c).startswith("tuned sigma_rec=")]
        if conds:
            s = np.array([float(ds["sigma_rec"].sel(condition=c)) for c in conds])
            o = np.argsort(s)
            for var, label, color in (("width_ratio", "FWHM r/x", PALETTE["blue"]),
                                      ("sigma_ratio", "fitted sigma r/x", PALETTE["black"]),
                                      ("remaining", "x/r left at preferred", PALETTE["orange"])):
                v = np.array([np.nanmean(ds[var].sel(condition=c).values) for c in conds])
                a2.plot(s[o], v[o], marker="o", color=color, label=label)
            a2.axhspan(1 - params.width_margin, 1 + params.width_margin, color=PALETTE["green"], alpha=0.15,
                       label="width kept")
            a2.axhspan(params.remaining_low, params.remaining_high, color=PALETTE["orange"], alpha=0.1,
                       label="published x/r")
            a2.set_xlabel("recurrent width sigma_rec (deg, every pathway)")
            a2.set_ylabel("ratio")
            a2.set_title("tuned circuit: recurrent width sweep", loc="left")
            a2.legend(loc="best", fontsize=6)
    return Path(path)
