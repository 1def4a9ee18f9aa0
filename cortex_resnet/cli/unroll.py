"""``cortex-resnet unroll``: a circuit as an unrolled residual network, checked against the simulator."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

import typer

from cortex_resnet.catalog import find_model_file
from cortex_resnet.errors import SpecError
from cortex_resnet.cli._common import EXIT_FAILURE, FORCE_HELP, check_out_path, emit_json, handle_errors
from cortex_resnet.bridge import load_circuit, save_state, unroll as do_unroll
from cortex_resnet.bridge.check import check_unroll
from cortex_resnet.model.circuit import Circuit, build_circuit

__all__ = ["register"]

EXAMPLE = ("Example:\n\n  cortex-resnet unroll models/canonical_microcircuit.toml --steps 50 --dt 0.5 "
           "--variant tied --check --json --out tied.pt")


def unroll_cmd(
    model: Path = typer.Argument(..., help="Circuit model file (TOML), e.g. models/canonical_microcircuit.toml."),
    steps: int = typer.Option(..., "--steps", help="Number of residual blocks K (>= 1)."),
    dt: Optional[float] = typer.Option(None, help="Euler step in ms (default: the model file's dt_ms)."),
    variant: str = typer.Option("tied", help="tied, untied, plain, projection or gated."),
    input_mode: str = typer.Option("sustained", help="sustained (u every step) or pulse (r_0 = x_0, then free)."),
    recurrence: str = typer.Option("dense", help="dense (one weight per connection) or conv (kernels "
                                                 "shared across a spatial map's sites)."),
    dale: str = typer.Option("softplus", help="Dale parametrisation of the magnitudes: softplus or relu."),
    amp: Optional[list[float]] = typer.Option(
        None, help="Constant input amplitude(s) on every channel for --check (repeatable; "
                   "default 0.5, 1, 2)."),
    check: bool = typer.Option(False, help="Compare with the rate simulator (float64 and float32)."),
    dtype: str = typer.Option("float64", help="dtype of the module written by --out."),
    seed: Optional[int] = typer.Option(None, help="Seed of the circuit's weights (default: the model's)."),
    out: Optional[Path] = typer.Option(None, help="Write the unrolled module's state dict here "
                                                  "(.pt; torch.save, atomically; load with weights_only=True). "
                                                  "An existing file is not replaced without --force."),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """``unroll``: build the net, optionally check it, write it, report."""
    model = find_model_file(model)  # a bundled model by name, e.g. canonical_microcircuit
    check_out_path(out, suffixes=(".pt", ".pth"), force=force)
    start = time.perf_counter()
    circuit = _load(model, seed)
    opts = dict(variant=variant, input_mode=input_mode, recurrence=recurrence, dale=dale)
    net = do_unroll(circuit, steps, dt, dtype=dtype, **opts)
    summary = _summary(model, net, recurrence, dale)
    ok = True
    if check:
        ok = _check(summary, circuit, steps, dt, [0.5, 1.0, 2.0] if not amp else list(amp), opts)
    if out is not None:
        save_state(net, out)
    summary["out"] = str(out) if out else None
    summary["runtime_s"] = time.perf_counter() - start
    if json_out:
        emit_json(summary)
    else:
        _echo(summary, model, net, check, ok, out)
    if not ok:
        raise typer.Exit(EXIT_FAILURE)


def _load(model: Path, seed: int | None) -> Circuit:
    """The model file's circuit, re-drawn with ``seed`` when given (not for trained weights)."""
    if seed is not None and seed < 0:
        raise SpecError("--seed", seed, "an integer >= 0")
    circuit = load_circuit(model)
    if seed is not None:
        if circuit.spec.weights is not None:
            raise SpecError("--seed", seed, "no seed for a model file with trained weights")
        circuit = build_circuit(circuit.spec.replace(seed=seed))
    return circuit


def _summary(model: Path, net: Any, recurrence: str, dale: str) -> dict[str, Any]:
    return {
        "model": str(model), "steps": net.steps, "variant": net.variant, "input_mode": net.input_mode,
        "recurrence": recurrence, "dale": dale,
        "dt_ms": net.dt_ms, "params": net.param_count(), "params_total": net.param_count(effective=False),
        "n_units": net.n_units, "n_E": net.n_E, "n_inputs": net.n_inputs,
        "max_abs_error": {"float64": None, "float32": None},
        "max_rel_error": {"float64": None, "float32": None},
    }


def _check(summary: dict[str, Any], circuit: Circuit, steps: int, dt: float | None, amps: list[float],
           opts: dict[str, Any]) -> bool:
    """Step-by-step comparison with the rate simulator; adds the errors to ``summary``."""
    u = np.repeat(np.asarray(amps, dtype=np.float64)[:, None], circuit.n_inputs, axis=1)
    res = check_unroll(circuit, steps, dt, u, **opts)
    ok = bool(res["within_tolerance"])
    summary.update({"max_abs_error": res["max_abs_error"], "max_rel_error": res["max_rel_error"],
                    "tolerance": res["tolerance"], "within_tolerance": res["within_tolerance"], "amps": amps,
                    "reference": "rate.integrate (method euler), the loop of rate.simulate",
                    "noise": "off" if circuit.spec.noise.sigma > 0 else "none"})
    return ok


def _echo(summary: dict[str, Any], model: Path, net: Any, check: bool, ok: bool, out: Path | None) -> None:
    typer.echo(f"unrolled {model} into {net.steps} {net.variant} blocks (dt {net.dt_ms} ms, "
               f"{summary['params']} parameters)")
    if check:
        for name in ("float64", "float32"):
            typer.echo(f"  {name}: max abs error {summary['max_abs_error'][name]:.3g}, "
                       f"max rel error {summary['max_rel_error'][name]:.3g}")
        typer.echo("  within tolerance" if ok else "  OUTSIDE tolerance " + str(summary["tolerance"]))
    if out is not None:
        typer.echo(f"  state dict written to {out}")


def register(app: typer.Typer) -> None:
    app.command("unroll", help="Unroll a circuit into K residual blocks (one Euler step each); with --check, "
                               "compare it step by step with the rate simulator in float64 and float32.\n\n"
                               + EXAMPLE)(handle_errors(unroll_cmd))
