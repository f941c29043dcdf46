"""The training step, and the epoch that runs it eagerly or as the replays of one CUDA graph of it.

One function, :meth:`Epoch.step`, trains on one batch: gather, augment,
forward (under bf16 autocast or not), backward, clip, update
(:mod:`trainer.optim`), move the weight average (:mod:`trainer.ema`, when the
recipe has one), add to the metric sums, and nothing read back to the host.
Capture is a switch: with ``capture=True`` (CUDA) the step of a full batch is
captured once as a CUDA graph and replayed; with ``capture=False`` the very
same step is called from Python.  So the CPU tests run exactly the
code that the GPU replays.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from space.spec import Recipe
from trainer.augment import augment
from trainer.data import Split
from trainer.ema import Ema
from trainer.optim import check_supported, init_state, update

__all__ = ["Epoch", "prepare", "norm_of", "autocast", "steps_per_epoch"]

Progress = Callable[[int, int], None]
Scheduler = torch.optim.lr_scheduler.LRScheduler


Norm = tuple[Any, Any]  # (shift, scale): floats, or (1, C, 1, 1) tensors on the data's device


def norm_of(data: Split) -> Norm:
    """What :func:`prepare` subtracts and multiplies by, from the split's statistics (made once, outside a capture)."""
    if len(data.mean) == 1:
        return data.mean[0] * 255, 1 / (data.std[0] * 255)
    shift = torch.tensor([m * 255 for m in data.mean], device=data.device).view(1, -1, 1, 1)  # (1, C, 1, 1)
    scale = torch.tensor([1 / (s * 255) for s in data.std], device=data.device).view(1, -1, 1, 1)
    return shift, scale


def prepare(x: torch.Tensor, recipe: Recipe | None, gen: torch.Generator | None,
            channels_last: bool, norm: Norm) -> torch.Tensor:
    """uint8 (B, C, H, W) -> augmented, normalised float32 (B, C, H, W); ``norm``: :func:`norm_of` the split."""
    out = x.float()
    if recipe is not None:
        out = augment(out, recipe.augment, gen)
    out = (out - norm[0]) * norm[1]
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


def autocast(device: torch.device, precision: str, cache: bool = True) -> Any:
    """bf16 autocast for ``precision`` "bf16", else nothing (``cache=False`` inside a graph capture, as torch asks)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache)
    return nullcontext()


def steps_per_epoch(n: int, batch: int) -> int:
    """Batches per epoch: every image once; a lone last image is left out (batch norm cannot train on it)."""
    steps = -(-n // batch)
    return steps - 1 if n % batch == 1 and steps > 1 else steps


def sched_step(sched: Scheduler) -> None:
    """``sched.step()``, without torch's warning that the optimizer never stepped (:func:`update` steps it)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
        sched.step()


class Epoch:
    """One pass over the training split, one :meth:`step` per batch; made once per run, used every epoch.

    Everything the step reads sits in tensors that live as long as the run:
    the epoch's permutation, its learning rates (the scheduler is stepped
    through the epoch on the host at its start) and the step number.  With
    ``capture``, the step of a full batch is captured on the first epoch, after
    three warm-up steps whose effects are undone, and each full batch is then
    one replay (one launch where the eager step makes several hundred from
    Python); the last, partial batch runs the same step uncaptured.  Random
    draws (augmentation, dropout) then come from the default CUDA generator,
    which graphs replay safely, seeded by ``fit``; uncaptured, augmentation
    draws from ``gen``.
    """

    def __init__(self, fwd: nn.Module, model: nn.Module, opt: torch.optim.Optimizer, batch_sched: Scheduler | None,
                 recipe: Recipe, gen: torch.Generator, *, channels_last: bool, precision: str,
                 progress: Progress | None, capture: bool, ema: Ema | None = None) -> None:
        check_supported(opt)  # before any work: an optimizer trainer.optim does not implement is refused here
        self.fwd, self.model, self.opt, self.batch_sched, self.recipe = fwd, model, opt, batch_sched, recipe
        self.channels_last, self.precision, self.progress, self.capture = channels_last, precision, progress, capture
        self.gen, self.ema = gen, ema
        self.aug_gen = None if capture else gen
        self.params = list(opt.param_groups[0]["params"])
        self.graph: torch.cuda.CUDAGraph | None = None
        self.data: Split | None = None

    def _buffers(self, data: Split, steps: int) -> None:
        dev, bs = data.device, self.recipe.batch_size
        self.data = data
        self.norm = norm_of(data)
        self.perm = torch.empty(len(data), dtype=torch.long, device=dev)  # the epoch's order
        self.lrs = torch.empty(steps, device=dev)                         # the epoch's learning rates
        self.pos = torch.zeros(1, dtype=torch.long, device=dev)           # the step about to run
        self.offsets = torch.arange(bs, device=dev)                       # (B,)
        self.loss_sum = torch.zeros((), device=dev)
        self.correct = torch.zeros((), dtype=torch.long, device=dev)
        init_state(self.opt)

    def step(self, idx: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        """The training step on the images ``idx`` (B,) at learning rate ``lr`` (0-d); returns the loss (0-d).

        No host sync: this is what a CUDA graph captures.
        """
        assert self.data is not None
        r, data = self.recipe, self.data
        x = prepare(data.x[idx], r, self.aug_gen, self.channels_last, self.norm)  # (B, C, H, W)
        y = data.y[idx]  # (B,)
        with autocast(data.device, self.precision, cache=False):
            logits = self.fwd(x)  # (B, classes)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=r.label_smoothing)
        self.opt.zero_grad(set_to_none=True)  # backward then writes fresh gradients (in a capture: the graph's own)
        loss.backward()
        if r.grad_clip:
            nn.utils.clip_grad_norm_(self.params, r.grad_clip, foreach=True)
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]  # unused: zero
        update(self.opt, grads, lr)
        if self.ema is not None:
            self.ema.update()
        self.loss_sum += loss.detach() * len(idx)
        self.correct += (logits.detach().argmax(1) == y).sum()
        return loss.detach()

    def _full_step(self) -> torch.Tensor:
        """The step of the full batch at ``pos``, at the learning rate at ``pos``; then ``pos`` + 1."""
        idx = self.perm.index_select(0, self.offsets + self.pos * self.recipe.batch_size)  # (B,)
        loss = self.step(idx, self.lrs.index_select(0, self.pos).squeeze(0))
        self.pos += 1
        return loss

    def _capture(self) -> None:
        """Warm up on a side stream (cuDNN and cuBLAS pick kernels, autograd settles), capture, undo the warm-up.

        The warm-up's random draws are not given back: CUDA runs are not bitwise reproducible anyway.
        """
        dev = self.perm.device
        model_state = {k: v.clone() for k, v in self.model.state_dict().items()}
        opt_state = [{k: v.clone() for k, v in self.opt.state[p].items()} for p in self.params]
        ema_state = [t.clone() for t in self.ema.tensors()] if self.ema is not None else []
        side = torch.cuda.Stream(dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side):
            for _ in range(3):
                self.pos.zero_()  # the first batch each time: an epoch may hold only one
                self._full_step()
        torch.cuda.current_stream(dev).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._full_step()
        with torch.no_grad():
            for k, v in self.model.state_dict().items():
                v.copy_(model_state[k])
            for p, saved in zip(self.params, opt_state, strict=True):
                for k, v in saved.items():
                    self.opt.state[p][k].copy_(v)
            if self.ema is not None:
                for t, saved_t in zip(self.ema.tensors(), ema_state, strict=True):
                    t.copy_(saved_t)
        self.graph = graph

    def train(self, data: Split, steps: int,
              epoch: int) -> tuple[torch.Tensor, torch.Tensor, int, float, str]:
        """(summed loss, correct count) as device tensors, images seen, last lr, and why it diverged ("" if not).

        On the CPU a diverging loss ends the epoch at once (reading it back is free there); elsewhere
        it shows in the summed loss, which ``fit`` reads once per epoch.
        """
        if self.data is None:
            self._buffers(data, steps)
        elif data is not self.data:
            raise ValueError("an epoch trains on the split it was made with")
        r, dev = self.recipe, data.device
        bs, n = r.batch_size, len(data)
        full = min(n // bs, steps)
        self.model.train()
        group = self.opt.param_groups[0]
        lrs, moms = [], []  # moms: the momentum / betas of each step, where the scheduler cycles them
        cycle = bool(getattr(self.batch_sched, "cycle_momentum", False))
        for _ in range(steps):
            lrs.append(group["lr"])
            if cycle:
                moms.append((group.get("momentum"), group.get("betas")))
            if self.batch_sched is not None:
                sched_step(self.batch_sched)
        after = (group.get("momentum"), group.get("betas"))
        if cycle and self.capture:
            raise ValueError("a momentum cycled per step cannot be captured: run it with capture=False")
        self.perm.copy_(torch.randperm(n, generator=self.gen, device=dev))
        self.lrs.copy_(torch.tensor(lrs))
        if self.capture and self.graph is None and full:
            self._capture()
        self.pos.zero_()
        self.loss_sum.zero_()
        self.correct.zero_()
        check = dev.type == "cpu"
        for i in range(steps):
            if cycle:  # read by the update on the host: eager steps only
                _set_momentum(group, *moms[i])
            if i == full:  # the partial last batch, uncaptured
                loss = self.step(self.perm[full * bs:], self.lrs[full])
            elif self.graph is not None:
                self.graph.replay()
            else:
                loss = self._full_step()
            if check and not torch.isfinite(loss):
                return self.loss_sum, self.correct, min(n, (i + 1) * bs), lrs[i], (
                    f"the loss became {loss.item()} at epoch {epoch}, step {i + 1}: training diverged "
                    f"(lower lr {r.lr:g} or set grad_clip)")
            if self.progress is not None:
                self.progress(i + 1, steps)
        if cycle:
            _set_momentum(group, *after)  # where the scheduler left it, for the next epoch and the checkpoint
        return self.loss_sum, self.correct, min(n, steps * bs), lrs[-1], ""


def _set_momentum(group: dict[str, Any], momentum: Any, betas: Any) -> None:
    if momentum is not None:
        group["momentum"] = momentum
    if betas is not None:
        group["betas"] = betas
