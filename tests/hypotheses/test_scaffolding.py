"""The shared scaffolding of the hypothesis modules: the figure context manager, the options'
``compare`` (the run's test family), the presets and the registry below the runner."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from cortex_resnet.hypotheses import get_hypothesis
from cortex_resnet.hypotheses._circuits import prepare_circuit
from cortex_resnet.hypotheses._figures import hypothesis_figure
from cortex_resnet.hypotheses._training import TRAINING_REQUIRES, prepare_training
from cortex_resnet.hypotheses.base import AnalysisOptions
from cortex_resnet.hypotheses.stats import compare


def test_figure_is_saved_and_closed(tmp_path) -> None:
    before = plt.get_fignums()
    with hypothesis_figure(tmp_path / "f.png", 2) as (a1, a2):
        a1.plot([0, 1], [0, 1])
        a2.plot([0, 1], [1, 0])
        assert a1.figure is a2.figure
    assert (tmp_path / "f.png").stat().st_size > 0
    assert plt.get_fignums() == before


def test_figure_not_written_when_the_body_fails(tmp_path) -> None:
    before = plt.get_fignums()
    with pytest.raises(ZeroDivisionError):
        with hypothesis_figure(tmp_path / "f.png") as (ax,):
            ax.plot([0, 1], [0, 1])
            1 / 0
    assert not (tmp_path / "f.png").exists()
    assert plt.get_fignums() == before


@pytest.mark.parametrize("family", ["t", "rank"])
def test_options_compare_uses_the_run_family(family: str) -> None:
    a = np.array([0.3, 0.5, 0.9, 1.2, 0.7, 0.4])
    b = np.array([0.1, 0.6, 0.2, 0.8, 0.3, 0.2])
    opt = AnalysisOptions(test=family)
    for kw in ({"null_value": 0.2, "alternative": "greater"}, {"b": b, "design": "paired"}):
        assert opt.compare(a, **kw) == compare(a, **kw, family=family)


def test_presets() -> None:
    amp = get_hypothesis("amplification")  # prepare_circuit, then the measured population
    assert amp.prepare is not prepare_circuit and amp.prepare(amp.params_model(), None)["pop"] == "E"
    for name in ("degradation", "shortcut", "weight-sharing", "iterative-refinement"):
        h = get_hypothesis(name)
        assert h.prepare is prepare_training and h.requires == TRAINING_REQUIRES
    assert get_hypothesis("isn-paradox").prepare is not prepare_circuit  # its own prepare is kept
