"""The pieces of one training epoch: data order, augmentation, loss, evaluation, progress.

Everything random here is a function of ``(seed, epoch)`` (:func:`epoch_generator`),
so a resumed run redoes an interrupted epoch with the same batches.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .train_ddp import DistContext, shard

__all__ = ["epoch_generator", "crop_flip", "batch_loss", "evaluate", "global_batches", "progress_bar",
           "echo"]


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of one epoch's data order (and augmentation): a function of (seed, epoch)."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + 7919 * int(epoch)) % 2**63)


def crop_flip(x: torch.Tensor, g: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random ``pad``-pixel-shifted crops and horizontal flips of images (B, C, H, W)."""
    B, _, H, W = x.shape
    dy, dx = (torch.randint(0, 2 * pad + 1, (2, B), generator=g)).to(x.device)
    flip = (torch.rand(B, generator=g) < 0.5).to(x.device)
    xp = F.pad(x, (pad, pad, pad, pad))
    rows = dy[:, None] + torch.arange(H, device=x.device)
    cols = dx[:, None] + torch.arange(W, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    b = torch.arange(B, device=x.device)[:, None, None]
    return xp.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def batch_loss(logits: torch.Tensor, y: torch.Tensor, mode: str) -> torch.Tensor:
    """Summed cross-entropy over the batch: last step, or the mean over all steps."""
    if mode == "last":
        return F.cross_entropy(logits[-1].float(), y, reduction="sum")
    K = logits.shape[0]
    return F.cross_entropy(logits.float().flatten(0, 1), y.repeat(K), reduction="sum") / K


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1000,
             ctx: DistContext | None = None, amp: bool = False) -> tuple[float, list[float]]:
    """Test loss (last step) and accuracy of the readout at every step.

    Under DDP each rank scores its share and the counts are summed.
    """
    was = model.training
    model.eval()
    sl = shard(len(y), ctx) if ctx is not None else slice(0, len(y))
    xs, ys = x[sl], y[sl]
    dev = x.device
    loss = torch.zeros((), dtype=torch.float64, device=dev)
    correct: torch.Tensor | None = None
    for i in range(0, len(ys), batch_size):
        xb, yb = xs[i:i + batch_size], ys[i:i + batch_size]
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(xb)
        loss += F.cross_entropy(logits[-1].float(), yb, reduction="sum").double()
        c = (logits.argmax(-1) == yb).sum(dim=1).double()
        correct = c if correct is None else correct + c
    if correct is None:  # an empty shard: ask the model for its number of steps
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            correct = torch.zeros(model(x[:1]).shape[0], dtype=torch.float64, device=dev)
    if ctx is not None:
        ctx.all_sum(loss)
        ctx.all_sum(correct)
    model.train(was)
    n = len(y)
    return float(loss) / n, (correct / n).tolist()


def global_batches(n: int, batch: int, drop_last: bool, world: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each global batch of one epoch (indices into its permutation)."""
    starts = range(0, n, batch)
    out = [(s, min(s + batch, n)) for s in starts]
    if out and (out[-1][1] - out[-1][0] < (batch if drop_last else world)):
        out.pop()  # a last batch smaller than the number of ranks cannot be shared out
    return out


def echo(text: str) -> None:
    """One line on stderr (per-epoch progress when no bar is shown)."""
    import sys

    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix(self, **kw: Any) -> None: ...
    def close(self) -> None: ...


def progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar on stderr (shown on a terminal only), or a do-nothing stand-in."""
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch", leave=False, disable=None)  # None: off unless a TTY
