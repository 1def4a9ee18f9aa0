"""workflows.column.training_change: what training changed in a cortical column (pathways, ISN per layer)."""

from __future__ import annotations

import copy

import pytest
import torch

from cortex_resnet.catalog import catalog_root
from cortex_resnet.training.build import build_model, load_data
from cortex_resnet.training.experiment import load_experiment
from cortex_resnet.workflows.column import training_change
from cortex_resnet.workflows.compare import LoadedRun

# slow: the steady state of the lif column (Newton on the Siegert units) takes minutes on a busy machine
pytestmark = pytest.mark.slow

LAYERS = ["L23E", "L4E", "L5E", "L6E"]


@pytest.fixture(scope="module")
def run():
    spec = load_experiment(catalog_root() / "experiments" / "pd14_column_tied.toml")
    small = {**{f"populations.{k}.n": 2 for k in LAYERS + ["L23I", "L4I", "L5I", "L6I"]},
             "connectivity.weight_cv": 0.0}  # homogeneous: the fixed point is the mean field's (Newton converges)
    spec = spec.replace(**{"data.n_train": 20, "data.n_test": 10, "model.overrides": {**spec.model.overrides, **small}})
    data = load_data(spec)
    model, info = build_model(spec, data)
    return LoadedRun(spec, data, model.double().eval(), info, None)


def test_untrained_column_has_no_change_and_the_same_isn(run):
    out = training_change(run)
    assert out["pathways"] and all(v["rel_change"] == 0.0 and v["rel_J_change"] == 0.0
                                   for v in out["pathways"].values())
    assert "L6E<-L6I" in out["pathways"] and "L4E<-L23I" in out["pathways"]
    assert out["isn_before"] == out["isn_after"]
    assert list(out["isn_before"]["tied"]["isn"]) == LAYERS  # ISN per layer, by name


def test_a_doubled_pathway_is_reported(run):
    trained = copy.deepcopy(run)
    W = trained.model.net.W
    lay = trained.model.net.circuit.layout
    with torch.no_grad():  # theta_T is (n, pre, post); magnitude softplus(theta): double the L2/3E <- L4E block
        block = W.theta_T[0, lay["L4E"], lay["L23E"]]
        block.copy_(torch.log(torch.expm1(2.0 * torch.nn.functional.softplus(block))))
    out = training_change(trained)
    assert out["pathways"]["L23E<-L4E"]["rel_J_change"] == pytest.approx(1.0, rel=1e-9)
    assert out["pathways"]["L23E<-L4E"]["rel_change"] == pytest.approx(1.0, rel=1e-9)
    assert max(v["rel_change"] for k, v in out["pathways"].items() if k != "L23E<-L4E") == 0.0
