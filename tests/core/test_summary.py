"""``cortex_resnet.core.summary``: the generated short forms (arrays by shape, text cut, one line)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from cortex_resnet.core.summary import MAX_REPR, brief, short_repr


def test_brief_values():
    assert brief(np.zeros((3, 4))) == "array(3, 4)" and brief(np.zeros(5)) == "array(5,)"
    assert brief(torch.zeros(2, 7)) == "tensor(2, 7)"
    assert brief(0.1) == "0.1" and brief(1 / 3) == "0.3333" and brief(True) == "True" and brief(None) == "None"
    assert brief("x" * 100) == repr("x" * 23 + "…")
    assert brief([1, 2]) == "[1, 2]" and brief(list(range(10))) == "<10 list items>" and brief({"a": 1}) == "<1 keys>"
    assert brief(np.mean) == "mean"


@dataclass
class _Big:
    name: str = "big"
    W: np.ndarray = field(default_factory=lambda: np.ones((1000, 1000)))
    notes: list = field(default_factory=lambda: ["n"] * 50)
    many: dict = field(default_factory=lambda: {f"k{i}": i for i in range(30)})


def test_short_repr_is_one_cut_line_without_array_values():
    text = short_repr(_Big())
    assert text == "_Big(name='big', W=array(1000, 1000), notes=<50 list items>, many=<30 keys>)"
    long = short_repr(_Big(), ["name"] * 40)
    assert len(long) <= MAX_REPR and long.endswith(", …)") and "\n" not in long
