"""model.analysis.pathway_change: per-pathway weight change against hand-computed block sums."""

from __future__ import annotations

import numpy as np
import pytest

from cortex_resnet.model.analysis import pathway_change


def test_pathway_change_by_hand():
    layout = {"E": slice(0, 2), "I": slice(2, 3)}
    W0 = np.array([[1.0, 1.0, -2.0], [1.0, 1.0, -2.0], [0.5, 0.5, 0.0]])  # I<-I absent
    W1 = W0.copy()
    W1[:2, :2] *= 1.5  # E<-E grows by half
    W1[2, 0], W1[2, 1] = 0.75, 0.25  # I<-E redistributed, same J
    out = pathway_change(W0, W1, layout)
    assert set(out) == {"E<-E", "E<-I", "I<-E"}  # the absent pathway is not reported
    assert out["E<-E"]["J_before"] == 2.0 and out["E<-E"]["rel_J_change"] == pytest.approx(0.5)
    assert out["E<-E"]["rel_change"] == pytest.approx(0.5)
    assert out["E<-I"]["rel_J_change"] == 0.0 and out["E<-I"]["rel_change"] == 0.0
    assert out["I<-E"]["rel_J_change"] == pytest.approx(0.0)
    assert out["I<-E"]["rel_change"] == pytest.approx(np.sqrt(2 * 0.25**2) / np.sqrt(0.5))


def test_pathway_change_refuses_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        pathway_change(np.zeros((2, 2)), np.zeros((3, 3)), {"E": slice(0, 2)})
