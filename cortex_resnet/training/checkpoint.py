"""Training checkpoints: tensors and plain values only, written atomically, read with ``weights_only``.

A checkpoint is a dict of state dicts (model, optimiser), RNG states *as
tensors* (so that ``torch.load(..., weights_only=True)`` accepts them), the
metrics history (numbers and strings), the experiment's TOML text and a
SHA-256 digest of all of it. Loading never unpickles arbitrary objects:
``torch.load`` runs with ``weights_only=True``, which refuses anything but
tensors and primitive containers; the digest catches changed bytes inside
tensors (which the zip container does not check). A tampered, truncated or
foreign file becomes a :class:`~cortex_resnet.errors.SpecError` that says what
to do.
"""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from cortex_resnet.errors import SpecError
from cortex_resnet.io.results import atomic_path

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "rng_state", "set_rng_state",
           "save_checkpoint", "load_checkpoint", "content_digest"]

CHECKPOINT_FORMAT = "cortex_resnet.train.checkpoint"
CHECKPOINT_VERSION = 1
_REQUIRED = ("format", "version", "epoch", "global_step", "model", "optimizer", "rng", "history",
             "experiment")


def rng_state() -> dict[str, Any]:
    """The global torch RNG states (CPU and every CUDA device) as uint8 tensors.

    Our own code draws from explicit generators seeded per epoch; the global
    states are saved too so that library code that uses them (dropout, say)
    continues exactly after a resume.
    """
    state: dict[str, Any] = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["torch_cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved (CUDA states only where the devices exist)."""
    torch.set_rng_state(state["torch_cpu"].cpu())
    cuda = state.get("torch_cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


def content_digest(obj: Any) -> str:
    """SHA-256 over a nest of dicts/lists of tensors and plain values (order-independent for dicts)."""
    h = hashlib.sha256()

    def walk(o: Any) -> None:
        if isinstance(o, torch.Tensor):
            t = o.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(o, dict):
            h.update(b"{")
            for k in sorted(o, key=lambda x: (type(x).__name__, str(x))):
                h.update(repr(k).encode())
                walk(o[k])
            h.update(b"}")
        elif isinstance(o, (list, tuple)):
            h.update(b"[")
            for v in o:
                walk(v)
            h.update(b"]")
        else:
            h.update(f"{type(o).__name__}:{o!r};".encode())

    walk(obj)
    return h.hexdigest()


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write a checkpoint atomically (a killed write leaves the previous one intact)."""
    missing = [k for k in _REQUIRED if k not in payload and k not in ("format", "version")]
    if missing:
        raise ValueError(f"checkpoint payload lacks {missing}")
    data = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **payload}
    data["sha256"] = content_digest(data)
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(data, tmp)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``) and check its layout.

    Raises
    ------
    SpecError
        Missing, truncated, tampered or foreign file (the message says which and what to do).
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError("checkpoint", str(path), "an existing checkpoint file (checkpoint.pt in a "
                        "run folder made by `cortex-resnet train`)")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # weights_only refused an object: the file holds more than tensors and plain values
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SpecError("checkpoint", str(path), "a checkpoint holding only tensors and plain "
                        "values; this file contains other Python objects and was refused "
                        f"unread (tampered or not ours: {first[:160]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError) as err:
        raise SpecError("checkpoint", str(path), "a complete checkpoint written by cortex-resnet "
                        f"train; it is truncated or corrupt ({type(err).__name__}: "
                        f"{str(err)[:160]}); delete it and rerun, or restore a copy") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise SpecError("checkpoint", str(path), f"a {CHECKPOINT_FORMAT} file (this is some other "
                        "torch file)")
    if data.get("version") != CHECKPOINT_VERSION:
        raise SpecError("checkpoint", str(path), f"checkpoint version {CHECKPOINT_VERSION} "
                        f"(file has {data.get('version')!r}); rerun the training")
    missing = [k for k in _REQUIRED + ("sha256",) if k not in data]
    if missing:
        raise SpecError("checkpoint", str(path), f"a complete checkpoint (missing {missing})")
    digest = data.pop("sha256")
    if content_digest(data) != digest:
        raise SpecError("checkpoint", str(path), "a checkpoint whose content matches its SHA-256 "
                        "digest; this one was changed after it was written (tampered or corrupt): "
                        "delete it and rerun, or restore a copy")
    return data
