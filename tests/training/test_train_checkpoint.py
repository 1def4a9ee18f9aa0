"""Checkpoints hold only tensors and plain values; loading never unpickles arbitrary objects."""

from __future__ import annotations

import pickle

import pytest
import torch

from cortex_resnet.errors import SpecError
from cortex_resnet.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state


def _payload() -> dict:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    return {"epoch": 2, "global_step": 80, "model": model.state_dict(), "optimizer": opt.state_dict(),
            "rng": rng_state(), "history": [{"epoch": 1, "test_accuracy": 0.5, "lr": 0.1}],
            "experiment": "name = 'x'\n"}


def test_round_trip_with_weights_only(tmp_path):
    p = save_checkpoint(tmp_path / "checkpoint.pt", _payload())
    ck = load_checkpoint(p)
    assert ck["epoch"] == 2 and ck["history"][0]["test_accuracy"] == 0.5
    payload = torch.load(p, weights_only=True)
    assert torch.equal(ck["model"]["weight"], payload["model"]["weight"])
    assert isinstance(ck["rng"]["torch_cpu"], torch.Tensor)
    assert set(ck["optimizer"]["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}


def test_rng_state_restores_the_stream():
    state = rng_state()
    a = torch.rand(5)
    set_rng_state(state)
    assert torch.equal(torch.rand(5), a)


class _Evil:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused_unread(tmp_path):
    marker = tmp_path / "pwned"
    payload = {**_payload(), "history": [_Evil(str(marker))]}
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": "cortex_resnet.train.checkpoint", "version": 1, **payload}, path)
    with pytest.raises(SpecError, match="refused unread"):
        load_checkpoint(path)
    assert not marker.exists()


def test_plain_pickle_file_is_refused(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(pickle.dumps({"epoch": 1}))
    with pytest.raises(SpecError, match="checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("cut", [10, 500])
def test_truncated_checkpoint(tmp_path, cut):
    p = save_checkpoint(tmp_path / "checkpoint.pt", _payload())
    p.write_bytes(p.read_bytes()[:cut])
    with pytest.raises(SpecError, match="truncated or corrupt"):
        load_checkpoint(p)


def test_flipped_bytes_are_detected(tmp_path):
    p = save_checkpoint(tmp_path / "checkpoint.pt", _payload())
    raw = bytearray(p.read_bytes())
    mid = len(raw) // 2
    raw[mid:mid + 64] = b"\xff" * 64  # tamper with the middle of the zip archive
    p.write_bytes(bytes(raw))
    with pytest.raises(SpecError, match="tampered or corrupt"):
        load_checkpoint(p)


def test_changed_number_is_detected(tmp_path):
    """A plausible edit (a weight changed inside a valid file) fails the digest."""
    payload = _payload()
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, payload)
    data = torch.load(path, weights_only=True)
    data["model"]["weight"][0, 0] += 1.0
    torch.save(data, path)
    with pytest.raises(SpecError, match="SHA-256"):
        load_checkpoint(path)


def test_foreign_torch_file(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(SpecError, match="some other torch file"):
        load_checkpoint(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(SpecError, match="existing checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")


def test_save_is_atomic_and_needs_all_parts(tmp_path):
    with pytest.raises(ValueError, match="lacks"):
        save_checkpoint(tmp_path / "c.pt", {"epoch": 1})
    assert list(tmp_path.iterdir()) == []
