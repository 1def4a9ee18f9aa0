"""Kill -9 a training run mid-epoch, resume it: the result equals an uninterrupted run, bit for bit.

Why bitwise (on CPU, same thread count): everything the remaining epochs depend
on is either restored exactly from the checkpoint of the last completed epoch
(weights, optimiser moments and step counts, RNG states: ``torch.save`` stores
the bytes) or recomputed from the seed (the epoch's data order comes from a
generator seeded by ``(seed, epoch)``; the learning rate is a function of the
step). The interrupted epoch is redone from its start, with the same batches in
the same order, through the same deterministic CPU kernels.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cortex_resnet.training.experiment import dump_experiment, parse_experiment
from cortex_resnet.training.loop import FAULT_ENV, train

SPEC = {"name": "resume_test", "seed": 3,
        "data": {"name": "digits"},
        "model": {"kind": "circuit", "steps": 4, "dt_ms": 1.0,
                  "spec": {"name": "tiny", "populations": {
                      "E": {"n": 24, "tau_ms": 4.0, "transfer": {"name": "relu"}},
                      "I": {"n": 6, "tau_ms": 2.0, "transfer": {"name": "relu"}}},
                      "connectivity": {"J_EE": 0.5, "J_EI": 1.0, "J_IE": 1.0, "J_II": 0.5,
                                       "weight_cv": 0.5},
                      "input": {"n_inputs": 8, "projection": "random", "gain_I": 0.5}}},
        "optim": {"lr": 0.003}, "schedule": {"kind": "cosine"},
        "train": {"epochs": 3, "batch_size": 100}}
STEPS_PER_EPOCH = 15  # 1438 training digits in batches of 100


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("cortex-resnet")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def _metrics(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:  # wall times differ between runs; everything else must not
        r.pop("wall_s")
        r.pop("examples_per_s")
    return rows


def test_kill_mid_epoch_then_resume_is_bitwise_exact(tmp_path):
    spec = parse_experiment(SPEC)
    toml = tmp_path / "exp.toml"
    toml.write_text(dump_experiment(spec))
    killed = tmp_path / "killed"
    kill_at = STEPS_PER_EPOCH + 7  # mid-way through the second epoch
    p = _cli("train", str(toml), "--out", str(killed), "--threads", "1", "--no-progress",
             env={FAULT_ENV: str(kill_at)})
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert not (killed / "model.pt").exists()
    assert len(_metrics(killed / "metrics.csv")) == 1  # one epoch completed before the kill
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the same thread count as the killed CLI run
    try:
        resumed = train(spec, killed, resume=True, progress=False)
        ref = train(parse_experiment(SPEC), tmp_path / "straight", progress=False)
    finally:
        torch.set_num_threads(before)
    w_resumed = torch.load(killed / "model.pt", weights_only=True)["model"]
    w_straight = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)["model"]
    assert w_resumed.keys() == w_straight.keys()
    assert all(torch.equal(w_resumed[k], w_straight[k]) for k in w_resumed)
    assert _metrics(killed / "metrics.csv") == _metrics(tmp_path / "straight" / "metrics.csv")
    assert resumed["accuracy_per_step"] == ref["accuracy_per_step"]


def test_resume_without_checkpoint_starts_afresh(tmp_path):
    spec = parse_experiment({**SPEC, "train": {"epochs": 1, "batch_size": 100}})
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        s = train(spec, tmp_path / "new", resume=True, progress=False)
    finally:
        torch.set_num_threads(before)
    assert s["epochs"] == 1
