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
3. **spiking** -- the circuit as LIF pools (:func:`cortex_resnet.spiking.simulator.to_spiking`,
   signed input as currents), by default on the WHOLE test set with the batched torch
   engine (:mod:`cortex_resnet.spiking.scoring`), read out with the trained
   readout from E-pool spike counts in a window, converted back to rate units. Its
   agreement is reported with the network (step K) and with the rate circuit read out
   over the same window; the *anytime* curves give the accuracy of all three against
   the readout time (windows ``[t/2, t)``), and Brian2 can rerun a subsample as the
   reference (``brian2_reference``).

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
from tqdm.auto import tqdm

from cortex_resnet.errors import SpecError
from cortex_resnet.hypotheses.intervals import paired_accuracy_interval
from cortex_resnet.io.results import atomic_write_text
from cortex_resnet.spiking.mapping import FITTED
from cortex_resnet.spiking.torch_engine import check_engine
from cortex_resnet.training.experiment import CircuitModelSpec, ExperimentSpec, parse_experiment
from cortex_resnet.spiking.scoring import brian2_reference as _brian2_reference
from cortex_resnet.spiking.scoring import check_pool_size, check_window_start, rate_window_logits, spiking_traces
from cortex_resnet.spiking.scoring import spiking_twin
from cortex_resnet.spiking.scoring import spiking_scores as _spiking_scores
from cortex_resnet.bridge import to_circuit
from cortex_resnet.model.stimulus import Stimulus
from cortex_resnet.rate.simulator import RateState, RateSystem, integrate
from cortex_resnet.training.loop import build_model, load_data
from cortex_resnet.workflows.column import training_change
from cortex_resnet.workflows.compare_plot import plot_compare

__all__ = ["LoadedRun", "MAPPINGS", "compare_run", "load_run", "operating_inputs", "plot_compare", "rate_logits"]

MAPPINGS = ("fit", "fit_population", "gain")  # spiking.weight_scaling of the twin (identity: --naive)


@dataclass
class LoadedRun:
    """A finished run: its experiment, dataset and the trained classifier (float64, CPU)."""

    spec: ExperimentSpec
    dataset: Any
    model: torch.nn.Module
    info: dict[str, Any]
    run_dir: Path

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return f"LoadedRun({str(self.run_dir)[-60:]!r}: {self.spec.name!r}, {type(self.model).__name__})"


def load_run(run_dir: str | Path, data_dir: str | Path | None = None) -> LoadedRun:
    """Load ``config.toml`` and ``model.pt`` (``weights_only``) of a run folder.

    Raises
    ------
    SpecError
        Not a finished run folder, or not a circuit model.
    """

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

    clf = run.model
    net = clf.net
    circuit = to_circuit(net)
    u = clf.encode(x.double())
    m = run.spec.model
    r = _trajectories(circuit, u, m.steps, m.dt_ms, m.input_mode, True)
    xr = _trajectories(circuit, u, m.steps, m.dt_ms, m.input_mode, False)
    logits = clf.readout(clf.select(r[1:]))
    return logits, r, xr, circuit


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> list[float]:
    return (logits.argmax(-1) == y).double().mean(dim=1).tolist()


def compare_run(run_dir: str | Path, *, spiking_examples: int | None = None, spiking: bool = True,
                spiking_duration_ms: float | None = None, pool_size: int | None = None,
                n_examples_plot: int = 3, out_dir: str | Path | None = None,
                figure: str | Path | None = None, seed: int = 0,
                data_dir: str | Path | None = None, batch_size: int = 500, spiking_engine: str = "torch",
                brian2_reference: int = 0, spiking_dtype: str = "float32", progress: bool = False,
                naive: bool = False, mapping: str = "gain", fit_samples: int = 256,
                window_start_ms: float | None = None) -> dict[str, Any]:
    """Score a trained circuit as network, rate circuit and spiking circuit (module docstring).

    Parameters
    ----------
    run_dir : a finished ``cortex-resnet train`` folder of a circuit model
    spiking_examples : test examples run as a spiking network (default None: the whole test set;
        fewer: a seeded subsample)
    spiking : run the spiking circuit at all
    spiking_duration_ms, window_start_ms : length T of each spiking run (default ``max(K dt, 100 ms)``:
        counts need spikes); the reported readout counts E-pool spikes in ``[window_start_ms, T)`` (default
        ``T/2``; :func:`~cortex_resnet.spiking.scoring.check_window_start`), the anytime curve in ``[t/2, t)``
        for a grid of ``t``; the rate circuit is run as long and read out over the same windows (like for like)
    pool_size : LIF neurons per rate unit, 1 to 10 000 (default: the circuit's ``spiking.pool_size``)
    out_dir : where ``compare.json`` and the figure ``compare.png`` go (default ``run_dir``)
    figure : another path for the figure (``.png``/``.svg``/``.pdf``)
    seed : seeds the spiking subsample and the spiking network
    spiking_engine : ``torch`` (batched, default) or ``brian2``
    brian2_reference : with the torch engine, also run this many of the spiking examples with
        Brian2 and report both engines' accuracy on them and their agreement
    spiking_dtype : the torch engine's precision (float32: scoring; float64: Brian2's arithmetic)
    progress : progress bars on stderr
    naive : also score the naive conversion (weights copied onto the LIF pools without the
        operating-point gain scaling: ``spiking.weight_scaling = "identity"``) on the same examples
    mapping, fit_samples : rate units -> LIF pools (``spiking.weight_scaling``, :func:`operating_inputs`):
        ``gain`` (default: linearised at the mean test input), ``fit`` (per unit) or ``fit_population``
        fitted over ``fit_samples`` training inputs

    Returns
    -------
    dict
        ``network_accuracy``, ``rate_accuracy``, ``spiking_accuracy`` (None when not run),
        ``spiking_examples``, ``network_spiking_gap``, ``agreement``, per-step curves, the
        ``anytime`` curves, ``max_abs_logit_diff`` (rate vs network), ``n_test``, ``figure``,
        ``training_change`` (pathways, ISN per layer); ``spiking_twin`` says how the net became pools (``tied``: the circuit itself; ``stage chain``:
        an untied net's stages, :mod:`cortex_resnet.spiking.chain`); with ``naive``, ``naive``
        (accuracy, gap, spikes, anytime curve of the naive conversion).
    """
    _check_args(spiking_engine, brian2_reference, out_dir, spiking_examples, spiking_dtype, mapping, fit_samples,
                pool_size)
    run = load_run(run_dir, data_dir)
    duration = _spiking_duration(run, spiking_duration_ms, window_start_ms)
    x = torch.as_tensor(run.dataset.x_test, dtype=torch.float64)
    y = torch.as_tensor(run.dataset.y_test)
    out, net_logits, keep, circuit = _network_and_rate(run, x, y, batch_size, n_examples_plot, progress)
    out["run"], out["training_change"] = str(run_dir), training_change(run)  # pathways, ISN per layer
    spk = None
    if spiking and spiking_examples != 0:
        opts = {"duration_ms": duration, "window_start_ms": window_start_ms, "seed": seed, "pool_size": pool_size,
                "engine": spiking_engine, "dtype": spiking_dtype, "progress": progress, "n_plot": n_examples_plot, "mapping": mapping, "naive": naive,
                "u_operating": operating_inputs(run, mapping, fit_samples, seed), "brian2": brian2_reference}
        spk, keep = _spiking_runs(run, circuit, x, y, spiking_examples, net_logits, out, opts)
    folder = Path(out_dir) if out_dir is not None else Path(run_dir)
    out["figure"] = str(plot_compare(out, keep, circuit, Path(figure) if figure is not None else
                                     folder / "compare.png", spiking=spk))
    atomic_write_text(folder / "compare.json",  # written_by: recognised as ours when replaced
                      json.dumps({"written_by": "cortex-resnet compare", **out}, indent=2, default=float) + "\n")
    return out


def _spiking_runs(run: LoadedRun, circuit, x: torch.Tensor, y: torch.Tensor, spiking_examples: int | None,
                  net_logits: torch.Tensor, out: dict[str, Any], opts: dict[str, Any]) -> tuple[dict, dict]:
    """The spiking twin on the whole test set or a seeded subsample, the naive conversion and the
    Brian2 reference where asked for; fills ``out``."""
    n = len(y) if spiking_examples is None else min(spiking_examples, len(y))
    idx = np.sort(np.random.default_rng(opts["seed"]).choice(len(y), size=n, replace=False))
    spk, keep = _spiking_part(run, circuit, x, y, idx, net_logits, out, opts)
    if opts["naive"]:
        out["naive"] = _naive_part(run, circuit, x, y, idx, net_logits, opts)
    if opts["engine"] == "torch" and opts["brian2"] > 0:
        out["brian2_reference"] = _brian2_part(run, circuit, x, y, idx[:opts["brian2"]], spk, opts)
    return spk, keep


def _check_args(engine: str, brian2_reference: int, out_dir: Any, spiking_examples: int | None, dtype: str,
                mapping: str, fit_samples: int, pool_size: int | None) -> None:
    """SpecError naming the field for a bad option (before anything is loaded or written)."""
    check_engine(engine, False)
    check_pool_size(pool_size)
    if mapping not in MAPPINGS:
        raise SpecError("mapping", mapping, ", ".join(MAPPINGS))
    if fit_samples < 1:
        raise SpecError("fit_samples", fit_samples, "an integer >= 1")
    if brian2_reference < 0:
        raise SpecError("brian2_reference", brian2_reference, "an integer >= 0")
    if spiking_examples is not None and spiking_examples < 0:
        raise SpecError("spiking_examples", spiking_examples, "an integer >= 0, or None for the whole test set")
    if dtype not in ("float32", "float64"):
        raise SpecError("spiking_dtype", dtype, "float32 or float64")
    if out_dir is not None and not Path(out_dir).is_dir():
        raise SpecError("--out", str(out_dir), "an existing folder for compare.json and compare.png")


def _spiking_duration(run: LoadedRun, duration_ms: float | None, window_start_ms: float | None) -> float:
    """The spiking run's length (ms): ``duration_ms``, default ``max(K dt, 100 ms)`` (counting needs spikes:
    a few per pool at ~10 Hz); the window start checked against it (:func:`check_window_start`)."""
    m = run.spec.model
    duration = float(duration_ms) if duration_ms else max(m.steps * m.dt_ms, 100.0)
    check_window_start(window_start_ms, duration, m.dt_ms)
    return duration


@torch.no_grad()
def operating_inputs(run: LoadedRun, mapping: str, fit_samples: int, seed: int) -> torch.Tensor:
    """What the mapping is computed from: ``fit_samples`` encoded training inputs (a seeded sample) for
    the fitted mappings, (S, n_inputs); the mean encoded test input, (n_inputs,), for ``gain``."""
    if mapping not in FITTED:
        return run.model.encode(torch.as_tensor(run.dataset.x_test, dtype=torch.float64)).mean(0)
    x = run.dataset.x_train
    idx = np.sort(np.random.default_rng([seed, 0xF17]).choice(len(x), size=min(fit_samples, len(x)), replace=False))
    return run.model.encode(torch.as_tensor(x[idx], dtype=torch.float64))


def _network_and_rate(run: LoadedRun, x: torch.Tensor, y: torch.Tensor, batch_size: int, n_plot: int,
                      progress: bool) -> tuple[dict[str, Any], torch.Tensor, dict, Any]:
    """The network and its rate circuit on the whole test set: summary, network logits (K, n, C),
    trajectories of the first ``n_plot`` examples, the circuit."""
    net_parts, rate_parts = [], []
    keep: dict[str, Any] = {}
    circuit = None
    with torch.no_grad():
        for i in tqdm(range(0, len(y), batch_size), desc="network + rate circuit", unit="batch",
                      disable=not progress, leave=False):
            xb = x[i:i + batch_size]
            net_parts.append(run.model(xb))
            lg, r, xr, circuit = rate_logits(run, xb)
            rate_parts.append(lg)
            if i == 0:
                keep = {"r": r[:, :n_plot], "x": xr[:, :n_plot], "index": np.arange(min(n_plot, len(xb)))}
    net_logits, r_logits = torch.cat(net_parts, dim=1), torch.cat(rate_parts, dim=1)
    pred_net, pred_rate = net_logits[-1].argmax(-1), r_logits[-1].argmax(-1)
    out: dict[str, Any] = {
        "dataset": run.dataset.name, "variant": run.spec.model.variant,
        "network_accuracy": _accuracy(net_logits, y)[-1], "rate_accuracy": _accuracy(r_logits, y)[-1],
        "spiking_accuracy": None, "spiking_examples": 0, "network_spiking_gap": None, "network_spiking_gap_ci95": None,
        "agreement": {"rate_vs_network": float((pred_net == pred_rate).double().mean()),
                      "spiking_vs_network": None, "spiking_vs_rate": None},
        "accuracy_per_step": {"network": _accuracy(net_logits, y), "rate": _accuracy(r_logits, y)},
        "max_abs_logit_diff": float((net_logits - r_logits).abs().max()),
        "n_test": len(y), "n_spiking": 0, "steps": run.spec.model.steps,
        "dt_ms": run.spec.model.dt_ms, "chance": run.dataset.chance,
    }
    return out, net_logits, keep, circuit


def _spiking_part(run: LoadedRun, circuit, x: torch.Tensor, y: torch.Tensor, idx: np.ndarray,
                  net_logits: torch.Tensor, out: dict[str, Any], opts: dict[str, Any]) -> tuple[dict, dict]:
    """Score the test examples ``idx`` as a spiking network (and the rate circuit over the same
    windows); fills ``out``; returns the spiking results and the trajectories for the figure."""
    m, dur, n_plot = run.spec.model, opts["duration_ms"], opts["n_plot"]
    twin, combine = spiking_twin(circuit)
    mode = m.input_mode if twin is circuit else "sustained"  # the chain holds u; its B says where u enters
    M = torch.as_tensor(combine, dtype=torch.float64)
    traj = lambda uu, steps, rec=True: _trajectories(twin, uu, steps, m.dt_ms, mode, rec) @ M.T
    with torch.no_grad(), tqdm(total=len(idx), desc=f"spiking ({opts['engine']})", unit="example",
                               disable=not opts["progress"], leave=False) as bar:
        u = run.model.encode(x[idx])
        spk = _spiking_scores(circuit, run.model, u, opts["u_operating"], duration_ms=dur,
                              dt_ms=m.dt_ms, seed=opts["seed"], pool_size=opts["pool_size"],
                              engine=opts["engine"], dtype=opts["dtype"], progress=bar.update,
                              window_start_ms=opts["window_start_ms"], weight_scaling=opts["mapping"])
        rate_win = rate_window_logits(traj, run.model, u, np.eye(circuit.n_units),
                                      spk["windows_ms"], m.dt_ms, dur)
        n_rate = int(round(dur / m.dt_ms))
        keep = ({"r": traj(u[:n_plot], n_rate), "x": traj(u[:n_plot], n_rate, False), "index": idx[:n_plot]}
                if n_plot else {})  # no examples to draw: no trajectories (a zero-example batch is refused)
    if n_plot:
        spk.update(spiking_traces(spk.pop("model"), u[:n_plot].detach().cpu().numpy(), dur, opts["seed"],
                                  opts["engine"], combine, circuit.is_E))
    yi, pred_net = y[idx], net_logits[-1, idx].argmax(-1)
    pred_spk, pred_rate = spk["logits"][-1].argmax(-1), rate_win[-1].argmax(-1)
    acc = lambda logits: [float(v) for v in (logits.argmax(-1) == yi).double().mean(-1)]
    net_sub = float((pred_net == yi).double().mean())
    out.update({
        "spiking_accuracy": acc(spk["logits"])[-1], "n_spiking": len(idx), "spiking_examples": len(idx),
        "network_accuracy_on_spiking_subset": net_sub,
        "network_spiking_gap": net_sub - acc(spk["logits"])[-1],
        "rate_window_accuracy_on_spiking_subset": acc(rate_win)[-1],
        "spiking_duration_ms": dur, "spiking_window_ms": list(spk["windows_ms"][-1]), "pool_size": spk["pool_size"],
        "spikes_per_E_pool_mean": spk["spikes_per_E_pool"], "spikes_per_example": spk["spikes_per_example"],
        "spiking_neurons": spk["n_neurons"], "spiking_engine": opts["engine"],
        "spiking_twin": "tied circuit" if twin is circuit else f"stage chain ({twin.meta['stages']} stages)",
        "spiking_mapping": spk["mapping"], "spiking_mapping_info": _mapping_summary(spk["mapping_info"]),
        "spiking_dtype": opts["dtype"] if opts["engine"] == "torch" else "float64",
        "anytime": {"n": len(idx), "window": "[t/2, t) ms, the last: the reported window "
                    f"{list(spk['windows_ms'][-1])} ms (network: its step t = k dt, instantaneous)",
                    "readout_ms": [float(t) for t in spk["times_ms"]], "spiking": acc(spk["logits"]),
                    "rate_circuit": acc(rate_win), "network_time_ms": [m.dt_ms * (k + 1) for k in range(m.steps)],
                    "network": acc(net_logits[:, idx])}})
    out["agreement"]["spiking_vs_network"] = float((pred_spk == pred_net).double().mean())
    out["agreement"]["spiking_vs_rate"] = float((pred_spk == pred_rate).double().mean())
    out.update(_gap_intervals(yi, pred_net, pred_rate, pred_spk))
    return spk, keep


def _gap_intervals(y: torch.Tensor, pred_net: torch.Tensor, pred_rate: torch.Tensor,
                   pred_spk: torch.Tensor) -> dict[str, Any]:
    """Paired 95 % intervals (same examples) of network - spiking and of rate circuit (same window) -
    spiking accuracy: what the twin loses against the net, and what the conversion alone loses."""
    ok = {k: (p == y).numpy() for k, p in (("net", pred_net), ("rate", pred_rate), ("spk", pred_spk))}
    return {"network_spiking_gap_ci95": list(paired_accuracy_interval(ok["net"], ok["spk"])),
            "rate_spiking_gap": float(ok["rate"].mean() - ok["spk"].mean()),
            "rate_spiking_gap_ci95": list(paired_accuracy_interval(ok["rate"], ok["spk"]))}


@torch.no_grad()
def _brian2_part(run: LoadedRun, circuit, x: torch.Tensor, y: torch.Tensor, sub: np.ndarray, spk: dict,
                 opts: dict[str, Any]) -> dict[str, Any]:
    """Brian2 on the first spiking examples ``sub``: accuracy of both engines and their agreement."""
    return _brian2_reference(circuit, run.model, run.model.encode(x[sub]), opts["u_operating"], y[sub],
                             spk["logits"][-1, :len(sub)].argmax(-1), duration_ms=opts["duration_ms"],
                             dt_ms=run.spec.model.dt_ms, seed=opts["seed"], pool_size=opts["pool_size"],
                             window_start_ms=opts["window_start_ms"], weight_scaling=opts["mapping"])


def _mapping_summary(info: dict[str, Any]) -> dict[str, Any]:
    """The mapping's description without the operating input vector (per population: k, dc, noise;
    the fit's rms rate error before/after, Hz)."""
    return {k: v for k, v in info.items() if k != "operating_input"}


def _naive_part(run: LoadedRun, circuit, x: torch.Tensor, y: torch.Tensor, idx: np.ndarray,
                net_logits: torch.Tensor, opts: dict[str, Any]) -> dict[str, Any]:
    """The naive conversion of the same examples: weights copied onto the LIF pools without the
    operating-point gain scaling (``spiking.weight_scaling = "identity"``: ``k = 1`` mV per unit of
    input, rates in Hz, no offset), read out the same way."""
    m = run.spec.model
    with torch.no_grad(), tqdm(total=len(idx), desc=f"naive spiking ({opts['engine']})", unit="example",
                               disable=not opts["progress"], leave=False) as bar:
        s = _spiking_scores(circuit, run.model, run.model.encode(x[idx]), run.model.encode(x).mean(0),
                            duration_ms=opts["duration_ms"], dt_ms=m.dt_ms, seed=opts["seed"],
                            pool_size=opts["pool_size"], engine=opts["engine"], dtype=opts["dtype"],
                            progress=bar.update, window_start_ms=opts["window_start_ms"],
                            weight_scaling="identity")
    yi = y[idx]
    acc = [float(v) for v in (s["logits"].argmax(-1) == yi).double().mean(-1)]
    net = float((net_logits[-1, idx].argmax(-1) == yi).double().mean())
    return {"mapping": "identity (weights copied, no operating-point gain scaling)", "n": len(idx),
            "accuracy": acc[-1], "network_gap": net - acc[-1], "spikes_per_example": s["spikes_per_example"],
            "anytime": {"n": len(idx), "readout_ms": [float(t) for t in s["times_ms"]], "spiking": acc}}
