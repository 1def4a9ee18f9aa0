"""The figure gallery's registry (workflows/gallery.py)."""

from __future__ import annotations

from cortex_resnet.hypotheses.registry import HYPOTHESES as REGISTERED
from cortex_resnet.workflows.gallery import GALLERY, HYPOTHESES


def test_every_hypothesis_has_a_gallery_figure():
    assert set(HYPOTHESES) == set(REGISTERED)
    assert all(f"hypothesis_{h}" in GALLERY for h in REGISTERED)


def test_the_microcircuit_figure_is_registered_with_its_source():
    entry = GALLERY["pd14_microcircuit"]
    assert "potjans_diesmann_2014.toml" in entry.description and "mean field" in entry.description
