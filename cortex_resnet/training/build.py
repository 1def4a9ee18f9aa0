"""Build what a training run needs: the dataset, the network (unrolled circuit or baseline),
the optimiser, and the memory check before the first step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cortex_resnet.bridge import CircuitClassifier, unroll
from cortex_resnet.bridge.conv import ConvChainClassifier
from cortex_resnet.core.resources import check_memory
from cortex_resnet.data.datasets import Dataset, get_dataset
from cortex_resnet.errors import SpecError
from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.training.baselines import build_baseline, param_count
from cortex_resnet.training.experiment import CircuitModelSpec, ExperimentSpec

__all__ = ["load_data", "check_training_memory", "build_model", "build_optimizer"]


def load_data(spec: ExperimentSpec, data_dir: str | Path | None = None) -> Dataset:
    """The experiment's dataset (``data_dir`` overrides ``data.data_dir``)."""
    d = spec.data
    return get_dataset(d.name, seed=d.seed, data_dir=data_dir or d.data_dir, params=d.params,
                       n_train=d.n_train, n_test=d.n_test)


def check_training_memory(spec: ExperimentSpec, model: nn.Module, device: torch.device | str = "cpu") -> None:
    """Refuse a run whose parameters (with gradients and two optimiser moments) and one batch's
    activations exceed the memory budget, before the first step allocates them.

    Activations of an unrolled circuit: the state of every unit at every step, kept for
    backprop, with ~6 tensors of that size per step (drive, pre-activation, phi, its
    derivative, the update and the readout input). Checked against the training device's
    memory (a GPU's free memory, :func:`~cortex_resnet.core.resources.memory_budget_bytes`).
    """
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    act_bytes = 0
    what = f"parameters ({param_bytes / 2**20:.1f} MiB) with gradients and optimiser state"
    if isinstance(spec.model, CircuitModelSpec):
        n = max(net.n_units for net in model.areas) if isinstance(model, ConvChainClassifier) \
            else spec.circuit_spec().n_units
        k = spec.model.steps
        act_bytes = 6 * (k + 1) * spec.train.batch_size * n * 4
        what += f" + activations of {k + 1} steps x batch {spec.train.batch_size} x {n} units"
    check_memory(4 * param_bytes + act_bytes, "training memory",
                 f"{what}; lower train.batch_size, model.steps or the circuit size", device=device)


def build_model(spec: ExperimentSpec, dataset: Dataset) -> tuple[nn.Module, dict[str, Any]]:
    """The network of an experiment: an unrolled circuit classifier or a baseline.

    Returns the module (``(batch, *in_shape)`` -> logits ``(K, batch, n_classes)``) and
    ``{"model", "variant", "kind", "params", "params_allocated"}``: for circuits ``params``
    counts only the connections inside the circuit's masks (sparse/spatial circuits
    allocate dense matrices). Initial weights depend only on the seeds.
    """
    m = spec.model
    with torch.random.fork_rng(devices=[]):  # initialisers draw from the global RNG: isolate it
        torch.manual_seed(spec.seed)
        if isinstance(m, CircuitModelSpec) and m.areas:
            model = ConvChainClassifier(spec.circuit_spec(), m.areas, dataset.in_shape, dataset.n_classes, m.dt_ms,
                                        norm=m.norm, feedforward=m.feedforward, seed=spec.seed,
                                        variant=m.variant, dale=m.dale)
            info = {"model": f"conv E/I circuit, {len(m.areas)} areas, {m.variant}, K={m.steps}",
                    "variant": m.variant, "kind": "circuit"}
        elif isinstance(m, CircuitModelSpec):
            cspec = spec.circuit_spec()
            circuit = build_circuit(cspec, np.random.default_rng([cspec.seed, spec.seed]))
            net = unroll(circuit, steps=m.steps, dt_ms=m.dt_ms, variant=m.variant,
                         input_mode=m.input_mode, dtype=torch.float32, learnable=m.learnable,
                         norm=m.norm, state_gate=m.state_gate, dale=m.dale, init=m.init,
                         init_radius=m.init_radius, recurrence=m.recurrence, seed=spec.seed)
            model = CircuitClassifier(net, in_shape=dataset.in_shape, n_classes=dataset.n_classes,
                                      input_projection=m.input_projection,
                                      kernel_size=m.kernel_size, seed=spec.seed,
                                      readout_populations=m.readout_populations)
            info = {"model": f"E/I circuit, {m.variant}, {m.input_projection} input, K={m.steps}",
                    "variant": m.variant, "kind": "circuit"}
        else:
            model = build_baseline(m.name, dataset.in_shape, dataset.n_classes, m.params,
                                   seed=spec.seed)
            info = {"model": m.name + "".join(f" {k}={v}" for k, v in m.params.items()),
                    "variant": m.name, "kind": "baseline"}
    info["params_allocated"] = param_count(model)
    info["params"] = info["params_allocated"]
    if isinstance(model, ConvChainClassifier):
        info["params"] = model.param_count()
    elif info["kind"] == "circuit":  # count connections inside the circuit's masks only
        info["params"] = int(model.net.param_count()) + sum(
            p.numel() for n, p in model.named_parameters() if p.requires_grad and not n.startswith("net."))
    return model, info


def build_optimizer(spec: ExperimentSpec, model: nn.Module) -> torch.optim.Optimizer:
    o = spec.optim
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise SpecError("model.learnable", False, "a model with trainable parameters")
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                               weight_decay=o.weight_decay)
    cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    return cls(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
