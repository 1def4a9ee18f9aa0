"""Conventional baselines trained in the same loop, and the published numbers beside them.

MNIST-1D baselines follow the shapes of Greydanus (2020, arXiv:2011.14439;
Greydanus & Kobak, ICML 2024), github.com/greydanus/mnist1d ``models.py``:

* ``logreg``: one linear layer on the 40 samples;
* ``mlp``: 40 -> 100 -> 100 -> 10, ReLU;
* ``cnn``: three 1-D convolutions (25 channels, kernel 5/3/3, stride 2, padding 1, ReLU)
  and a linear layer on the flattened features (for 2-D inputs the same with 2-D convolutions);
* ``gru``: a bidirectional GRU with 6 hidden units per direction over the sequence,
  a linear layer on all outputs;

trained there with Adam (lr 1e-2, batch 100, 6000 steps). Their published test
accuracies: 32 %, 68 %, 94 % and 91 %.

``resnet``: the CIFAR-10 ResNets of He et al. (2016, CVPR, section 4.2): a 3x3
convolution, three stages of ``n`` basic blocks with 16/32/64 filters, global
average pooling, a linear layer (depth ``6n + 2``); ``residual = false`` gives
the "plain" net of the same shape; shortcuts are option A (identity, zero-padded
channels). Published test accuracies: ResNet-20 91.25 %, ResNet-56 93.03 %.

Every model returns logits of shape ``(1, batch, n_classes)``: one readout
step, so the loop treats baselines and unrolled circuits (``(K, batch,
n_classes)``) alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from cortex_resnet.errors import SpecError, UnknownNameError

__all__ = ["uses_conv2d", "BASELINES", "PUBLISHED", "Published", "known_baselines", "build_baseline",
           "param_count", "published_for"]


def uses_conv2d(model: nn.Module) -> bool:
    """Whether a model convolves images (2-D): on CUDA it then trains in ``channels_last``
    (NHWC, the layout of cuDNN's fast bf16 kernels) with ``cudnn.benchmark``."""
    if any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return True
    return getattr(model, "input_projection", None) == "conv" and len(getattr(model, "map_shape", ())) == 2


def param_count(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class _OneStep(nn.Module):
    """Add the step axis: logits ``(batch, C)`` -> ``(1, batch, C)``."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).unsqueeze(0)


class LogisticRegression(nn.Module):
    def __init__(self, n_features: int, n_classes: int):
        super().__init__()
        self.linear = nn.Linear(n_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


class MLP(nn.Module):
    def __init__(self, n_features: int, n_classes: int, hidden: int = 100):
        super().__init__()
        self.linear1 = nn.Linear(n_features, hidden)
        self.linear2 = nn.Linear(hidden, hidden)
        self.linear3 = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear1(x.flatten(1)).relu()
        return self.linear3(self.linear2(h).relu())


class ConvNet(nn.Module):
    """Greydanus' ConvBase: 3 strided convolutions + linear; 1-D or 2-D by the input shape."""

    def __init__(self, in_shape: tuple[int, ...], n_classes: int, channels: int = 25):
        super().__init__()
        conv = nn.Conv1d if len(in_shape) == 2 else nn.Conv2d
        self.conv1 = conv(in_shape[0], channels, 5, stride=2, padding=1)
        self.conv2 = conv(channels, channels, 3, stride=2, padding=1)
        self.conv3 = conv(channels, channels, 3, stride=2, padding=1)
        with torch.no_grad():
            n_flat = self._features(torch.zeros(1, *in_shape)).shape[1]
        self.linear = nn.Linear(n_flat, n_classes)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.conv2(self.conv1(x).relu()).relu()).relu().flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self._features(x))


class GRUNet(nn.Module):
    """Greydanus' GRUBase: bidirectional GRU over time (the last axis), linear on all outputs."""

    def __init__(self, in_shape: tuple[int, ...], n_classes: int, hidden: int = 6,
                 bidirectional: bool = True):
        super().__init__()
        channels, steps = in_shape
        self.gru = nn.GRU(channels, hidden, batch_first=True, bidirectional=bidirectional)
        self.linear = nn.Linear((2 if bidirectional else 1) * hidden * steps, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x.transpose(1, 2))  # (batch, time, channels)
        return self.linear(out.flatten(1))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers; ``residual`` adds the option-A shortcut (He et al. 2016)."""

    def __init__(self, c_in: int, c_out: int, stride: int, residual: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.residual, self.stride, self.pad = residual, stride, c_out - c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.residual:
            sc = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
            if self.pad:
                sc = F.pad(sc, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
            out = out + sc
        return F.relu(out)


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 images (He et al. 2016, section 4.2); plain when not residual."""

    def __init__(self, in_shape: tuple[int, ...], n_classes: int, depth: int = 20,
                 residual: bool = True, width: int = 16):
        super().__init__()
        if len(in_shape) != 3 or (depth - 2) % 6 or depth < 8:
            raise SpecError("model.params.depth", depth, "6n + 2 (20, 32, 44, 56, 110) on image "
                            "inputs (C, H, W)")
        n = (depth - 2) // 6
        self.conv = nn.Conv2d(in_shape[0], width, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        layers, c = [], width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                layers.append(BasicBlock(c, c_out, 2 if (stage > 0 and i == 0) else 1, residual))
                c = c_out
        self.blocks = nn.Sequential(*layers)
        self.linear = nn.Linear(c, n_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.linear(h.mean(dim=(2, 3)))


def _logreg(in_shape, n_classes):
    return LogisticRegression(math.prod(in_shape), n_classes)


def _mlp(in_shape, n_classes, hidden=100):
    return MLP(math.prod(in_shape), n_classes, int(hidden))


def _cnn(in_shape, n_classes, channels=25):
    if len(in_shape) not in (2, 3):
        raise SpecError("model.name", "cnn", f"inputs (C, L) or (C, H, W); the data have {in_shape}")
    return ConvNet(in_shape, n_classes, int(channels))


def _gru(in_shape, n_classes, hidden=6, bidirectional=True):
    if len(in_shape) != 2:
        raise SpecError("model.name", "gru", f"sequence inputs (C, L); the data have {in_shape}")
    return GRUNet(in_shape, n_classes, int(hidden), bool(bidirectional))


def _resnet(in_shape, n_classes, depth=20, residual=True, width=16):
    return CifarResNet(in_shape, n_classes, int(depth), bool(residual), int(width))


# name -> (builder(in_shape, n_classes, **params), default params, description)
BASELINES: dict[str, tuple[Callable[..., nn.Module], dict[str, Any], str]] = {
    "logreg": (_logreg, {}, "logistic regression"),
    "mlp": (_mlp, {"hidden": 100}, "MLP (2 hidden layers, ReLU)"),
    "cnn": (_cnn, {"channels": 25}, "CNN (3 strided convolutions + linear)"),
    "gru": (_gru, {"hidden": 6, "bidirectional": True}, "GRU (bidirectional)"),
    "resnet": (_resnet, {"depth": 20, "residual": True, "width": 16}, "CIFAR ResNet (He et al.)"),
}


def known_baselines() -> list[str]:
    return sorted(BASELINES)


def build_baseline(name: str, in_shape: tuple[int, ...], n_classes: int,
                   params: dict[str, Any] | None = None, *, seed: int = 0) -> nn.Module:
    """Build a baseline; its initial weights come from a generator seeded by ``seed``.

    Returns a module mapping ``(batch, *in_shape)`` to logits ``(1, batch, n_classes)``.
    """
    if name not in BASELINES:
        raise UnknownNameError("baseline", name, known_baselines(), field="model.name")
    builder, defaults, _ = BASELINES[name]
    params = dict(params or {})
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise SpecError(f"model.params.{unknown[0]}", params[unknown[0]],
                        f"a parameter of {name} (allowed: {', '.join(defaults) or 'none'})")
    with torch.random.fork_rng(devices=[]):  # torch's init functions draw from the global RNG
        torch.manual_seed(seed)
        body = builder(tuple(in_shape), n_classes, **{**defaults, **params})
    return _OneStep(body)


@dataclass(frozen=True)
class Published:
    """A published test accuracy to print beside ours."""

    model: str
    baseline: str
    params: dict[str, Any]
    test_accuracy: float
    source: str

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return f"Published({self.model!r} ({self.baseline}): test accuracy {self.test_accuracy:.4g})"


_GREYDANUS = "Greydanus 2020, arXiv:2011.14439 (MNIST-1D), README/Table 1"
_HE = "He, Zhang, Ren & Sun 2016, CVPR, Table 6"
PUBLISHED: dict[str, list[Published]] = {
    "mnist1d": [
        Published("logistic regression", "logreg", {}, 0.32, _GREYDANUS),
        Published("MLP", "mlp", {}, 0.68, _GREYDANUS),
        Published("CNN", "cnn", {}, 0.94, _GREYDANUS),
        Published("GRU", "gru", {}, 0.91, _GREYDANUS),
    ],
    "cifar10": [
        Published("ResNet-20", "resnet", {"depth": 20, "residual": True}, 0.9125, _HE),
        Published("ResNet-56", "resnet", {"depth": 56, "residual": True}, 0.9303, _HE),
    ],
}


def published_for(dataset: str) -> list[Published]:
    """Published baselines for a dataset (empty when there are none)."""
    return list(PUBLISHED.get(dataset, []))
