"""What a hypothesis run is determined by: the experiment spec, the params, the seeds.

``experiments/hypotheses/NAME.toml`` (or the built-in defaults) -> :class:`RunConfig`;
below the runner and the report, which both take a :class:`RunConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cortex_resnet.catalog import catalog_root
from cortex_resnet.errors import SpecError
from cortex_resnet.model.spec import read_toml
from cortex_resnet.hypotheses.base import AnalysisOptions, Hypothesis, HypothesisSpec, Params, parse_hypothesis_spec
from cortex_resnet.hypotheses.registry import get_hypothesis
from cortex_resnet.hypotheses.stats import require_seeds

__all__ = ["RunConfig", "load_run_config", "find_spec_file", "default_out"]



def find_spec_file(name: str) -> Path | None:
    """``experiments/hypotheses/NAME.toml`` under the working directory or the repository."""
    for root in (Path.cwd(), catalog_root()):
        p = root / "experiments" / "hypotheses" / f"{name}.toml"
        if p.is_file():
            return p
    return None


def default_out(name: str, quick: bool) -> Path:
    return Path("runs") / "hypotheses" / (f"{name}-quick" if quick else name)


@dataclass(frozen=True)
class RunConfig:
    """Everything a run is determined by."""

    hypothesis: Hypothesis
    spec: HypothesisSpec
    params: Params
    seeds: tuple[int, ...]
    quick: bool
    spec_path: Path | None

    @property
    def options(self) -> AnalysisOptions:
        return AnalysisOptions(alpha=self.spec.alpha, test=self.spec.test)

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return f"RunConfig({self.hypothesis.name!r}: {len(self.seeds)} seeds, quick={self.quick})"


def load_run_config(name: str, *, spec_path: str | Path | None = None, quick: bool = False,
                    seeds: int | None = None, seed: int | None = None) -> RunConfig:
    """Read and validate the experiment spec (or the built-in defaults) for one run."""
    hyp = get_hypothesis(name)
    path = Path(spec_path) if spec_path is not None else find_spec_file(name)
    data: dict[str, Any] = read_toml(path) if path is not None else {"hypothesis": name}
    src = str(path) if path else None
    spec = parse_hypothesis_spec(data, src)
    if spec.hypothesis != name:
        raise SpecError("hypothesis", spec.hypothesis, f"'{name}' (the spec file is for another hypothesis)",
                        source=src)
    raw_params = dict(spec.params)
    n = spec.seeds
    if quick:
        raw_params.update(spec.quick.params)
        n = spec.quick.seeds if spec.quick.seeds is not None else n
    if seeds is not None:
        require_seeds(seeds, "--seeds")
        n = seeds
    require_seeds(n, "seeds")
    if seed is not None:
        if seed < 0:
            raise SpecError("--seed", seed, "an integer >= 0")
        spec = spec.model_copy(update={"seed": seed})
    params = hyp.parse_params(raw_params, src)
    return RunConfig(hyp, spec, params, tuple(spec.seed + i for i in range(n)), quick, path)
