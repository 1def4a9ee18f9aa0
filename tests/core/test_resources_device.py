"""The memory budget of CUDA allocations is the device's free memory, not host RAM."""

from __future__ import annotations

from types import SimpleNamespace

import psutil
import pytest
import torch

from cortex_resnet.core import resources
from cortex_resnet.errors import ResourceError
from cortex_resnet.training.loop import build_model, check_training_memory, load_data
from tests.training.test_train import tiny_spec


@pytest.fixture
def gpu_with_2_gib_free(monkeypatch):
    asked = []

    def mem_get_info(device=None):
        asked.append(torch.device(device))
        return 2 * 2**30, 80 * 2**30

    monkeypatch.delenv("CORTEX_RESNET_MEMORY_BUDGET_GB", raising=False)
    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    return asked


def test_cuda_budget_is_a_fraction_of_free_device_memory(gpu_with_2_gib_free):
    assert resources.memory_budget_bytes("cuda:1") == int(0.9 * 2 * 2**30)
    assert gpu_with_2_gib_free == [torch.device("cuda:1")]
    assert resources.memory_budget_bytes(torch.device("cuda", 0)) == int(0.9 * 2 * 2**30)


def test_host_budget_ignores_the_device(gpu_with_2_gib_free, monkeypatch):
    class VM:
        available = 64 * 2**30

    monkeypatch.setattr(psutil, "virtual_memory", lambda: VM)
    assert resources.memory_budget_bytes() == 32 * 2**30
    assert resources.memory_budget_bytes("cpu") == 32 * 2**30
    assert gpu_with_2_gib_free == []


def test_check_memory_refuses_what_the_card_cannot_hold(gpu_with_2_gib_free, monkeypatch):
    # a host with room for 3 GiB (the budget is half the available RAM, which varies by machine)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=64 * 2**30))
    resources.check_memory(1.5 * 2**30, "x", device="cuda:0")  # fits: 1.5 < 1.8 GiB
    with pytest.raises(ResourceError, match=r"free memory of cuda:0: 1\.8 GiB"):
        resources.check_memory(3 * 2**30, "training memory", "lower the batch", device="cuda:0")
    resources.check_memory(3 * 2**30, "host array")  # host RAM: not the card's budget


def test_env_overrides_both(gpu_with_2_gib_free, monkeypatch):
    monkeypatch.setenv("CORTEX_RESNET_MEMORY_BUDGET_GB", "0.5")
    assert resources.memory_budget_bytes("cuda:0") == 2**29 == resources.memory_budget_bytes()


def test_training_checks_the_training_device(gpu_with_2_gib_free):
    """check_training_memory asks the device it trains on."""
    spec = tiny_spec(**{"data.n_train": 100})
    model, _ = build_model(spec, load_data(spec))
    check_training_memory(spec, model, torch.device("cuda:0"))
    assert gpu_with_2_gib_free == [torch.device("cuda:0")]
    with pytest.raises(ResourceError, match="training memory.*free memory of cuda:0"):
        check_training_memory(spec.replace(**{"train.batch_size": 10**6}), model, torch.device("cuda:0"))
