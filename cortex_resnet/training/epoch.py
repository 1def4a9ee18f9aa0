"""The pieces of one training epoch: data order, augmentation, loss, evaluation, progress.

Everything random here is a function of ``(seed, epoch)`` (:func:`epoch_generator`),
so a resumed run redoes an interrupted epoch with the same batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from cortex_resnet.training.distributed import DistContext, shard

__all__ = ["epoch_generator", "crop_flip", "crop_flip_draws", "apply_crop_flip", "batch_loss", "evaluate",
           "global_batches", "progress_bar", "echo", "fit_epoch", "EpochSums", "SYNC_EVERY"]

# Steps between host checks of the non-finite flag (and progress-bar updates): the loop
# otherwise never waits for the device, so a GPU runs ahead of the Python loop.
SYNC_EVERY = 25


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of one epoch's data order (and augmentation): a function of (seed, epoch)."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + 7919 * int(epoch)) % 2**63)


def crop_flip_draws(g: torch.Generator, sizes: list[int], pad: int = 4,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """The random shifts and flips of a sequence of batches, drawn up front: (3, sum(sizes)) int64.

    Rows: vertical shift, horizontal shift (0..2 pad), flip (0/1). Drawn batch by batch
    in the order :func:`crop_flip` draws them, so the numbers do not depend on whether a
    batch is augmented at once or rank by rank, and moved to ``device`` in one copy
    (no host-to-device transfer per step).
    """
    parts = []
    for B in sizes:
        d = torch.randint(0, 2 * pad + 1, (2, B), generator=g)
        parts.append(torch.cat([d, (torch.rand(B, generator=g) < 0.5).long()[None]]))
    out = torch.cat(parts, dim=1) if parts else torch.zeros(3, 0, dtype=torch.long)
    return out.to(device)


def crop_flip(x: torch.Tensor, g: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random ``pad``-pixel-shifted crops and horizontal flips of images (B, C, H, W)."""
    return apply_crop_flip(x, crop_flip_draws(g, [x.shape[0]], pad, x.device), pad)


def apply_crop_flip(x: torch.Tensor, draws: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Crop-and-flip images (B, C, H, W) with given draws (3, B) (:func:`crop_flip_draws`)."""
    B, _, H, W = x.shape
    dy, dx, flip = draws[0], draws[1], draws[2].bool()
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
             ctx: DistContext | None = None, amp: bool = False,
             channels_last: bool = False) -> tuple[float, list[float]]:
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
        if channels_last and xb.ndim == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
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


@dataclass
class EpochSums:
    """What one epoch leaves: sums over this rank's examples (device tensors, float64),
    the last learning rate, and where the loss first became non-finite (``bad_step = -1``: never)."""

    loss: torch.Tensor
    correct: torch.Tensor
    lr: float
    steps: int
    bad_step: int = -1
    bad_value: float = float("nan")

    def __repr__(self) -> str:
        """One line: kind and key sizes (not the arrays)."""
        return f"EpochSums({self.steps} steps, lr {self.lr:.3g}, bad_step {self.bad_step})"


def _first_bad(ctx: DistContext | None, first: torch.Tensor) -> int:
    """Host check (one sync; one all-reduce under DDP): the earliest non-finite step over ranks."""
    if ctx is not None and ctx.distributed:
        import torch.distributed as dist

        dist.all_reduce(first, op=dist.ReduceOp.MIN)
    return int(first)


def fit_epoch(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
              perm: torch.Tensor, batches: list[tuple[int, int]], *, loss_steps: str = "last",
              amp: bool = False, ctx: DistContext | None = None,
              lr_at: Callable[[int], float] | None = None, grad_clip: float | None = None,
              augment: torch.Tensor | None = None, channels_last: bool = False,
              before_step: Callable[[int], None] | None = None, bar: Any = None,
              sync_every: int = SYNC_EVERY) -> EpochSums:
    """Train one epoch: the one training loop of runs (:func:`~cortex_resnet.training.loop.train`)
    and of the trained hypotheses.

    Each global batch ``perm[a:b]`` is split into rank shards (:func:`shard`); this rank
    gathers and augments only its shard. The loss is the global-batch mean (DDP averages
    the gradients). Loss and accuracy are summed on the device; the host looks at the
    device only every ``sync_every`` steps (one flag: did the loss become non-finite,
    all-reduced under DDP) and stops the epoch there, returning the first bad step.

    Parameters
    ----------
    model : (batch, ...) -> logits (K, batch, n_classes); the DDP/compiled wrapper if any
    x, y : the training set on the device
    perm : this epoch's order (device); ``batches``: (start, stop) into it (:func:`global_batches`)
    lr_at : learning rate for step ``i`` (set on every parameter group); ``None`` keeps it
    augment : crop/flip draws (3, n) in ``perm`` order (:func:`crop_flip_draws`), or ``None``
    before_step : called with the step index right before each optimiser step (test hooks)
    """
    dev = x.device
    world = ctx.world_size if ctx is not None else 1
    sums = EpochSums(torch.zeros((), dtype=torch.float64, device=dev),
                     torch.zeros((), dtype=torch.float64, device=dev),
                     float(opt.param_groups[0]["lr"]), 0)
    none = len(batches)  # "no bad step yet" (so that a MIN over ranks finds the first)
    first = torch.full((), none, dtype=torch.long, device=dev)
    bad_val = torch.full((), float("nan"), dtype=torch.float64, device=dev)
    params = [p for g in opt.param_groups for p in g["params"]]
    seen = 0
    for step, (a, b) in enumerate(batches):
        xb, yb = _batch(x, y, perm, a, b, ctx, augment, channels_last)
        if lr_at is not None:
            sums.lr = lr_at(step)
            for group in opt.param_groups:
                group["lr"] = sums.lr
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(xb)
        loss_sum = batch_loss(logits, yb, loss_steps)
        opt.zero_grad(set_to_none=True)
        (loss_sum * (world / (b - a))).backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(params, grad_clip)
        bad_now = (~torch.isfinite(loss_sum.detach())) & (first == none)
        first = torch.where(bad_now, step, first)
        bad_val = torch.where(bad_now, loss_sum.detach().double(), bad_val)
        if before_step is not None:
            before_step(step)
        opt.step()
        sums.loss += loss_sum.detach().double()
        sums.correct += (logits[-1].detach().argmax(-1) == yb).sum()
        sums.steps, seen = step + 1, seen + len(yb)
        if bar is not None:
            bar.update(1)
        if ((step + 1) % sync_every == 0 or step == len(batches) - 1) and _stopped(sums, ctx, first, bad_val,
                                                                                     none, bar, seen):
            return sums
    return sums


def _batch(x: torch.Tensor, y: torch.Tensor, perm: torch.Tensor, a: int, b: int, ctx: DistContext | None,
           augment: torch.Tensor | None, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's shard of the global batch ``perm[a:b]``, augmented and in the memory format asked for."""
    loc = shard(b - a, ctx) if ctx is not None else slice(0, b - a)
    idx = perm[a:b][loc]
    xb, yb = x[idx], y[idx]
    if augment is not None:
        xb = apply_crop_flip(xb, augment[:, a:b][:, loc])
    if channels_last and xb.ndim == 4:
        xb = xb.contiguous(memory_format=torch.channels_last)
    return xb, yb


def _stopped(sums: EpochSums, ctx: DistContext | None, first: torch.Tensor, bad_val: torch.Tensor, none: int,
             bar: Any, seen: int) -> bool:
    """The host's look at the device (one sync): record the first bad step and stop, or update the bar."""
    found = _first_bad(ctx, first)
    if found < none:
        sums.bad_step, sums.bad_value = found, float(bad_val)
        return True
    if bar is not None:
        bar.set_postfix(loss=f"{float(sums.loss) / max(seen, 1):.3f}",
                        acc=f"{float(sums.correct) / max(seen, 1):.3f}", lr=f"{sums.lr:.2g}")
    return False
