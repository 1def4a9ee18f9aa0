"""``cortex-resnet info``: versions, device, Brian2 code-generation target, compiler, caches."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import typer

from cortex_resnet.cli._common import emit_json, handle_errors
from cortex_resnet.bench import machine_info
from cortex_resnet.io.results import library_versions

__all__ = ["register", "environment_info"]


def _brian2_info() -> dict[str, Any]:
    try:
        import brian2
    except Exception as err:  # pragma: no cover - brian2 is a hard dependency
        return {"available": False, "error": str(err)}
    info: dict[str, Any] = {"available": True, "version": brian2.__version__,
                            "codegen_target": str(brian2.prefs.codegen.target)}
    try:
        from brian2.codegen.cpp_prefs import get_compiler_and_args

        compiler, args = get_compiler_and_args()
        info["cpp_compiler"] = compiler or "default"
    except Exception as err:
        info["cpp_compiler"] = f"unknown ({err})"
    cache = Path(os.environ.get("BRIAN_CACHE_DIR", Path.home() / ".cython" / "brian_extensions"))
    info["cython_cache"] = str(cache)
    return info


def environment_info() -> dict[str, Any]:
    """Everything a bug report or a methods section needs about this installation."""
    import torch


    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    cuda = torch.cuda.is_available()
    return {
        "versions": library_versions(),
        "device": {"default": "cuda" if cuda else "cpu", "cuda_available": cuda,
                   "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
                   "torch_threads": torch.get_num_threads()},
        "machine": machine_info(),
        "compiler": cc,
        "brian2": _brian2_info(),
        "caches": {
            "brian2_standalone": str(Path(os.environ.get("CORTEX_RESNET_CACHE",
                                                         Path.home() / ".cache" / "cortex_resnet"))),
        },
        "memory_budget_bytes": __import__("cortex_resnet.core.resources", fromlist=["x"]).memory_budget_bytes(),
    }


def register(app: typer.Typer) -> None:
    @app.command(help="Print versions, device, Brian2 codegen target, compiler and cache folders.\n\n"
                      "Example:\n\n  cortex-resnet info --json")
    @handle_errors
    def info(json_out: bool = typer.Option(False, "--json", help="Print JSON on stdout.")) -> None:
        data = environment_info()
        if json_out:
            emit_json(data)
            return
        v = data["versions"]
        typer.echo("cortex-resnet " + v.get("cortex-resnet", "?"))
        typer.echo("  " + ", ".join(f"{k} {val}" for k, val in v.items() if k != "cortex-resnet"))
        d = data["device"]
        typer.echo(f"  device: {d['default']} (CUDA: {', '.join(d['cuda_devices']) or 'none'}; "
                   f"{d['torch_threads']} torch threads)")
        b = data["brian2"]
        typer.echo(f"  brian2: codegen target {b.get('codegen_target')}, C++ compiler "
                   f"{b.get('cpp_compiler')}; cython cache {b.get('cython_cache')}")
        typer.echo(f"  compiler: {data['compiler'] or 'none found (Brian2 falls back to numpy)'}")
        typer.echo(f"  standalone cache: {data['caches']['brian2_standalone']}")
