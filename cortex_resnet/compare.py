"""Side by side: a trained unrolled net, the same weights as a rate circuit, and as a spiking circuit.

``compare_run(run_dir)`` loads a finished training run and scores the same test
inputs three ways:

1. **network** -- the trained classifier, evaluated in float64;
2. **rate** -- :func:`~cortex_resnet.bridge.to_circuit` of the trained net, run
   by the rate simulator's Euler integration (:func:`cortex_resnet.rate.integrate`,
   the engine of ``simulate``) with the encoded input ``u = encode(x)`` held
   constant, read out from the E rates at every step with the trained readout.
   Same Euler steps, same numbers: its accuracy equals the network's exactly
   (we report the largest logit difference too);
3. **spiking** -- the circuit as LIF pools (:mod:`cortex_resnet.spiking_run`),
   on a subsample of the test set (Brian2 is slower), read out from E-pool
   spike counts in a window converted back to rate units.

``x`` (the circuit with recurrence removed, same input) and ``F(x) = r - x`` of
a few examples go into the side-by-side figure with the per-step accuracy
curves.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import SpecError
from .experiment import CircuitModelSpec, ExperimentSpec, parse_experiment

__all__ = ["LoadedRun", "load_run", "rate_logits", "compare_run", "plot_compare"]


@dataclass
class LoadedRun:
    """A finished run: its experiment, dataset and the trained classifier (float64, CPU)."""

    spec: ExperimentSpec
    dataset: Any
    model: torch.nn.Module
    info: dict[str, Any]
    run_dir: Path


def load_run(run_dir: str | Path, data_dir: str | Path | None = None) -> LoadedRun:
    """Load ``config.toml`` and ``model.pt`` (``weights_only``) of a run folder.

    Raises
    ------
    SpecError
        Not a finished run folder, or not a circuit model.
    """
    from .train import build_model, load_data

    run_dir = Path(run_dir)
    cfg, weights = run_dir / "config.toml", run_dir / "model.pt"
    if not cfg.is_file() or not weights.is_file():
        raise SpecError("run_dir", str(run_dir), "a finished training run folder (config.toml and "
                        "model.pt, written by `cortex-resnet train` when the run completes)")
    spec = parse_experiment(tomllib.loads(cfg.read_text()), source=str(cfg))
    if not isinstance(spec.model, CircuitModelSpec):
        raise SpecError("model.kind", spec.model.kind, "'circuit': compare runs an unrolled circuit "
                        "as rate and spiking circuits (a baseline has none)")
    try:
        saved = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        raise SpecError("model.pt", str(weights), f"a readable weights file ({type(err).__name__}: "
                        f"{str(err)[:160]})") from None
    if not isinstance(saved, dict) or saved.get("format") != "cortex_resnet.train.model":
        raise SpecError("model.pt", str(weights), "a cortex_resnet.train.model file")
    dataset = load_data(spec, data_dir)
    model, info = build_model(spec, dataset)
    model.load_state_dict(saved["model"])
    model = model.double().eval()
    return LoadedRun(spec, dataset, model, info, run_dir)


def _trajectories(circuit, u: torch.Tensor, steps: int, dt_ms: float, input_mode: str,
                  recurrence: bool) -> torch.Tensor:
    """The rate simulator's Euler trajectory (K + 1, batch, N), float64, for the net's input convention."""
    from .rate import RateState, RateSystem, integrate
    from .stimulus import Stimulus

    system = RateSystem(circuit, torch.float64, "cpu", recurrence=recurrence)
    state = None
    arr = u[None]
    if input_mode == "pulse":  # r_0 = x_0 = phi(B u + b), then u = 0
        state = RateState(0.0, 0, system.phi(system.drive(u, None)))
        arr = torch.zeros_like(u)[None]
    stim = Stimulus.from_array(arr, dt_ms, dtype=torch.float64)
    return integrate(system, stim, steps * dt_ms, dt_ms, method="euler", state=state).r


@torch.no_grad()
def rate_logits(run: LoadedRun, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]:
    """Simulate the trained net as a rate circuit on inputs ``x``.

    Returns
    -------
    logits : (K, batch, n_classes) from the E rates at steps 1..K
    r, xr : (K + 1, batch, N) rates with and without recurrence (``F(x) = r - xr``)
    circuit : the :class:`~cortex_resnet.circuit.Circuit` (``to_circuit``)
    """
    from .bridge import to_circuit

    clf = run.model
    net = clf.net
    circuit = to_circuit(net)
    u = clf.encode(x.double())
    m = run.spec.model
    r = _trajectories(circuit, u, m.steps, m.dt_ms, m.input_mode, True)
    xr = _trajectories(circuit, u, m.steps, m.dt_ms, m.input_mode, False)
    logits = clf.readout(r[1:, :, : net.n_E])
    return logits, r, xr, circuit


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> list[float]:
    return (logits.argmax(-1) == y).double().mean(dim=1).tolist()


def compare_run(run_dir: str | Path, *, spiking_examples: int = 50, spiking: bool = True,
                n_examples_plot: int = 3, figure: str | Path | None = None, seed: int = 0,
                data_dir: str | Path | None = None, batch_size: int = 500) -> dict[str, Any]:
    """Score a trained circuit as network, rate circuit and spiking circuit (module docstring).

    Parameters
    ----------
    run_dir : a finished ``cortex-resnet train`` folder of a circuit model
    spiking_examples : size of the seeded test subsample run by the spiking backend
    spiking : run the spiking backend at all
    figure : where to write the side-by-side figure (default ``run_dir/compare.png``)
    seed : seeds the spiking subsample and the spiking network

    Returns
    -------
    dict
        ``network_accuracy``, ``rate_accuracy``, ``spiking_accuracy`` (None when not
        run), ``agreement`` (fractions of identical predictions), per-step curves,
        ``max_abs_logit_diff`` (rate vs network), ``n_test``, ``n_spiking``, ``figure``.
    """
    run = load_run(run_dir, data_dir)
    ds = run.dataset
    x = torch.as_tensor(ds.x_test, dtype=torch.float64)
    y = torch.as_tensor(ds.y_test)
    net_parts, rate_parts = [], []
    keep: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for i in range(0, len(y), batch_size):
            xb = x[i:i + batch_size]
            net_parts.append(run.model(xb))
            lg, r, xr, circuit = rate_logits(run, xb)
            rate_parts.append(lg)
            if i == 0:
                keep = {"r": r[:, :n_examples_plot], "x": xr[:, :n_examples_plot]}
    net_logits, r_logits = torch.cat(net_parts, dim=1), torch.cat(rate_parts, dim=1)
    pred_net, pred_rate = net_logits[-1].argmax(-1), r_logits[-1].argmax(-1)
    out: dict[str, Any] = {
        "run": str(run_dir), "dataset": ds.name, "variant": run.spec.model.variant,
        "network_accuracy": _accuracy(net_logits, y)[-1], "rate_accuracy": _accuracy(r_logits, y)[-1],
        "spiking_accuracy": None,
        "agreement": {"rate_vs_network": float((pred_net == pred_rate).double().mean()),
                      "spiking_vs_network": None, "spiking_vs_rate": None},
        "accuracy_per_step": {"network": _accuracy(net_logits, y), "rate": _accuracy(r_logits, y)},
        "max_abs_logit_diff": float((net_logits - r_logits).abs().max()),
        "n_test": int(len(y)), "n_spiking": 0, "steps": run.spec.model.steps,
        "dt_ms": run.spec.model.dt_ms, "chance": ds.chance,
    }
    spk = None
    if spiking and spiking_examples > 0:
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(len(y), size=min(spiking_examples, len(y)), replace=False))
        u = run.model.encode(x[idx]).detach()
        spk = _spiking_logits(circuit, u, run.model.readout, seed=seed,
                               duration_ms=run.spec.model.steps * run.spec.model.dt_ms)
        pred_spk = spk["logits"].argmax(-1)
        yi = y[idx]
        out.update({
            "spiking_accuracy": float((pred_spk == yi).double().mean()), "n_spiking": int(len(idx)),
            "network_accuracy_on_spiking_subset": float((pred_net[idx] == yi).double().mean()),
            "spiking_window_ms": spk.get("window_ms"), "spiking_info": spk.get("info", {})})
        out["agreement"]["spiking_vs_network"] = float((pred_spk == pred_net[idx]).double().mean())
        out["agreement"]["spiking_vs_rate"] = float((pred_spk == pred_rate[idx]).double().mean())
    fig_path = Path(figure) if figure is not None else Path(run_dir) / "compare.png"
    out["figure"] = str(plot_compare(out, keep, circuit, fig_path, spiking=spk))
    from .results import atomic_write_text

    atomic_write_text(Path(run_dir) / "compare.json", json.dumps(out, indent=2, default=float) + "\n")
    return out


def plot_compare(summary: dict[str, Any], traj: dict[str, torch.Tensor], circuit, path: Path,
                 spiking: dict[str, Any] | None = None) -> Path:
    """Per-step accuracy (network, rate, spiking) and ``x`` vs ``F(x)`` of a few examples (E means)."""
    import matplotlib.pyplot as plt

    from .plots import COLUMN_WIDTH_IN, PALETTE, POP_COLORS, save_figure, style

    style()
    n_ex = traj["r"].shape[1] if traj else 0
    fig, axes = plt.subplots(1, 1 + max(n_ex, 1), figsize=(2 * COLUMN_WIDTH_IN, 2.2),
                             gridspec_kw={"width_ratios": [1.4] + [1] * max(n_ex, 1)})
    ax = axes[0]
    dt, K = summary["dt_ms"], summary["steps"]
    t = dt * np.arange(1, K + 1)
    acc = summary["accuracy_per_step"]
    ax.plot(t, 100 * np.asarray(acc["network"]), color=PALETTE["black"], label="network")
    ax.plot(t, 100 * np.asarray(acc["rate"]), "o", ms=3, mfc="none", color=PALETTE["blue"],
            label="rate circuit")
    if summary.get("spiking_accuracy") is not None:
        ax.plot([t[-1]], [100 * summary["spiking_accuracy"]], "s", color=PALETTE["vermillion"],
                label=f"spiking (n = {summary['n_spiking']})")
    ax.axhline(100 * summary["chance"], color="0.7", lw=0.8, ls=":", label="chance")
    ax.set_xlabel("time (ms) = step x dt")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("anytime readout", loc="left")
    ax.legend(loc="lower right")
    is_e = circuit.is_E
    for j in range(n_ex):
        a = axes[1 + j]
        r, xr = traj["r"][:, j].numpy(), traj["x"][:, j].numpy()
        tt = dt * np.arange(r.shape[0])
        a.plot(tt, r[:, is_e].mean(1), color=POP_COLORS["E"], label="r = x + F(x)")
        a.plot(tt, xr[:, is_e].mean(1), color=POP_COLORS["E"], ls="--", label="x")
        a.plot(tt, (r - xr)[:, is_e].mean(1), color=PALETTE["black"], ls=":", label="F(x)")
        if spiking is not None and j < spiking["rates_E_time"].shape[1]:
            st = spiking["time_ms"]
            a.plot(st, spiking["rates_E_time"][:, j], color=POP_COLORS["E"], alpha=0.5, lw=0.8,
                   label="spiking r (rate units)")
        a.set_title(f"example {j}: E mean", loc="left")
        a.set_xlabel("time (ms)")
        a.axhline(0, color="0.85", lw=0.6, zorder=0)
    if n_ex:
        axes[1].legend(loc="best")
        axes[1].set_ylabel("rate (a.u.)")
    return save_figure(fig, path)
