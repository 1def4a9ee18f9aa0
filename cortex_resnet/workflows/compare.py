"""Side by side: a trained unrolled net, the same weights as a rate circuit, and as a spiking circuit.

``compare_run(run_dir)`` loads a finished training run and scores the same test
inputs three ways:

1. **network** -- the trained classifier, evaluated in float64;
2. **rate** -- :func:`~cortex_resnet.bridge.to_circuit` of the trained net, run
   by the rate simulator's Euler integration (:func:`cortex_resnet.rate.simulator.integrate`,
   the engine of ``simulate``) with the encoded input ``u = encode(x)`` held
   constant, read out from the E rates at every step with the trained readout.
   Same Euler steps, same numbers: its accuracy equals the network's exactly
   (we report the largest logit difference too);
3. **spiking** -- the circuit as LIF pools (:func:`cortex_resnet.spiking.model.to_spiking`,
   signed input as currents), on a seeded subsample of the test set (Brian2
   is slower), read out with the trained readout from E-pool spike counts in a
   window, converted back to rate units. Its agreement is reported with the
   network (step K) and with the rate circuit read out over the same window.

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

from cortex_resnet.errors import SpecError
from cortex_resnet.training.experiment import CircuitModelSpec, ExperimentSpec, parse_experiment

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
    from cortex_resnet.training.loop import build_model, load_data

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
    from cortex_resnet.rate.simulator import RateState, RateSystem, integrate
    from cortex_resnet.model.stimulus import Stimulus

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
    circuit : the :class:`~cortex_resnet.model.circuit.Circuit` (``to_circuit``)
    """
    from cortex_resnet.bridge import to_circuit

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
                spiking_duration_ms: float | None = None, pool_size: int | None = None,
                n_examples_plot: int = 3, out_dir: str | Path | None = None,
                figure: str | Path | None = None, seed: int = 0,
                data_dir: str | Path | None = None, batch_size: int = 500, spiking_engine: str = "brian2",
                brian2_reference: int = 0) -> dict[str, Any]:
    """Score a trained circuit as network, rate circuit and spiking circuit (module docstring).

    Parameters
    ----------
    run_dir : a finished ``cortex-resnet train`` folder of a circuit model
    spiking_examples : size of the seeded test subsample run by the spiking backend
    spiking : run the spiking backend at all
    spiking_duration_ms : length of each spiking run (default ``max(K dt, 100 ms)``: counts
        need spikes); E-pool spikes are counted in its second half, and the rate circuit is
        run as long and read out averaged over the same window for the like-for-like
        ``spiking_vs_rate`` agreement
    pool_size : LIF neurons per rate unit (default: the circuit's ``spiking.pool_size``)
    out_dir : where ``compare.json`` and the figure ``compare.png`` go (default ``run_dir``)
    figure : another path for the figure (``.png``/``.svg``/``.pdf``)
    seed : seeds the spiking subsample and the spiking network
    spiking_engine : ``brian2`` or ``torch`` (batched: a whole test set in minutes; pass
        ``spiking_examples`` >= the test-set size to score all of it)
    brian2_reference : with the torch engine, also run this many of the spiking examples with
        Brian2 and report both engines' accuracy on them and their agreement (``brian2_reference``)

    Returns
    -------
    dict
        ``network_accuracy``, ``rate_accuracy``, ``spiking_accuracy`` (None when not
        run), ``agreement`` (fractions of identical predictions), per-step curves,
        ``max_abs_logit_diff`` (rate vs network), ``n_test``, ``n_spiking``, ``figure``.
    """
    from cortex_resnet.spiking.torch_engine import check_engine

    check_engine(spiking_engine, False)
    if brian2_reference < 0:
        raise SpecError("brian2_reference", brian2_reference, "an integer >= 0")
    if out_dir is not None and not Path(out_dir).is_dir():
        raise SpecError("--out", str(out_dir), "an existing folder for compare.json and compare.png")
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
                keep = {"r": r[:, :n_examples_plot], "x": xr[:, :n_examples_plot],
                        "index": np.arange(min(n_examples_plot, len(xb)))}
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
    if spiking and spiking_examples > 0 and circuit.step_weights is not None:
        out["spiking_skipped"] = ("untied nets map to circuits with step-dependent weights "
                                  "(areas in a chain), which run on the rate backend only")
    elif spiking and spiking_examples > 0:
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(len(y), size=min(spiking_examples, len(y)), replace=False))
        m = run.spec.model
        # counting needs spikes: at least 100 ms (a few spikes per pool at ~10 Hz), else K dt
        dur = float(spiking_duration_ms) if spiking_duration_ms else max(m.steps * m.dt_ms, 100.0)
        window = (dur / 2.0, dur)
        with torch.no_grad():
            u = run.model.encode(x[idx])
            spk = _spiking_logits(circuit, u, run.model, duration_ms=dur, window_ms=window,
                                  seed=seed, pool_size=pool_size, n_plot=n_examples_plot,
                                  u_operating=run.model.encode(x).mean(0), engine=spiking_engine)
            # the rate circuit over the same run and window: the like-for-like reference
            n_rate = int(round(dur / m.dt_ms))
            r_long = _trajectories(circuit, u, n_rate, m.dt_ms, m.input_mode, True)
            k0 = int(round(window[0] / m.dt_ms))
            rate_win = run.model.readout(r_long[k0 + 1:, :, : circuit.n_E].mean(0)).argmax(-1)
            x_long = _trajectories(circuit, u[:n_examples_plot], n_rate, m.dt_ms, m.input_mode, False)
            keep = {"r": r_long[:, :n_examples_plot], "x": x_long, "index": idx[:n_examples_plot]}
        pred_spk = spk["logits"].argmax(-1)
        yi = y[idx]
        out.update({
            "spiking_accuracy": float((pred_spk == yi).double().mean()), "n_spiking": int(len(idx)),
            "network_accuracy_on_spiking_subset": float((pred_net[idx] == yi).double().mean()),
            "rate_window_accuracy_on_spiking_subset": float((rate_win == yi).double().mean()),
            "spiking_duration_ms": dur, "spiking_window_ms": list(window), "pool_size": spk["pool_size"],
            "spikes_per_E_pool_mean": spk["spikes_per_E_pool"]})
        out["agreement"]["spiking_vs_network"] = float((pred_spk == pred_net[idx]).double().mean())
        out["agreement"]["spiking_vs_rate"] = float((pred_spk == rate_win).double().mean())
        out["spiking_engine"] = spiking_engine
        if spiking_engine == "torch" and brian2_reference > 0:
            out["brian2_reference"] = _brian2_reference(circuit, run, x, y, idx, pred_spk, brian2_reference,
                                                        dur, window, seed, pool_size)
    folder = Path(out_dir) if out_dir is not None else Path(run_dir)
    fig_path = Path(figure) if figure is not None else folder / "compare.png"
    out["figure"] = str(plot_compare(out, keep, circuit, fig_path, spiking=spk))
    from cortex_resnet.io.results import atomic_write_text

    atomic_write_text(folder / "compare.json",  # written_by: recognised as ours when replaced
                      json.dumps({"written_by": "cortex-resnet compare", **out}, indent=2, default=float) + "\n")
    return out


def _brian2_reference(circuit, run: LoadedRun, x: torch.Tensor, y: torch.Tensor, idx: np.ndarray,
                      pred_torch: torch.Tensor, n: int, dur: float, window: tuple[float, float], seed: int,
                      pool_size: int | None) -> dict[str, Any]:
    """Brian2 on the first ``n`` spiking examples: its accuracy, the torch engine's on the same
    examples, and the fraction of identical predictions (different random streams: agreement
    below 1 measures the spiking readout's own trial-to-trial variability too)."""
    sub = idx[:n]
    with torch.no_grad():
        ref = _spiking_logits(circuit, run.model.encode(x[sub]), run.model, duration_ms=dur, window_ms=window,
                              seed=seed, pool_size=pool_size, n_plot=0,
                              u_operating=run.model.encode(x).mean(0), engine="brian2")
    pred_ref, yi = ref["logits"].argmax(-1), y[sub]
    return {"n": int(len(sub)), "brian2_accuracy": float((pred_ref == yi).double().mean()),
            "torch_accuracy": float((pred_torch[:len(sub)] == yi).double().mean()),
            "agreement": float((pred_ref == pred_torch[:len(sub)]).double().mean())}


def _spiking_logits(circuit, u: torch.Tensor, clf, *, duration_ms: float,
                    window_ms: tuple[float, float], seed: int, pool_size: int | None, n_plot: int,
                    u_operating: torch.Tensor, engine: str = "brian2") -> dict[str, Any]:
    """Run ``u`` (batch, n_inputs) through the spiking circuit; read out E-pool rates (rate units)."""
    from cortex_resnet.spiking.model import to_spiking

    model = to_spiking(circuit, pool_size=pool_size, input_mode="current",  # signed u
                       u_operating=u_operating.detach().cpu().numpy())
    u_np = u.detach().cpu().numpy()
    counts = model.run(u_np, duration_ms=duration_ms, window_ms=window_ms, seed=seed, engine=engine)
    r_E = torch.as_tensor(counts.r[:, counts.is_E], dtype=torch.float64)
    out = {"logits": clf.readout(r_E), "pool_size": model.circuit.spec.spiking.pool_size,
           "spikes_per_E_pool": float(counts.counts_E.mean())}
    if n_plot:
        ds = model.simulate(u_np[:n_plot], duration_ms=duration_ms, seed=seed, decompose=True, engine=engine)
        e = ds["population"].values == "E"
        out["time_ms"] = ds["time"].values
        hz = json.loads(ds.attrs["hz_per_unit"])["E"]  # spiking r is in Hz: model units here
        out["rates_E_time"] = ds["r"].values[:, :, e].mean(-1) / hz
        out["x_E_time"] = ds["x"].values[:, :, e].mean(-1) / hz
    return out


def plot_compare(summary: dict[str, Any], traj: dict[str, torch.Tensor], circuit, path: Path,
                 spiking: dict[str, Any] | None = None) -> Path:
    """Per-step accuracy (network, rate, spiking) and ``x`` vs ``F(x)`` of a few examples (E means)."""
    import matplotlib.pyplot as plt

    from cortex_resnet.plots.base import COLUMN_WIDTH_IN, PALETTE, POP_COLORS, save_figure, style

    style()
    n_ex = traj["r"].shape[1] if traj else 0
    fig = plt.figure(figsize=(2 * COLUMN_WIDTH_IN, 4.2), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.1, 1])
    ax = top.subplots(1, 1)
    axes = [ax] + list(np.atleast_1d(bottom.subplots(1, max(n_ex, 1), sharey=True)))
    dt, K = summary["dt_ms"], summary["steps"]
    t = dt * np.arange(1, K + 1)
    acc = summary["accuracy_per_step"]
    ax.plot(t, 100 * np.asarray(acc["network"]), color=PALETTE["black"], label="network")
    ax.plot(t, 100 * np.asarray(acc["rate"]), "o", ms=3, mfc="none", color=PALETTE["blue"],
            label="rate circuit")
    if summary.get("spiking_accuracy") is not None:
        w0, w1 = summary["spiking_window_ms"]
        ax.hlines(100 * summary["spiking_accuracy"], w0, w1, color=PALETTE["vermillion"], lw=2,
                  label=f"spiking, counts in window (n = {summary['n_spiking']})")
        ax.hlines(100 * summary["rate_window_accuracy_on_spiking_subset"], w0, w1,
                  color=PALETTE["blue"], lw=1, ls="--", label="rate circuit, same window and n")
    ax.axhline(100 * summary["chance"], color="0.7", lw=0.8, ls=":", label="chance")
    ax.set_xlabel("time (ms) = step x dt")
    ax.set_xscale("log" if summary.get("spiking_accuracy") is not None else "linear")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("anytime readout: test accuracy of the E readout over time", loc="left")
    ax.set_ylim(0, 100)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    is_e = circuit.is_E
    for j in range(n_ex):
        a = axes[1 + j]
        r, xr = traj["r"][:, j].numpy(), traj["x"][:, j].numpy()
        tt = dt * np.arange(r.shape[0])
        a.plot(tt, r[:, is_e].mean(1), color=POP_COLORS["E"], label="r = x + F(x)")
        a.plot(tt, xr[:, is_e].mean(1), color=POP_COLORS["E"], ls="--", label="x")
        a.plot(tt, (r - xr)[:, is_e].mean(1), color=PALETTE["black"], ls=":", label="F(x)")
        if spiking is not None and "rates_E_time" in spiking and j < spiking["rates_E_time"].shape[1]:
            st = spiking["time_ms"]
            a.plot(st, spiking["rates_E_time"][:, j], color=PALETTE["vermillion"], lw=0.8,
                   label="spiking r")
            a.plot(st, spiking["x_E_time"][:, j], color=PALETTE["vermillion"], lw=0.8, ls="--",
                   label="spiking x")
        a.set_title(f"test example {int(traj['index'][j])} (E mean)", loc="left")
        a.set_xlabel("time (ms)")
        a.axhline(0, color="0.85", lw=0.6, zorder=0)
    if n_ex:
        axes[1].legend(loc="best")
        axes[1].set_ylabel(f"rate ({circuit.rate_units}; spiking Hz / {circuit.hz_per_unit['E']:g})")
    return save_figure(fig, path)
