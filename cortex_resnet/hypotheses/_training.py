"""Shared pieces of the training hypotheses: small unrolled circuits trained in memory.

Each task trains one :class:`~cortex_resnet.bridge.CircuitClassifier` (the
bridge's unrolled circuit with a learned input projection and an E-only
anytime readout) on a registered dataset (:mod:`cortex_resnet.data.datasets`) with Adam,
in float32, without writing files (a hypothesis runs tens of such trainings side
by side), through the training loop's epoch (:func:`cortex_resnet.training.epoch.fit_epoch`)
on its device (CUDA when present). Everything random comes from the task seed (circuit
weights, initial parameters, batch order); the dataset is fixed by
``data_seed``. Test accuracy per step uses :func:`cortex_resnet.training.loop.evaluate`.

Time scale: a residual net of depth ``K`` integrates a fixed time
``total_ms`` with ``dt = total_ms / K`` (deeper = a finer discretisation of the
same cortical dynamics, ``alpha = dt / tau``); a plain net has ``alpha = 1``.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from cortex_resnet.bridge import CircuitClassifier, unroll
from cortex_resnet.data.datasets import Dataset, get_dataset, known_datasets
from cortex_resnet.errors import SpecError
from cortex_resnet.model.circuit import build_circuit
from cortex_resnet.model.spec import load_spec, parse_spec
from cortex_resnet.training.distributed import rank_device
from cortex_resnet.training.epoch import fit_epoch, global_batches
from cortex_resnet.training.loop import evaluate
from cortex_resnet.hypotheses.base import Hypothesis, Params
from cortex_resnet.hypotheses._circuits import resolve_file

__all__ = ["TrainingParams", "prepare_training", "train_classifier", "TrainedClassifier", "dataset_for",
           "step_dt", "trained_hypothesis", "TRAINING_REQUIRES"]

#: what a training hypothesis needs installed (checked before a run starts)
TRAINING_REQUIRES = ("cortex_resnet.bridge", "cortex_resnet.training.loop")


class TrainingParams(Params):
    """Data, circuit and optimisation of the training hypotheses.

    ``dataset``/``data_seed``/``n_train``/``n_test``: the data; ``circuit``: a circuit model
    file, resized by ``n_E``/``n_I``/``n_inputs`` (the learned input projection writes into
    ``n_inputs`` channels); ``init``: ``balanced`` (fresh balanced weights, bulk radius
    ``init_radius``) or ``circuit``; ``input_mode``: ``pulse`` (input sets ``r_0`` only, like a
    feedforward net) or ``sustained``; ``total_ms``: time integrated by residual nets;
    ``epochs``, ``batch_size``, ``lr`` (Adam), ``loss_steps``: loss on the ``last`` step or the
    mean over ``all`` steps.
    """

    dataset: str = "digits"
    data_seed: int = Field(default=42, ge=0)
    n_train: int | None = Field(default=None, ge=10)
    n_test: int | None = Field(default=None, ge=10)
    circuit: str = "experiments/circuits/ei_dense.toml"
    n_E: int = Field(default=32, ge=1, le=4096)
    n_I: int = Field(default=8, ge=1, le=4096)
    n_inputs: int = Field(default=16, ge=1, le=4096)
    init: Literal["balanced", "circuit"] = "balanced"
    init_radius: float = Field(default=0.9, gt=0.0, le=10.0)
    input_mode: Literal["pulse", "sustained"] = "pulse"
    total_ms: float = Field(default=10.0, gt=0.0)
    epochs: int = Field(default=10, ge=1, le=10_000)
    batch_size: int = Field(default=64, ge=1, le=100_000)
    lr: float = Field(default=1e-3, gt=0.0, le=1.0)
    loss_steps: Literal["last", "all"] = "last"


def prepare_training(params: TrainingParams, base_dir: Path | None) -> dict[str, Any]:
    """Params as data plus the resized circuit spec (file content, so it is part of the cache key)."""
    if params.dataset not in known_datasets():
        raise SpecError("params.dataset", params.dataset, f"one of {', '.join(known_datasets())}")
    if params.dataset in ("mnist", "cifar10"):
        raise SpecError("params.dataset", params.dataset, "a dataset that needs no files (digits, mnist1d, "
                        "connected, crossing)")
    spec = load_spec(resolve_file(params.circuit, base_dir)).replace(**{
        "populations.E.n": params.n_E, "populations.I.n": params.n_I, "input.n_inputs": params.n_inputs,
        "input.projection": "random"})
    out = params.model_dump(mode="json")
    out["circuit_spec"] = spec.model_dump(mode="json")
    return out


@functools.lru_cache(maxsize=4)
def dataset_for(name: str, seed: int, n_train: int | None, n_test: int | None) -> Dataset:
    """The dataset (cached per process: tasks of one run share it)."""
    return get_dataset(name, seed=seed, n_train=n_train, n_test=n_test)


def step_dt(prepared: dict[str, Any], steps: int, variant: str) -> float:
    """Euler step (ms) of a net of depth ``steps``: ``total_ms / steps``, capped at the smallest tau."""
    if variant == "plain":
        return 1.0
    spec = prepared["circuit_spec"]["populations"]
    tau_min = min(spec["E"]["tau_ms"], spec["I"]["tau_ms"])
    return min(prepared["total_ms"] / steps, tau_min)


@dataclass
class TrainedClassifier:
    """A trained classifier and its scores."""

    model: torch.nn.Module
    train_loss: float
    train_accuracy: float
    test_loss: float
    accuracy_per_step: list[float]
    params: int
    seconds: float
    x_test: torch.Tensor
    y_test: torch.Tensor


def train_classifier(prepared: dict[str, Any], seed: int, *, variant: str, steps: int,
                     tied: bool | None = None, dt_ms: float | None = None,
                     input_mode: str | None = None) -> TrainedClassifier:
    """Build, train and score one unrolled circuit classifier.

    Parameters
    ----------
    prepared : :func:`prepare_training` output
    seed : circuit weights, initial parameters and batch order
    variant : bridge variant (``tied``, ``untied``, ``plain``, ``projection``, ``gated``)
    steps : depth ``K``
    tied : one weight matrix for all steps (bridge default by variant)
    dt_ms : Euler step; default :func:`step_dt`
    input_mode : ``pulse`` or ``sustained``; default ``prepared["input_mode"]``
    """
    ds = dataset_for(prepared["dataset"], prepared["data_seed"], prepared["n_train"], prepared["n_test"])
    spec = parse_spec(prepared["circuit_spec"]).replace(seed=int(seed))
    circuit = build_circuit(spec, np.random.default_rng([int(seed), 7]))
    dt = step_dt(prepared, steps, variant) if dt_ms is None else dt_ms
    dev = rank_device("auto", 1, 0)  # the training loop's choice: CUDA when present
    with torch.random.fork_rng(devices=[]):  # bridge initialisers: isolate the global RNG
        torch.manual_seed(int(seed))
        net = unroll(circuit, steps, dt, variant=variant, input_mode=input_mode or prepared["input_mode"],
                     dtype=torch.float32,
                     tied=tied, init=prepared["init"], init_radius=prepared["init_radius"], seed=int(seed))
        model = CircuitClassifier(net, ds.in_shape, ds.n_classes, seed=int(seed)).to(dev)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=prepared["lr"])
    x_tr, y_tr = torch.as_tensor(ds.x_train, device=dev), torch.as_tensor(ds.y_train, device=dev)
    x_te, y_te = torch.as_tensor(ds.x_test, device=dev), torch.as_tensor(ds.y_test, device=dev)
    gen = torch.Generator().manual_seed(int(seed))  # one stream over all epochs (the batch order)
    n = len(y_tr)
    batches = global_batches(n, prepared["batch_size"], False, 1)
    start = time.perf_counter()
    model.train()
    for _ in range(prepared["epochs"]):
        # float32 also on a GPU (no bf16): the verdicts compare small accuracy differences
        sums = fit_epoch(model, opt, x_tr, y_tr, torch.randperm(n, generator=gen).to(dev), batches,
                         loss_steps=prepared["loss_steps"])
        if sums.bad_step >= 0:  # diverged: the weights are not finite, the scores below say so
            break
    seconds = time.perf_counter() - start
    train_loss, train_acc = evaluate(model, x_tr, y_tr)
    test_loss, acc_steps = evaluate(model, x_te, y_te)
    if not np.isfinite(train_loss):  # diverged: no number to compare (the analysis drops the seed)
        train_loss = float("nan")
    return TrainedClassifier(model, float(train_loss), float(train_acc[-1]), float(test_loss), list(acc_steps),
                             int(net.param_count()) + sum(p.numel() for n_, p in model.named_parameters()
                                                          if not n_.startswith("net.")),
                             seconds, x_te, y_te)


def trained_hypothesis(**fields: Any) -> Hypothesis:
    """Preset of the training hypotheses: params prepared by :func:`prepare_training`, the bridge and
    the training loop required; ``fields`` as :class:`Hypothesis`."""
    return Hypothesis(prepare=prepare_training, requires=TRAINING_REQUIRES, **fields)
