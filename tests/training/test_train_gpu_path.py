"""The GPU path of the training loop, exercised on CPU as far as torch allows.

bf16 autocast (the CUDA default) on circuit models, device-side sums with a host
check once per chunk, per-rank shards and their augmentation, channels_last inputs,
compiled evaluation, and the device each ``torchrun`` rank picks.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cortex_resnet.training import distributed as train_ddp
from cortex_resnet.training import epoch as train_epoch
from cortex_resnet.errors import SpecError
from cortex_resnet.training.distributed import DistContext, rank_device, setup_distributed, shard
from cortex_resnet.training.epoch import apply_crop_flip, crop_flip, crop_flip_draws, fit_epoch, global_batches
from cortex_resnet.training.loop import train

from .test_train import DENSE, tiny_spec


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------ bf16 autocast

def _lif_dense() -> dict:
    lif = {"name": "lif", "tau_m_ms": 20.0, "t_ref_ms": 2.0, "theta_mV": 20.0, "v_reset_mV": 10.0,
           "sigma_mV": 5.0}
    spec = {k: v for k, v in DENSE.items()}
    spec["populations"] = {"E": {"n": 16, "tau_ms": 10.0, "transfer": lif},
                           "I": {"n": 4, "tau_ms": 5.0, "transfer": lif}}
    spec["connectivity"] = {"J_EE": 0.05, "J_EI": 0.1, "J_IE": 0.1, "J_II": 0.05}
    return spec


@pytest.mark.parametrize("variant", ["tied", "untied", "plain", "gated", "projection"])
def test_autocast_forward_keeps_the_state_in_float32(variant):
    """Under bf16 autocast the products run in bf16, the state r_k stays float32 and is
    close to the float32 trajectory (bf16 keeps 8 mantissa bits: relative rounding 2^-8 = 0.4 %
    per product; over 3 steps we allow 5 %)."""
    from cortex_resnet.bridge import CircuitClassifier, unroll
    from cortex_resnet.model.circuit import build_circuit
    from cortex_resnet.model.spec import parse_spec

    c = build_circuit(parse_spec(DENSE))
    torch.manual_seed(0)
    clf = CircuitClassifier(unroll(c, 3, 1.0, variant=variant), (10,), n_classes=3)
    x = torch.rand(4, 10, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = clf.net(clf.encode(x))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            u = clf.encode(x)
            states = clf.net(u)
            logits = clf(x)
    assert u.dtype == torch.float32 and states.dtype == torch.float32
    assert logits.shape == (3, 4, 3) and torch.isfinite(logits).all()
    assert (states - ref).abs().max() <= 0.05 * ref.abs().max()


def test_autocast_lif_transfer_runs_in_float32():
    """erfcx has no bf16 kernel: the Siegert rate is computed in float32 under autocast and
    equals the float32 rate of the same (bf16-rounded) input exactly."""
    from cortex_resnet.model.transfer import get_transfer

    lif = get_transfer("lif")
    z = torch.linspace(0.0, 25.0, 11)
    zb = z.bfloat16()
    out = lif(zb)
    assert out.dtype == torch.float32
    assert torch.equal(out, lif(zb.float()))


def test_autocast_net_input_of_another_dtype_is_still_refused():
    from cortex_resnet.bridge import unroll
    from cortex_resnet.model.circuit import build_circuit
    from cortex_resnet.model.spec import parse_spec

    net = unroll(build_circuit(parse_spec(DENSE)), 3, 1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(SpecError, match="under autocast"):
        net(torch.zeros(2, 16, dtype=torch.float16))


def test_bf16_training_matches_float32_accuracy(tmp_path):
    """The CUDA default (bf16 autocast) on CPU: a LIF circuit (erfcx) and a ReLU circuit train,
    and reach the float32 run's test accuracy within 5 points. The margin: the 360-example
    digits test set has a binomial standard error of ~1.6 points at 90 % accuracy, and bf16
    rounding changes the training trajectory like a different seed (seed-to-seed spread of this
    tiny run: a few points); 5 points is ~3 standard errors."""
    for name, circuit in (("relu", DENSE), ("lif", _lif_dense())):
        base = {"model.spec": circuit, "train.epochs": 3}
        s32 = train(tiny_spec(**base, **{"train.amp": "off"}), tmp_path / f"{name}32", progress=False)
        s16 = train(tiny_spec(**base, **{"train.amp": "bf16"}), tmp_path / f"{name}16", progress=False)
        assert s16["status"] == "completed"
        assert s32["test_accuracy"] > 0.5, name
        assert abs(s16["test_accuracy"] - s32["test_accuracy"]) <= 0.05, (name, s16, s32)


# ------------------------------------------------------------------ the loop

class _Counting(nn.Module):
    """Logits (1, batch, 2) from a linear layer; NaN from call ``nan_at`` (1-based) on."""

    def __init__(self, nan_at: int | None = None, want_channels_last: bool = False):
        super().__init__()
        self.lin = nn.Linear(4, 2)
        self.calls, self.nan_at, self.want = 0, nan_at, want_channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.want:
            assert x.is_contiguous(memory_format=torch.channels_last)
        out = self.lin(x.flatten(1)[:, :4])[None]
        if self.nan_at is not None and self.calls >= self.nan_at:
            out = out * float("nan")
        return out


def _data(n: int = 60, shape=(4,)):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, *shape, generator=g), torch.randint(0, 2, (n,), generator=g)


def test_host_checks_once_per_chunk_and_finds_the_first_bad_step(monkeypatch):
    calls = []
    real = train_epoch._first_bad
    monkeypatch.setattr(train_epoch, "_first_bad", lambda ctx, t: calls.append(1) or real(ctx, t))
    x, y = _data()
    batches = global_batches(60, 5, False, 1)  # 12 steps
    model = _Counting()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sums = fit_epoch(model, opt, x, y, torch.arange(60), batches, sync_every=5)
    assert len(calls) == 3 and sums.bad_step == -1 and sums.steps == 12  # steps 5, 10, 12
    assert 0 <= float(sums.correct) <= 60 and sums.loss.dtype == torch.float64
    calls.clear()
    model = _Counting(nan_at=7)
    sums = fit_epoch(model, torch.optim.SGD(model.parameters(), lr=0.1), x, y, torch.arange(60), batches,
                     sync_every=5)
    assert sums.bad_step == 6 and sums.steps == 10 and len(calls) == 2  # found at the check after step 10


def test_sums_equal_a_per_step_reference():
    """Device-side sums equal the per-step float sums of the old loop (same data, same model)."""
    x, y = _data()
    batches = global_batches(60, 7, False, 1)
    m1, m2 = _Counting(), _Counting()
    m2.load_state_dict(m1.state_dict())
    sums = fit_epoch(m1, torch.optim.SGD(m1.parameters(), lr=0.1), x, y, torch.arange(60), batches)
    opt, loss_ref, correct_ref = torch.optim.SGD(m2.parameters(), lr=0.1), 0.0, 0
    for a, b in batches:
        logits = m2(x[a:b])
        loss = nn.functional.cross_entropy(logits[-1], y[a:b], reduction="sum")
        opt.zero_grad()
        (loss / (b - a)).backward()
        opt.step()
        loss_ref += float(loss.detach())
        correct_ref += int((logits[-1].argmax(-1) == y[a:b]).sum())
    assert float(sums.loss) == pytest.approx(loss_ref, rel=1e-6) and float(sums.correct) == correct_ref


def test_each_rank_augments_its_shard_as_the_whole_batch_would():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    x = torch.rand(10, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    whole = crop_flip(x, g1, pad=4)
    draws = crop_flip_draws(g2, [10])
    for rank in range(3):
        loc = shard(10, DistContext(rank, 3, rank, torch.device("cpu")))
        assert torch.equal(apply_crop_flip(x[loc], draws[:, loc]), whole[loc])


def test_channels_last_inputs_reach_the_model():
    x, y = _data(20, (4, 2, 2))
    model = _Counting(want_channels_last=True)
    fit_epoch(model, torch.optim.SGD(model.parameters(), lr=0.1), x, y, torch.arange(20),
              global_batches(20, 10, False, 1), channels_last=True)
    assert model.calls == 2


def test_uses_conv2d():
    from cortex_resnet.training.baselines import build_baseline, uses_conv2d

    assert uses_conv2d(build_baseline("resnet", (3, 8, 8), 10, {"depth": 8}))
    assert not uses_conv2d(build_baseline("mlp", (40,), 10, {}))
    assert not uses_conv2d(build_baseline("cnn", (1, 40), 10, {}))  # 1-D


def test_evaluation_runs_the_compiled_model(tmp_path, monkeypatch):
    """With train.compile on, the test set goes through the compiled model (torch.compile is
    replaced by a recording wrapper: the real one needs a C++ toolchain and minutes on CPU)."""
    seen = {"train": 0, "eval": 0}

    class Compiled(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            seen["train" if self.training else "eval"] += 1
            return self.inner(x)

    monkeypatch.setattr(torch, "compile", lambda m, **kw: Compiled(m))
    train(tiny_spec(**{"train.compile": True, "train.epochs": 1, "data.n_train": 100}), tmp_path / "r",
          progress=False)
    assert seen["train"] == 2 and seen["eval"] >= 1
    assert not torch.backends.cudnn.benchmark  # set only for the run, and only on CUDA


# ------------------------------------------------------------------ devices under torchrun

@pytest.fixture
def four_gpus(monkeypatch):
    """Pretend 4 CUDA devices are visible (set_device records instead of switching)."""
    picked = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: picked.append(torch.device(d)))
    return picked


@pytest.mark.parametrize("device,world,local,want", [
    ("cuda:0", 4, 2, "cuda:2"),     # the bug: every rank on cuda:0
    ("cuda:3", 4, 1, "cuda:1"),
    ("cuda", 4, 3, "cuda:3"),
    ("auto", 4, 2, "cuda:2"),
    ("auto", 8, 5, "cuda:1"),       # more ranks than visible cards: wrap around
    ("cuda:3", 1, 0, "cuda:3"),     # one process: the named card
    ("cuda", 1, 0, "cuda:0"),
    ("cpu", 4, 2, "cpu"),
])
def test_rank_device(four_gpus, device, world, local, want):
    assert rank_device(device, world, local) == torch.device(want)


def test_setup_distributed_reads_local_rank(four_gpus, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    ctx = setup_distributed("cuda:2")
    assert ctx.device == torch.device("cuda:2") and four_gpus == [torch.device("cuda:2")]
    monkeypatch.setenv("LOCAL_RANK", "x")
    with pytest.raises(SpecError, match="LOCAL_RANK"):
        setup_distributed("cuda:0")


def test_rank_device_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SpecError, match="no CUDA device"):
        rank_device("cuda:0", 2, 1)
    assert train_ddp.rank_device("auto", 2, 1) == torch.device("cpu")


# ------------------------------------------------------------------ on a GPU (skipped here)

@pytest.mark.gpu
def test_cuda_bf16_matches_float32_on_cuda(tmp_path):
    s32 = train(tiny_spec(**{"device": "cuda", "train.amp": "off", "train.epochs": 3}), tmp_path / "a",
                progress=False)
    s16 = train(tiny_spec(**{"device": "cuda", "train.amp": "auto", "train.epochs": 3}), tmp_path / "b",
                progress=False)
    assert s16["device"].startswith("cuda") and abs(s16["test_accuracy"] - s32["test_accuracy"]) <= 0.05


@pytest.mark.gpu
def test_cuda_conv_encoder_channels_last_trains(tmp_path):
    from .test_train import GRID

    spec = tiny_spec(**{"device": "cuda", "data": {"name": "crossing", "params": {"size": 4, "n_train": 400,
                                                                                  "n_test": 200}},
                        "model.spec": GRID, "model.input_projection": "conv", "model.kernel_size": 3,
                        "train.epochs": 1})
    s = train(spec, tmp_path / "r", progress=False)
    assert s["status"] == "completed"
