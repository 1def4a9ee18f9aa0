"""``cortex-resnet simulate``: run a model file with the rate (or spiking) backend."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import typer

from cortex_resnet.catalog import find_model_file
from cortex_resnet.errors import SpecError, ConvergenceError
from cortex_resnet.cli._common import FORCE_HELP, check_out_path, emit_json, handle_errors, parse_set
from cortex_resnet.model.analysis import analyze
from cortex_resnet.io.results import population_mean, save_dataset
from cortex_resnet.io.spikes import SPIKE_SUFFIXES, check_spikes_path, save_spikes
from cortex_resnet.model.fixedpoint import steady_state
from cortex_resnet.model.stimulus import stimulus_warnings, report_warnings
from cortex_resnet.model.spec import StimulusSpec, load_spec
from cortex_resnet.rate.simulator import simulate
from cortex_resnet.model.circuit import Circuit, build_circuit
from cortex_resnet.bridge import load_circuit

__all__ = ["register", "BACKENDS", "simulate_rate_summary", "PLOT_SUFFIXES"]

PLOT_SUFFIXES = (".png", ".svg", ".pdf")

EXAMPLE = ("Example:\n\n  cortex-resnet simulate models/canonical_microcircuit.toml --backend rate "
           "--duration 300 --dt 0.1 --stimulus step:amp=1.0,onset_ms=50 --out run.nc --plot run.png --json")


def simulate_rate_summary(circuit, ds, out: Path | None) -> dict[str, Any]:
    """The ``--json`` summary of a rate run (contract: out, backend, mean_rate_hz,
    max_eig_real, inhibition_stabilized, runtime_s; plus steady-state values). ``unstable`` is true
    when the steady state found is linearly unstable or the run ended in an unstable state."""
    u_final = ds["u"].isel(time=-1).values  # (batch, n_inputs)
    ss: dict[str, Any] = {"E": None, "I": None, "max_abs_error_vs_final": None}
    max_re, isn, ee_gain = None, None, None
    try:
        try:
            r_star = steady_state(circuit, u_final).numpy()
        except ConvergenceError:  # Newton from rest can fail (e.g. steep lif transfers): start where the run ended
            r_star = steady_state(circuit, u_final, r0=torch.as_tensor(ds["r"].isel(time=-1).values)).numpy()
        e = circuit.is_E
        ss = {"E": r_star[:, e].mean(axis=1).tolist(), "I": r_star[:, ~e].mean(axis=1).tolist(),
              "max_abs_error_vs_final": float(np.max(np.abs(r_star - ds["r"].isel(time=-1).values)))}
        if list(circuit.layout) != ["E", "I"]:  # named populations: each one's steady state too
            ss["by_population"] = {k: r_star[:, sl].mean(axis=1).tolist() for k, sl in circuit.layout.items()}
        if circuit.n_units <= 4000:
            lin = analyze(circuit, u_final[0], r_star=r_star[0])
            max_re, isn, ee_gain = lin.max_eig_real, lin.inhibition_stabilized, lin.ee_loop_gain
            if list(circuit.layout) != ["E", "I"]:
                ss["ee_loop_gain_by_population"] = lin.ee_loop_gain_by_population
                ss["inhibition_stabilized_by_population"] = lin.isn_by_population
    except ConvergenceError as err:
        ss["error"] = str(err)
    # never report an unstable fixed point (a saddle the run has not left yet) as the steady state silently
    ss["unstable"] = None if max_re is None else bool(max_re > 0)
    unstable = bool(ss["unstable"]) or int(ds.attrs.get("unstable", 0)) == 1
    if ss["unstable"]:
        typer.echo(f"warning: the steady state found is unstable (max Re(eig) = {max_re:+.4g} /ms): the dynamics "
                   "move away from it; the run ended before the circuit diverged", err=True)

    mean = population_mean(ds, "r")
    hz = circuit.hz_per_unit
    return {
        "unstable": unstable,
        "out": str(out) if out else None,
        "backend": "rate",
        "mean_rate": mean,  # in rate_units; mean_rate[p] * hz_per_unit[p] is in Hz
        "mean_rate_hz": {p: mean[p] * hz[p] for p in mean},  # deprecated: use mean_rate, rate_units
        "final_rate": {p: ds["r"].isel(time=-1).where(ds["population"] == p, drop=True).mean("unit").values.tolist()
                       for p in mean},
        "steady_state": ss,
        "max_eig_real": max_re,
        "ee_loop_gain": ee_gain,
        "inhibition_stabilized": isn,
        "rate_units": circuit.rate_units,
        "hz_per_unit": hz,
        "warnings": stimulus_warnings(ds.attrs.get("stimulus") and _stim(ds.attrs["stimulus"]), ds["u"].values,
                                      float(ds.attrs.get("duration_ms", ds["time"].values[-1])),
                                      model_default=circuit.spec.simulation.stimulus),
        "runtime_s": float(ds.encoding.get("runtime_s", ds.attrs.get("runtime_s", float("nan")))),
        "seed": int(ds.attrs["seed"]),
    }


def check_spikes_out(path: Path | None, backend: str, force: bool) -> None:
    """``--spikes-out``: spiking backend only, a .nix/.pkl path that replaces no foreign file."""
    if path is None:
        return
    if backend != "spiking":
        raise SpecError("--spikes-out", str(path), "only with --backend spiking (the rate backend has no spikes)")
    check_spikes_path(path)
    check_out_path(path, "--spikes-out", suffixes=SPIKE_SUFFIXES, force=force)


def _stim(text: str):
    return StimulusSpec.model_validate_json(text)


def summary_line(name: str, backend: str, summary: dict[str, Any]) -> str:
    """The text summary: mean rates in the run's units, with the Hz-per-unit factor where not Hz."""
    rates, units = summary["mean_rate"], summary["rate_units"]
    hz = summary.get("hz_per_unit") or {}
    factors = {p: hz[p] for p in rates if p in hz}
    factor = "" if units == "Hz" or not factors else (
        f" (1 {units} = {next(iter(factors.values())):g} Hz)" if len(set(factors.values())) == 1 else
        " (1 " + units + " = " + ", ".join(f"{v:g} Hz for {p}" for p, v in factors.items()) + ")")
    shown = ", ".join(f"{p} {v:.4g}" for p, v in rates.items())
    return f"{name} ({backend}): mean rate {shown} {units}{factor}; runtime {summary['runtime_s']:.2f} s"


def _run_rate(circuit, opts: dict[str, Any]):
    ds = simulate(circuit, opts["stimulus"], duration_ms=opts["duration"], dt_ms=opts["dt"],
                  method=opts["method"], dtype=opts["dtype"], device=opts["device"],
                  record_stride=opts["record_stride"], seed=opts["seed"],
                  progress=opts["progress"])
    return ds, lambda out: simulate_rate_summary(circuit, ds, out)


def _run_spiking(circuit, opts: dict[str, Any]):
    from cortex_resnet.spiking.simulator import cli_run  # deferred: the spiking stack (keeps --help fast)

    return cli_run(circuit, opts)


# backend name -> runner(circuit, options) -> (dataset, summary(out) -> dict)
BACKENDS: dict[str, Callable] = {"rate": _run_rate, "spiking": _run_spiking}


def simulate_cmd(
    model: Path = typer.Argument(..., help="Circuit model file (TOML), e.g. models/linear.toml, or a bundled model's name (linear)."),
    backend: str = typer.Option("rate", help="Simulator: " + ", ".join(BACKENDS) + "."),
    duration: Optional[float] = typer.Option(None, help="Duration in ms (default: the model file's)."),
    dt: Optional[float] = typer.Option(None, help="Time step in ms (default: the model file's)."),
    stimulus: Optional[str] = typer.Option(
        None, help="KIND:key=value,... e.g. step:amp=1.0,onset_ms=50 or step:amp=[0.5,1,2] (a batch)."),
    method: Optional[str] = typer.Option(None, help="Integrator: euler, expeuler, rk4, dopri5, ..."),
    phi: Optional[str] = typer.Option(None, help="Override both populations' transfer function "
                                                 "(e.g. lif for the mean-field prediction)."),
    dtype: str = typer.Option("float64", help="float64 or float32."),
    device: str = typer.Option("auto", help="auto (CUDA when present), cpu or cuda."),
    record_stride: int = typer.Option(1, help="Record every n-th step (memory bound)."),
    seed: Optional[int] = typer.Option(None, help="Seed for weights and noise (default: the model's)."),
    out: Optional[Path] = typer.Option(None, help="Write the result (netCDF, .nc) here, atomically. An "
                                       "existing file is replaced only if cortex-resnet wrote it (else --force)."),
    plot: Optional[Path] = typer.Option(None, help="Write the decomposition figure here (.png/.svg/.pdf; "
                                        "the same rule for an existing file)."),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
    progress: bool = typer.Option(True, help="Show a progress bar on stderr."),
    standalone: bool = typer.Option(False, "--standalone", help="Spiking backend: Brian2 C++ standalone, "
                                    "compiled once per network structure and cached (reruns do not compile)."),
    engine: str = typer.Option("brian2", help="Spiking backend: brian2, or torch (batched; uses --dtype, "
                               "--device)."),
    extra: Optional[list[str]] = typer.Option(
        None, "--set", help="Override a spec field: --set connectivity.J_EE=1.5 (repeatable)."),
    spikes_out: Optional[Path] = typer.Option(
        None, "--spikes-out", help="Spiking backend: also write the spike trains for neo/elephant, .nix "
        "(neo NixIO) or .pkl (neo PickleIO); needs the interop extra. An existing file is replaced only "
        "with --force."),
    compress: bool = typer.Option(False, "--compress", help="Write --out as float32 with gzip "
                                  "compression (about 7 significant digits)."),
) -> None:
    """``simulate``: check the options, build the circuit, run the backend, write and report."""
    model = find_model_file(model)  # a bundled model by name, e.g. canonical_microcircuit
    _check_options(backend, engine, out, plot, force)
    check_spikes_out(spikes_out, backend, force)
    circuit = _circuit(model, seed, phi, extra or [])
    opts = dict(stimulus=stimulus, duration=duration, dt=dt, method=method, dtype=dtype,
                device=device, record_stride=record_stride, seed=seed,
                progress=progress and not json_out, standalone=standalone, engine=engine)
    t0 = time.perf_counter()
    ds, summarize = BACKENDS[backend](circuit, opts)
    _write(ds, backend, out, plot, spikes_out, compress)
    summary = summarize(out)
    summary.setdefault("runtime_s", time.perf_counter() - t0)
    if json_out:
        emit_json(summary)
    else:
        typer.echo(summary_line(circuit.spec.name, backend, summary) + (f"; wrote {out}" if out else ""))
    report_warnings(summary.get("warnings", []))


def _write(ds: Any, backend: str, out: Path | None, plot: Path | None, spikes_out: Path | None,
           compress: bool) -> None:
    """The result file (``--out``, ``--compress``), the figure (``--plot``) and the spike trains."""
    if out is not None:
        save_dataset(ds, out, compress=compress)
    if plot is not None:
        from cortex_resnet.plots.base import plot_decomposition, plot_raster  # deferred: matplotlib (--help fast)

        (plot_raster if backend == "spiking" else plot_decomposition)(ds, plot)
    if spikes_out is not None:
        save_spikes(ds, spikes_out)


def _check_options(backend: str, engine: str, out: Path | None, plot: Path | None, force: bool) -> None:
    """Bad options exit 2 before any work."""
    if backend not in BACKENDS:
        raise SpecError("--backend", backend, f"one of {', '.join(BACKENDS)}")
    if engine not in ("brian2", "torch"):
        raise SpecError("--engine", engine, "brian2 or torch")
    check_out_path(out, suffixes=(".nc",), force=force)
    check_out_path(plot, "--plot", suffixes=PLOT_SUFFIXES, force=force)
    if out is not None and plot is not None and out.absolute() == plot.absolute():
        raise SpecError("--plot", str(plot), "a different file from --out")


def _circuit(model: Path, seed: int | None, phi: str | None, extra: list[str]) -> Circuit:
    """The model file's circuit with ``--seed``, ``--phi`` and ``--set`` applied."""
    spec = load_spec(model)
    changes: dict[str, Any] = {}
    if seed is not None:
        if seed < 0:
            raise SpecError("--seed", seed, "an integer >= 0")
        changes["seed"] = seed
    if phi is not None:
        for pop in spec.populations.names:
            changes[f"populations.{pop}.transfer"] = {"name": phi}
    changes |= parse_set(extra)
    if changes:
        try:
            spec = spec.replace(**changes)
        except (KeyError, TypeError):
            raise SpecError("--set", ", ".join(changes), "existing spec fields") from None
    if spec.weights is None:
        return build_circuit(spec)
    # a model file written by save_circuit: its trained weights
    if phi is not None or extra:
        raise SpecError("--set/--phi", "given", "no overrides for a model file with trained weights "
                        f"({spec.weights}); change the weights with the bridge instead")
    return dataclasses.replace(load_circuit(model), spec=spec)


def register(app: typer.Typer) -> None:
    app.command("simulate", help="Simulate a circuit model file and decompose r = x + F(x).\n\n" + EXAMPLE
                )(handle_errors(simulate_cmd))
