"""The training loop: one function, ``fit``, that every search trial and every final run goes through.

The data sit on the training device as uint8 tensors; a batch is a slice of a
seeded index permutation, turned to float, augmented (:mod:`trainer.augment`)
and normalised there.  Loss and accuracy are summed on the device and read
once per epoch, so on CUDA nothing waits for the GPU inside an epoch.  The
loop knows nothing of Optuna: it calls ``report(epoch, metrics)`` once per
epoch, and whatever that raises (``optuna.TrialPruned``) comes out of ``fit``.

Metrics (a dict of plain numbers, one per epoch):

========================  ===================================================
``epoch``                 1-based
``train_loss``            mean training loss (with label smoothing, if any)
``train_acc``             training accuracy on the augmented batches, 0..1
``val_loss``              mean cross-entropy on the evaluation split
``val_acc``               accuracy on the evaluation split, 0..1 (the split
                          is the validation one unless ``eval_data`` says so;
                          both keys are left out when there is none)
``seconds``               wall time of the epoch, evaluation included
``train_seconds``         wall time of the training part
``images_per_second``     training images per second
``lr``                    learning rate of the epoch's last step
========================  ===================================================
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import gc
import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from space.spec import Recipe
from trainer.augment import augment
from trainer.data import MEAN, STD, Split, Splits

__all__ = ["FitResult", "Evaluation", "fit", "evaluate", "resolve_device", "cpu_threads", "METRICS"]

METRICS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds", "train_seconds",
           "images_per_second", "lr")
_CHECKPOINT_FORMAT = 1

Report = Callable[[int, dict[str, float]], None]
Progress = Callable[[int, int], None]


@dataclass
class FitResult:
    """What a run came to.  ``status``: "ok", "nan" (the loss diverged) or "oom" (out of device memory)."""

    status: str
    epochs: list[dict[str, float]] = field(default_factory=list)  # metrics of each finished epoch
    seconds: float = 0.0                                         # wall time of this call
    message: str = ""                                            # why, when status is not "ok"

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def final(self) -> dict[str, float]:
        """The last finished epoch's metrics ({} when none finished)."""
        return self.epochs[-1] if self.epochs else {}


@dataclass(frozen=True)
class Evaluation:
    loss: float  # mean cross-entropy
    acc: float   # 0..1
    n: int


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a torch.device; None means CUDA when there is one, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} asked for, but CUDA is not available here")
    return dev


# ---------------------------------------------------------------- pieces


def _prepare(x: torch.Tensor, recipe: Recipe | None, gen: torch.Generator | None,
             channels_last: bool) -> torch.Tensor:
    """uint8 (B, C, H, W) -> augmented, normalised float32 (B, C, H, W)."""
    out = x.float()
    if recipe is not None:
        out = augment(out, recipe.augment, gen)
    out = (out - MEAN * 255) * (1 / (STD * 255))
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


def _autocast(device: torch.device) -> Any:
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def _optimizer(params: Any, r: Recipe) -> torch.optim.Optimizer:
    if r.optimizer == "sgd":
        return torch.optim.SGD(params, lr=r.lr, momentum=r.momentum, nesterov=r.nesterov,
                               weight_decay=r.weight_decay)
    if r.optimizer == "adam":
        return torch.optim.Adam(params, lr=r.lr, weight_decay=r.weight_decay)
    if r.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=r.lr, weight_decay=r.weight_decay)
    raise ValueError(f"optimizer must be one of sgd, adam, adamw; got {r.optimizer!r}")


def _scheduler(opt: torch.optim.Optimizer, r: Recipe, epochs: int,
               steps: int) -> tuple[torch.optim.lr_scheduler.LRScheduler | None, bool]:
    """The scheduler and whether it steps per batch (else per epoch)."""
    sched = torch.optim.lr_scheduler
    if r.scheduler == "none":
        return None, False
    if r.scheduler == "step":
        return sched.StepLR(opt, step_size=r.step_size, gamma=r.gamma), False
    if r.scheduler == "onecycle":
        # the recipe's momentum / betas stay as they are: no momentum cycling
        return sched.OneCycleLR(opt, max_lr=r.max_lr or 10 * r.lr, total_steps=epochs * steps,
                                pct_start=r.pct_start, cycle_momentum=False), True
    if r.scheduler == "cosine":
        return sched.CosineAnnealingLR(opt, T_max=epochs * steps), True
    raise ValueError(f"scheduler must be one of none, step, onecycle, cosine; got {r.scheduler!r}")


def _steps(n: int, batch: int) -> int:
    """Batches per epoch: every image once; a lone last image is left out (batch norm cannot train on it)."""
    steps = -(-n // batch)
    return steps - 1 if n % batch == 1 and steps > 1 else steps


@torch.inference_mode()
def _evaluate(fwd: nn.Module, data: Split, device: torch.device, channels_last: bool,
              batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed loss and correct count, as device tensors (nothing is read back here)."""
    loss = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    for i in range(0, len(data), batch_size):
        x = _prepare(data.x[i:i + batch_size], None, None, channels_last)
        y = data.y[i:i + batch_size]
        with _autocast(device):
            logits = fwd(x)  # (B, classes)
        loss += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    return loss, correct


def evaluate(model: nn.Module, data: Split, device: str | torch.device | None = None, *,
             batch_size: int | None = None) -> Evaluation:
    """Loss and accuracy of ``model`` on ``data`` (model put in eval mode, its mode restored after).

    ``batch_size``: None is 500 on the CPU, 2048 on CUDA.
    """
    dev = resolve_device(device)
    if dev.type == "cpu":
        _keep_freed_memory()
    model.to(dev)
    if data.device != dev:
        data = data.to(dev)
    was_training = model.training
    model.eval()
    try:
        loss, correct = _evaluate(model, data, dev, _channels_last(model), _eval_batch(dev, batch_size))
    finally:
        model.train(was_training)
    n = len(data)
    return Evaluation(loss.item() / n, correct.item() / n, n)


def cpu_threads(threads: int | None = None) -> int:
    """``threads``, else ``$CNNSEARCH_THREADS``, else the number of cores this process may run on."""
    if threads is None:
        env = os.environ.get("CNNSEARCH_THREADS", "")
        if env:
            try:
                threads = int(env)
            except ValueError:
                raise ValueError(f"CNNSEARCH_THREADS must be a positive integer, got {env!r}") from None
        else:
            threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    return threads


@functools.cache
def _keep_freed_memory() -> bool:
    """Have glibc keep freed blocks of any size for reuse instead of unmapping them (once per process).

    By default blocks over 32 MB are mmap-ed afresh for every batch: evaluating the
    19,642-parameter seed network at batch 1000 page-faulted 800,000 times per pass
    over 10,000 images (2 s of system time).  Afterwards: none.  Memory then goes
    back to the system when the process ends, not before.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, 1 << 30) and libc.mallopt(-1, 1 << 30))  # M_MMAP_, M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc
        return False


def _eval_batch(device: torch.device, batch_size: int | None) -> int:
    return batch_size or (2048 if device.type == "cuda" else 500)


def _channels_last(model: nn.Module) -> bool:
    """Whether the model's convolution weights are in channels_last (the input then goes the same way)."""
    return any(p.dim() == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)
               for p in model.parameters())


# ---------------------------------------------------------------- checkpoints


def _rng_state(gen: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state(), "gen": gen.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, torch.Tensor], gen: torch.Generator, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["gen"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _recipe_key(r: Recipe) -> dict[str, Any]:
    return dataclasses.asdict(r)


def _save(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


@dataclass
class _Epoch:
    """One pass over the training split; its tensors die with it (an OOM inside leaves nothing behind)."""

    fwd: nn.Module
    model: nn.Module
    opt: torch.optim.Optimizer
    batch_sched: torch.optim.lr_scheduler.LRScheduler | None  # stepped after every batch
    recipe: Recipe
    gen: torch.Generator
    channels_last: bool
    progress: Progress | None

    def train(self, data: Split, steps: int,
              epoch: int) -> tuple[torch.Tensor, torch.Tensor, int, float, str]:
        """(summed loss, correct count) as device tensors, images seen, last lr, and why it diverged ("" if not)."""
        r, dev, bs = self.recipe, data.device, self.recipe.batch_size
        self.model.train()
        perm = torch.randperm(len(data), generator=self.gen, device=dev)  # (N,)
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), dtype=torch.long, device=dev)
        seen, lr = 0, r.lr
        for i in range(steps):
            idx = perm[i * bs:(i + 1) * bs]  # (B,)
            x = _prepare(data.x[idx], r, self.gen, self.channels_last)  # (B, C, H, W)
            y = data.y[idx]  # (B,)
            with _autocast(dev):
                logits = self.fwd(x)  # (B, classes)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=r.label_smoothing)
            self.opt.zero_grad(set_to_none=True)
            lr = self.opt.param_groups[0]["lr"]
            loss.backward()
            if r.grad_clip:
                nn.utils.clip_grad_norm_(self.model.parameters(), r.grad_clip)
            self.opt.step()
            if self.batch_sched is not None:
                self.batch_sched.step()
            seen += len(idx)
            loss_sum += loss.detach() * len(idx)
            correct += (logits.detach().argmax(1) == y).sum()
            if dev.type == "cpu" and not math.isfinite(loss.item()):  # free on the CPU; CUDA checks per epoch
                return loss_sum, correct, seen, lr, (
                    f"the loss became {loss.item()} at epoch {epoch}, step {i + 1}: training diverged "
                    f"(lower lr {r.lr:g} or set grad_clip)")
            if self.progress is not None:
                self.progress(i + 1, steps)
        return loss_sum, correct, seen, lr, ""


# ---------------------------------------------------------------- fit


def fit(model: nn.Module, data: Splits | Split, recipe: Recipe, device: str | torch.device | None = None,
        report: Report | None = None, *, eval_data: Split | None = None, epochs: int | None = None,
        checkpoint: str | os.PathLike[str] | None = None, resume: str | os.PathLike[str] | None = None,
        channels_last: bool = True, compile: bool = False, eval_batch_size: int | None = None,
        threads: int | None = None, progress: Progress | None = None) -> FitResult:
    """Train ``model`` with ``recipe`` and evaluate it after every epoch.

    ``data``: a :class:`Splits` (train on ``train``, evaluate on ``val``) or a
    single :class:`Split` to train on, evaluated on ``eval_data`` after each
    epoch if given (without it the metrics have no ``val_*`` keys; the final
    report trains on train + val so, then calls :func:`evaluate` on the test
    split once).  ``eval_data`` also overrides the validation split of a
    ``Splits``.

    ``device``: None picks CUDA when available, else the CPU.  ``epochs``
    overrides ``recipe.epochs`` (schedules then span the new count).
    ``report(epoch, metrics)`` is called after each epoch's evaluation; what it
    raises propagates.  ``checkpoint``: a path written (atomically) after each
    epoch; ``resume``: such a file to go on from, at the epoch after the one
    it holds, giving the same result as an uninterrupted run.
    ``channels_last`` (faster on CUDA and on the CPU alike) and ``compile``
    (torch.compile the model: slow to compile, no faster on the CPU) are
    speed switches; ``progress(step, steps)`` is called after every training
    step (it gets no device sync).  ``threads``: CPU threads while training on
    the CPU (None: ``$CNNSEARCH_THREADS``, else every core this process may
    use); the previous setting is restored on return.

    ``fit`` neither builds nor initialises the model: seed and build it first
    (``torch.manual_seed(recipe.seed); build(spec)``).  It seeds shuffling,
    augmentation and dropout from ``recipe.seed``.  The model is moved to the
    device (and to channels_last) in place and left in train mode.
    """
    t_start = time.perf_counter()
    dev = resolve_device(device)
    held: Split | None
    if isinstance(data, Splits):
        train, held = data.train, eval_data if eval_data is not None else data.val
    elif isinstance(data, Split):
        train, held = data, eval_data
    else:
        raise TypeError(f"data must be a Splits or a Split, got {type(data).__name__}")
    total = recipe.epochs if epochs is None else epochs
    if isinstance(total, bool) or not isinstance(total, int) or total < 1:
        raise ValueError(f"epochs must be a positive integer, got {total!r}")
    if len(train) < 2:
        raise ValueError(f"the training split needs at least 2 images, got {len(train)}")
    train = train if train.device == dev else train.to(dev)
    if held is not None and held.device != dev:
        held = held.to(dev)

    threads_before = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(cpu_threads(threads))
        _keep_freed_memory()
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    fwd: nn.Module = torch.compile(model) if compile else model  # type: ignore[assignment]

    torch.manual_seed(recipe.seed)  # dropout
    gen = torch.Generator(device=dev).manual_seed(recipe.seed)  # shuffling and augmentation
    steps = _steps(len(train), recipe.batch_size)
    opt = _optimizer(model.parameters(), recipe)
    sched, per_batch = _scheduler(opt, recipe, total, steps)
    history: list[dict[str, float]] = []
    start = 1
    if resume is not None:
        state = torch.load(resume, map_location="cpu", weights_only=True)  # RNG states must stay on the CPU
        if state.get("format") != _CHECKPOINT_FORMAT:
            raise ValueError(f"{resume}: not a checkpoint of this trainer")
        if state["recipe"] != _recipe_key(recipe) or state["epochs"] != total:
            raise ValueError(f"{resume}: the checkpoint was made with another recipe or epoch count")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if sched is not None:
            sched.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"], gen, dev)
        history = [dict(m) for m in state["history"]]
        start = state["epoch"] + 1
    ckpt = Path(checkpoint) if checkpoint is not None else None

    one_epoch = _Epoch(fwd, model, opt, sched if per_batch else None, recipe, gen, channels_last, progress)
    status, message = "ok", ""
    try:
        for epoch in range(start, total + 1):
            t0 = time.perf_counter()
            loss_sum, correct, seen, lr, diverged = one_epoch.train(train, steps, epoch)
            if diverged:
                status, message = "nan", diverged
                break
            train_loss, train_correct = torch.stack([loss_sum, correct.float()]).tolist()  # the epoch's one sync
            train_seconds = time.perf_counter() - t0
            if not math.isfinite(train_loss):
                status = "nan"
                message = (f"the loss became {train_loss} in epoch {epoch}: training diverged "
                           f"(lower lr {recipe.lr:g} or set grad_clip)")
                break
            if not per_batch and sched is not None:
                sched.step()

            metrics: dict[str, float] = {
                "epoch": epoch, "train_loss": train_loss / seen, "train_acc": train_correct / seen,
            }
            if held is not None:
                model.eval()
                v_loss, v_correct = _evaluate(fwd, held, dev, channels_last, _eval_batch(dev, eval_batch_size))
                val_loss, val_correct = torch.stack([v_loss, v_correct.float()]).tolist()
                if not math.isfinite(val_loss):
                    status = "nan"
                    message = f"the validation loss became {val_loss} after epoch {epoch}: the weights diverged"
                    break
                metrics.update(val_loss=val_loss / len(held), val_acc=val_correct / len(held))
            metrics.update(seconds=time.perf_counter() - t0, train_seconds=train_seconds,
                           images_per_second=seen / train_seconds, lr=lr)
            history.append(metrics)
            if ckpt is not None:
                _save(ckpt, {
                    "format": _CHECKPOINT_FORMAT, "epoch": epoch, "epochs": total, "recipe": _recipe_key(recipe),
                    "model": model.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict() if sched is not None else {},
                    "rng": _rng_state(gen, dev), "history": history,
                })
            if report is not None:
                report(epoch, dict(metrics))
    except torch.OutOfMemoryError as e:
        status, message = "oom", f"out of device memory: {str(e).splitlines()[0] if str(e) else 'OutOfMemoryError'}"
    finally:
        torch.set_num_threads(threads_before)
        model.train()
    if status == "oom":  # the exception and its frames are gone now: give the memory back
        model.zero_grad(set_to_none=True)
        opt.state.clear()
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return FitResult(status, history, time.perf_counter() - t_start, message)
