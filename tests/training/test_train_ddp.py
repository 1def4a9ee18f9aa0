"""Data-parallel training: the same command under torchrun with 2 processes (gloo, CPU, loopback).

Each rank takes half of every global batch and DDP averages the gradients, so
after training the weights equal those of one process with the same global
batch up to float32 rounding (the sums are split differently): we check
agreement to 1e-4 relative, and that only rank 0 wrote the run folder.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cortex_resnet.training.experiment import dump_experiment, parse_experiment
from cortex_resnet.training.loop import train
from cortex_resnet.training.distributed import DistContext, shard

SPEC = {"name": "ddp_test", "seed": 1, "data": {"name": "digits", "n_train": 400, "n_test": 200},
        "model": {"kind": "circuit", "steps": 3, "dt_ms": 1.0,
                  "spec": {"name": "tiny", "populations": {
                      "E": {"n": 16, "tau_ms": 4.0, "transfer": {"name": "relu"}},
                      "I": {"n": 4, "tau_ms": 2.0, "transfer": {"name": "relu"}}},
                      "connectivity": {"J_EE": 0.5, "J_EI": 1.0, "J_IE": 1.0, "J_II": 0.5},
                      "input": {"n_inputs": 8, "projection": "random", "gain_I": 0.5}}},
        "optim": {"lr": 0.003}, "train": {"epochs": 2, "batch_size": 50}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("n,world", [(10, 3), (2, 2), (1, 2), (7, 1)])
def test_shards_cover_everything_once(n, world):
    parts = [shard(n, DistContext(r, world, r, torch.device("cpu"))) for r in range(world)]
    covered = [i for p in parts for i in range(n)[p]]
    assert covered == list(range(n))


@pytest.mark.slow
def test_two_processes_gloo_match_one(tmp_path):
    spec = parse_experiment(SPEC)
    toml = tmp_path / "exp.toml"
    toml.write_text(dump_experiment(spec))
    exe = Path(sys.executable).with_name("cortex-resnet")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(exe), "train",
           str(toml), "--device", "cpu", "--out", str(tmp_path / "ddp"), "--threads", "1",
           "--no-progress", "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads(p.stdout[p.stdout.index("{"):])
    assert summary["world_size"] == 2
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = train(spec, tmp_path / "one", progress=False)
    finally:
        torch.set_num_threads(before)
    w2 = torch.load(tmp_path / "ddp" / "model.pt", weights_only=True)["model"]
    w1 = torch.load(tmp_path / "one" / "model.pt", weights_only=True)["model"]
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-4, atol=1e-5)
    assert abs(summary["test_accuracy"] - one["test_accuracy"]) <= 0.01
