"""``spiking-conversion``: the --quick design runs in the default suite (torch engine, whole test sets)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cortex_resnet.hypotheses import run_hypothesis
from cortex_resnet.hypotheses.stats import VERDICTS
from cortex_resnet.io.results import load_dataset


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("conv") / "run"
    return run_hypothesis("spiking-conversion", quick=True, workers=0, out=out), out


def test_quick_run_gives_a_verdict_on_whole_test_sets(quick):
    s, out = quick
    assert s["name"] == "spiking-conversion" and s["verdict"] in VERDICTS and s["seeds"] == 3
    ds = load_dataset(out / "results.nc")
    assert set(ds["condition"].values) == {"residual", "plain"}
    np.testing.assert_array_equal(ds["n_test"].values, 150.0)  # digits n_test = 150: all of it ran as spikes
    assert (out / "figures" / "spiking-conversion.png").is_file()
    assert "spiking accuracy" in (out / "report.md").read_text()
    assert json.loads((out / "report.json").read_text())["verdict"] == s["verdict"]


def test_retention_is_the_share_of_above_chance_accuracy_kept(quick):
    """Recomputed from the stored accuracies (digits: 10 classes, chance 0.1)."""
    _, out = quick
    ds = load_dataset(out / "results.nc")
    net, spk, ret = (np.asarray(ds[v].values, float) for v in ("network_accuracy", "spiking_accuracy", "retention"))
    ok = np.isfinite(spk)
    assert ok.any()
    np.testing.assert_allclose(ret[ok], (spk[ok] - 0.1) / (net[ok] - 0.1), rtol=1e-12)
    assert np.all((spk[ok] >= 0) & (spk[ok] <= 1)) and np.all(np.asarray(ds["spikes_per_example"].values)[ok] > 0)
