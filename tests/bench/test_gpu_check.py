"""``make gpu-check`` without a GPU: the CPU-possible parts run, the rest is skipped with one line each."""

from __future__ import annotations

import json

import pytest
import torch

from cortex_resnet.bench import gpu_check


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU mode")
def test_gpu_check_tiny_without_a_gpu(tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--tiny", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report == json.loads(out.read_text())
    assert report["ok"] and not report["gpu_available"]
    # CPU sides measured
    assert report["rate"]["cpu_s"] > 0 and report["rate"]["steps"] == gpu_check.TINY.rate_steps
    for variant in ("tied", "untied"):
        part = report["mnist1d_bf16"][variant]
        assert part["cpu_bf16"]["amp"] == "bf16" and part["cpu_bf16"]["epochs"] == 1
        assert 0.0 <= part["cpu_bf16"]["test_accuracy"] <= 1.0 and part["cpu_bf16"]["examples_per_s"] > 0
        assert "skipped" in part["cuda_bf16"]
    assert report["resnet20"]["cpu_float32"]["images_per_s"] > 0
    assert report["ddp"]["backend"] == "gloo" and report["ddp"]["grads_equal_single_process"]
    # one clear line per skipped GPU part
    skipped = [line for line in captured.err.splitlines() if line.startswith("skipped: ")]
    assert len(skipped) == 6, captured.err
    assert report["conv_circuit"]["skipped"] == "no CUDA device"
    assert "skipped" in report["rate"]["gpu"] and "skipped" in report["gpu_tests"]
    assert not torch.backends.cudnn.benchmark


def test_gpu_check_refuses_to_overwrite(tmp_path):
    out = tmp_path / "x.json"
    out.write_text("mine")
    assert gpu_check.main(["--tiny", "--out", str(out)]) == 2
    assert out.read_text() == "mine"
