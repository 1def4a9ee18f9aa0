"""The figure gallery that ``cortex-resnet figures all`` regenerates in ``figures/``.

Each entry makes its result (quick settings by default, ``full=True`` for
publication settings), saves it, and draws it with a function of
:mod:`cortex_resnet.plots` / ``plots_*`` that takes the saved result, so a
figure can be remade from the file alone. ``figures/README.md`` gets one line
per figure: what it shows and the command that made it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import UnknownNameError
from .results import atomic_write_text, save_dataset

__all__ = ["FigureEntry", "GALLERY", "register_figure", "make_gallery", "ROOT"]

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"


@dataclass(frozen=True)
class FigureEntry:
    """A gallery figure: ``make(out_dir, full) -> list of written files``."""

    name: str
    description: str
    make: Callable[[Path, bool], list[Path]]
    order: int = 100


GALLERY: dict[str, FigureEntry] = {}


def register_figure(name: str, description: str, order: int = 100):
    """Decorator adding a figure maker to the gallery."""

    def deco(fn: Callable[[Path, bool], list[Path]]) -> Callable[[Path, bool], list[Path]]:
        GALLERY[name] = FigureEntry(name, description, fn, order)
        return fn

    return deco


def _both(plot: Callable, result, out_dir: Path, stem: str, **kw) -> list[Path]:
    return [plot(result, out_dir / f"{stem}.png", **kw), plot(result, out_dir / f"{stem}.svg", **kw)]


# ------------------------------------------------------------------ rate-model figures
@register_figure("decomposition_rate",
                 "Canonical microcircuit (rate model): r(t) = x(t) + F(x)(t) for E and I after a step input; "
                 "removing recurrence leaves 40 % of the E response.", order=10)
def _decomposition_rate(out_dir: Path, full: bool) -> list[Path]:
    from . import load_model, simulate
    from .plots import plot_decomposition

    ds = simulate(load_model(MODELS / "canonical_microcircuit.toml"), "step:amp=1.0,onset_ms=50",
                  duration_ms=500 if full else 300, dt_ms=0.05 if full else 0.1, device="cpu",
                  record_stride=10)
    save_dataset(ds, out_dir / "data" / "decomposition_rate.nc")
    return _both(plot_decomposition, ds, out_dir, "decomposition_rate")


@register_figure("weights_spectrum",
                 "Canonical microcircuit: weight matrix with E/I blocks (Dale's law) and the Jacobian spectrum "
                 "at the operating point with the stability line.", order=20)
def _weights_spectrum(out_dir: Path, full: bool) -> list[Path]:
    from .plots_circuit import plot_weights_spectrum

    from .results import load_dataset

    src = out_dir / "data" / "decomposition_rate.nc"
    if not src.exists():
        _decomposition_rate(out_dir, full)
    return _both(plot_weights_spectrum, load_dataset(src), out_dir, "weights_spectrum")


@register_figure("isn_paradox",
                 "Inhibition-stabilised network (models/isn.toml): extra drive to I at 100 ms lowers the I rate "
                 "(1.0 -> 0.9, as the linear analysis predicts).", order=30)
def _isn(out_dir: Path, full: bool) -> list[Path]:
    from . import load_model, simulate
    from .plots_circuit import plot_isn_paradox

    ds = simulate(load_model(MODELS / "isn.toml"), device="cpu")
    save_dataset(ds, out_dir / "data" / "isn_paradox.nc")
    return _both(plot_isn_paradox, ds, out_dir, "isn_paradox")


@register_figure("amplification",
                 "Cortical amplification: steady E and I rates with (r) and without (x) recurrence across "
                 "input strengths; x/r for E against the cat V1 (0.46) and mouse L4 (~1/3) measurements.", order=40)
def _amplification(out_dir: Path, full: bool) -> list[Path]:
    from . import load_model, simulate
    from .plots_circuit import plot_amplification

    amps = "[0.25,0.5,1,1.5,2,3]" if full else "[0.5,1,2]"
    ds = simulate(load_model(MODELS / "canonical_microcircuit.toml"), f"step:amp={amps},onset_ms=0",
                  duration_ms=600, dt_ms=0.1, device="cpu", record_stride=10)
    save_dataset(ds, out_dir / "data" / "amplification.nc")
    return _both(plot_amplification, ds, out_dir, "amplification")


# ------------------------------------------------------------------ driver
def known_figures() -> list[str]:
    return [e.name for e in sorted(GALLERY.values(), key=lambda e: (e.order, e.name))]


def make_gallery(out_dir: str | Path = ROOT / "figures", *, full: bool = False,
                 only: list[str] | None = None, progress: bool = False) -> dict[str, list[Path]]:
    """Regenerate figures (all, or ``only``) and rewrite ``out_dir/README.md``."""
    out_dir = Path(out_dir)
    (out_dir / "data").mkdir(parents=True, exist_ok=True)
    names = known_figures() if not only else only
    for n in names:
        if n not in GALLERY:
            raise UnknownNameError("figure", n, known_figures(), field="figure")
    made: dict[str, list[Path]] = {}
    it = names
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(names, desc="figures", unit="fig")
    for n in it:
        made[n] = GALLERY[n].make(out_dir, full)
    _write_readme(out_dir, full)
    return made


def _write_readme(out_dir: Path, full: bool) -> None:
    lines = ["# Figure gallery", "",
             "Regenerate everything with `cortex-resnet figures all` (quick settings) or "
             "`cortex-resnet figures all --full` (publication settings); one figure with "
             "`cortex-resnet figures NAME`. The results behind each figure are in `data/`.", "",
             "| figure | what it shows | command |", "|---|---|---|"]
    for n in known_figures():
        e = GALLERY[n]
        if (out_dir / f"{n}.png").exists():
            lines.append(f"| ![{n}]({n}.png) | {e.description} | `cortex-resnet figures {n}` |")
    atomic_write_text(out_dir / "README.md", "\n".join(lines) + "\n")
