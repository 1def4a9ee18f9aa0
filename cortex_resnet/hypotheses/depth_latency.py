"""``depth-latency``: how deep can cortex be? Time to a correct readout, recurrent vs feedforward chain.

The leaky recurrent circuit ``tau dr/dt = -r + phi(W r + h)`` settles to the
steady state ``r*``. The *equivalent feedforward chain* computes the same
``r*`` with the same weights and no leak: layer 0 is ``phi(h)`` (the
input-driven part) and layer ``k`` is ``phi(W r_{k-1} + h)`` -- the unrolled
circuit with ``alpha = 1`` (a plain net, :func:`~cortex_resnet.rate.simulator.euler_step`),
one processing delay ``layer_delay_ms`` per layer (about 10 ms per cortical
stage: Nowak & Bullier 1997; Thorpe & Fabre-Thorpe 2001). It converges when
the spectral radius of ``D W`` is below 1 (true for the canonical microcircuit).

Task: stimuli are noisy versions of ``n_classes`` random input prototypes;
a linear readout of the pyramidal rates is fitted (ridge) to the steady states
of training stimuli. A readout is *correct* from the first time (or layer)
after which test accuracy stays at or above ``criterion`` times its
steady-state accuracy. Latencies: ``t_rec`` (recurrent, ms) and
``t_chain = (K + 1) layer_delay_ms`` for the first correct layer ``K``.
Each seed is a new random circuit and task; the test is paired by seed on
``log(t_chain / t_rec)``. The report also gives the break-even delay per layer
``t_rec / (K + 1)``: a chain is faster only with shorter layers than that.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import xarray as xr
from pydantic import Field

from cortex_resnet.model.fixedpoint import steady_state
from cortex_resnet.model.stimulus import Stimulus
from cortex_resnet.rate.simulator import RateSystem, euler_step, integrate
from cortex_resnet.hypotheses._figures import PALETTE, hypothesis_figure
from cortex_resnet.hypotheses.base import Analysis, AnalysisOptions, Comparison, summary_rows
from cortex_resnet.hypotheses._circuits import circuit_hypothesis, CircuitParams, circuit_for_seed

__all__ = ["HYPOTHESIS", "DepthLatencyParams", "first_stable_index"]


class DepthLatencyParams(CircuitParams):
    """Task sizes, the correctness criterion, the chain's delay per layer (ms) and the run length."""

    model: str = "models/canonical_microcircuit.toml"
    weight_cv: float | None = Field(default=0.2, ge=0.0, le=2.0)
    overrides: dict[str, Any] = {"input.n_inputs": 8, "input.projection": "random"}
    n_classes: int = Field(default=4, ge=2, le=100)
    n_train: int = Field(default=200, ge=10, le=100_000)
    n_test: int = Field(default=200, ge=10, le=100_000)
    input_noise: float = Field(default=0.35, ge=0.0)
    ridge: float = Field(default=1e-3, gt=0.0)
    criterion: float = Field(default=0.95, gt=0.0, le=1.0)
    layer_delay_ms: float = Field(default=10.0, gt=0.0)
    max_layers: int = Field(default=60, ge=1, le=10_000)
    duration_ms: float = Field(default=300.0, gt=0.0)
    dt_ms: float = Field(default=0.1, gt=0.0)
    record_every_ms: float = Field(default=0.5, gt=0.0)
    min_log_ratio: float = Field(default=math.log(1.1), ge=0.0)


def _design(params: DepthLatencyParams) -> list[dict[str, Any]]:
    return [{"condition": "recurrent"}, {"condition": "chain"}]


def first_stable_index(ok: np.ndarray) -> int:
    """First index from which ``ok`` stays True to the end; ``len(ok)`` if it never does."""
    ok = np.asarray(ok, bool)
    if ok.size == 0 or not ok[-1]:
        return ok.size
    bad = np.nonzero(~ok)[0]
    return int(bad[-1] + 1) if bad.size else 0


def _task_data(p: dict[str, Any], n_inputs: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    protos = rng.uniform(0.0, 1.0, size=(p["n_classes"], n_inputs))

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, p["n_classes"], size=n)
        return np.clip(protos[y] + p["input_noise"] * rng.standard_normal((n, n_inputs)), 0.0, None), y

    return (*draw(p["n_train"]), *draw(p["n_test"]))


def _fit_readout(rE: np.ndarray, y: np.ndarray, n_classes: int, ridge: float) -> np.ndarray:
    X = np.hstack([rE, np.ones((rE.shape[0], 1))])
    Y = np.eye(n_classes)[y]
    lam = ridge * np.trace(X.T @ X) / X.shape[1]
    return np.linalg.solve(X.T @ X + lam * np.eye(X.shape[1]), X.T @ Y)


def _accuracy(rE: np.ndarray, beta: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(rE @ beta[:-1] + beta[-1], axis=-1) == y))


def _recurrent_latency(system: RateSystem, u: torch.Tensor, r_star: np.ndarray, p: dict[str, Any],
                       accuracy: Callable[[np.ndarray], float], target: float) -> dict[str, Any]:
    """Euler run of the rate simulator from ``r = 0`` under constant input ``u`` (batch, n_inputs);
    the readout's accuracy every ``record_every_ms`` and the latency to a stable correct readout (ms)."""
    dt = p["dt_ms"]
    stride = max(1, int(round(p["record_every_ms"] / dt)))
    stim = Stimulus.from_array(u[None], dt_ms=p["duration_ms"], dtype=torch.float64)
    run = integrate(system, stim, p["duration_ms"], dt, record_stride=stride)
    acc = np.asarray([accuracy(r) for r in run.r.numpy()])
    k = first_stable_index(acc >= target)
    return {"latency_ms": k * dt * stride if k < acc.size else float("nan"), "censored": float(k >= acc.size),
            "accuracy": acc.tolist(), "step_ms": dt * stride,
            "final_error": float(np.max(np.abs(run.state.r.numpy() - r_star)))}


def _chain_latency(system: RateSystem, drive: torch.Tensor, r_star: np.ndarray, p: dict[str, Any],
                   accuracy: Callable[[np.ndarray], float], target: float) -> dict[str, Any]:
    """The equivalent feedforward chain: layer 0 is ``phi(drive)``, layer ``k`` one step of
    :func:`euler_step` with ``alpha = 1`` (a layer, not a time step: the rate simulator's loop
    takes ``alpha = dt / tau``); stops at the first non-finite or runaway (> 1e6) layer."""
    rec = system.recurrent_op()
    r = system.phi(drive)
    accs = [accuracy(r.numpy())]
    for _ in range(p["max_layers"]):
        r = euler_step(r, drive, rec, 1.0, system.phi)
        if not bool(torch.isfinite(r).all()) or float(r.abs().max()) > 1e6:
            break
        accs.append(accuracy(r.numpy()))
    acc = np.asarray(accs)
    k = first_stable_index(acc >= target)
    delay = p["layer_delay_ms"]
    converged = k < acc.size and len(accs) == p["max_layers"] + 1
    return {"latency_ms": (k + 1) * delay if converged else (p["max_layers"] + 1) * delay,
            "censored": float(not converged), "layers": float(k + 1) if converged else float("nan"),
            "accuracy": acc.tolist(), "step_ms": delay,
            "final_error": float(np.max(np.abs(r.numpy() - r_star)))}


def _task(prepared: dict[str, Any], condition: dict[str, Any], seed: int) -> dict[str, Any]:
    c = circuit_for_seed(prepared, seed)
    rng = np.random.default_rng([int(seed), 1])
    u_tr, y_tr, u_te, y_te = _task_data(prepared, c.n_inputs, rng)
    e = c.is_E
    r_tr = steady_state(c, u_tr).numpy()
    r_te = steady_state(c, u_te).numpy()
    beta = _fit_readout(r_tr[:, e], y_tr, prepared["n_classes"], prepared["ridge"])
    acc_final = _accuracy(r_te[:, e], beta, y_te)
    target = prepared["criterion"] * acc_final
    system = RateSystem(c, torch.float64, "cpu")
    u_te_t = torch.as_tensor(u_te, dtype=torch.float64)
    drive = system.drive(u_te_t, None)
    out: dict[str, Any] = {"acc_final": acc_final, "chance": 1.0 / prepared["n_classes"],
                           "acc_input_only": _accuracy(c.phi(drive).numpy()[:, e], beta, y_te)}
    if condition["condition"] == "recurrent":
        out |= _recurrent_latency(system, u_te_t, r_te, prepared, lambda r: _accuracy(r[:, e], beta, y_te), target)
    else:
        out |= _chain_latency(system, drive, r_te, prepared, lambda r: _accuracy(r[:, e], beta, y_te), target)
    return out


def _analyze(ds: xr.Dataset, params: DepthLatencyParams, opt: AnalysisOptions) -> Analysis:
    t_rec = np.asarray(ds["latency_ms"].sel(condition="recurrent").values, float)
    t_ff = np.asarray(ds["latency_ms"].sel(condition="chain").values, float)
    ok = np.isfinite(t_rec) & np.isfinite(t_ff)
    log_ratio = np.log(t_ff[ok]) - np.log(t_rec[ok])
    res = opt.compare(log_ratio, null_value=0.0, alternative="greater")
    comps = [Comparison(f"recurrent circuit correct sooner than the plain chain "
                        f"({params.layer_delay_ms:g} ms per layer): log(t_chain / t_rec) > 0", res,
                        params.min_log_ratio)]
    table = summary_rows(ds, {"latency_ms": "latency to correct readout (ms)", "layers": "chain layers needed",
                              "acc_final": "steady-state accuracy", "acc_input_only": "accuracy from x = phi(h) alone",
                              "censored": "never correct (fraction)", "final_error": "max |r_end - r*|"})
    layers = np.asarray(ds["layers"].sel(condition="chain").values, float)[ok]
    breakeven = t_rec[ok] / layers
    notes = [f"Break-even delay per layer t_rec/(K+1): {np.nanmean(breakeven):.3g} ± {np.nanstd(breakeven, ddof=1):.2g} ms "
             "(mean ± sd over seeds); a feedforward chain is faster only if each layer costs less.",
             f"Equivalent depth of the recurrent circuit: the chain needs {np.nanmean(layers):.3g} layers on average "
             f"for what the circuit reaches in {np.nanmean(t_rec[ok]):.3g} ms.",
             "Chain latencies are model arithmetic, (K + 1) x layer_delay_ms: change layer_delay_ms in the spec "
             "to test another delay per stage."]
    cens = int(np.sum(~ok))
    if cens:
        notes.append(f"{cens} seed(s) never reached a correct readout in one of the conditions (excluded).")
    return Analysis(comps, table, notes, extra={"breakeven_delay_ms": breakeven.tolist()})


def _figure(ds: xr.Dataset, analysis: Analysis, params: DepthLatencyParams, path: Path) -> Path:
    with hypothesis_figure(path, width=1.5) as (ax,):
        for cond, color, lab in (("recurrent", PALETTE["blue"], "recurrent circuit (continuous time)"),
                                 ("chain", PALETTE["vermillion"], f"plain chain, {params.layer_delay_ms:g} ms/layer")):
            sub = ds.sel(condition=cond)
            for i in range(sub["seed"].size):
                s = sub.isel(seed=i)
                acc = np.asarray(s["accuracy"].values, float)
                acc = acc[np.isfinite(acc)]
                step = float(s["step_ms"])
                t = (np.arange(acc.size) + (1 if cond == "chain" else 0)) * step
                ax.plot(t, acc, color=color, alpha=0.6, lw=1, label=lab if i == 0 else None,
                        drawstyle="steps-post" if cond == "chain" else "default")
                ax.axvline(float(s["latency_ms"]), color=color, lw=0.5, ls=":")
        ax.axhline(float(ds["chance"].values.ravel()[0]), color="0.6", lw=0.6, ls="--", label="chance")
        ax.set_xlim(0, min(params.duration_ms, float(np.nanmax(ds["latency_ms"].values)) * 2.0))
        ax.set_xlabel("time after stimulus onset (ms)")
        ax.set_ylabel("readout accuracy")
        ax.set_title(f"depth-latency: {analysis.verdict} (dotted: time to correct)", loc="left")
        ax.legend(loc="lower right")
    return Path(path)


HYPOTHESIS = circuit_hypothesis(
    name="depth-latency",
    claim="A leaky recurrent circuit reaches a correct readout sooner than the equivalent feedforward "
          "chain (same weights, no leak, one processing delay per layer) computing the same steady state.",
    h0="t_chain <= t_rec: the chain with the stated delay per layer is as fast or faster.",
    h1="log(t_chain / t_rec) > 0 across random circuits and tasks (paired by seed).",
    runtime={"quick": "~15 s", "full": "~2 min"},
    references=("Nowak & Bullier (1997) in Cerebral Cortex vol 12, 205-241 (latencies per stage)",
                "Thorpe & Fabre-Thorpe (2001) Science 291:260",
                "Liao & Poggio (2016) arXiv:1604.03640 (recurrent nets as deep residual nets)"),
    params_model=DepthLatencyParams,
    design=_design,
    task=_task,
    analyze=_analyze,
    figure=_figure,
    var_dims={"accuracy": ("step",)},
)
