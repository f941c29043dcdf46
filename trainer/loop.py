"""The training loop: one function, ``fit``, that every search trial and every final run goes through.

The data sit on the training device as uint8 tensors; a batch is a slice of a
seeded index permutation, turned to float, augmented (:mod:`trainer.augment`)
and normalised there.  Loss and accuracy are summed on the device and read
once per epoch, so on CUDA nothing waits for the GPU inside an epoch; there
each full batch is one replay of a CUDA graph of the whole step (forward,
backward, update: :mod:`trainer.step`, :mod:`trainer.optim`), and the CPU
runs the very same step uncaptured.  Checkpoints: :mod:`trainer.checkpoint`;
device, precision and threads: :mod:`trainer.device`.  The
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

import gc
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from space.spec import Recipe
from trainer import checkpoint as ckpt_io
from trainer.data import Split, Splits
from trainer.device import (
    PRECISIONS,
    cpu_bf16_supported,
    cpu_threads,
    keep_freed_memory,
    resolve_device,
    resolve_precision,
)
from trainer.ema import Ema
from trainer.step import Epoch, autocast, norm_of, prepare, sched_step, steps_per_epoch

__all__ = ["FitResult", "Evaluation", "fit", "evaluate", "resolve_device", "resolve_precision", "cpu_threads",
           "cpu_bf16_supported", "METRICS", "PRECISIONS"]

METRICS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds", "train_seconds",
           "images_per_second", "lr")

Report = Callable[[int, dict[str, float]], None]
Progress = Callable[[int, int], None]


@dataclass
class FitResult:
    """What a run came to.  ``status``: "ok", "nan" (the loss diverged) or "oom" (out of device memory)."""

    status: str
    epochs: list[dict[str, float]] = field(default_factory=list)  # metrics of each finished epoch
    seconds: float = 0.0                                         # wall time of this call
    message: str = ""                                            # why, when status is not "ok"
    precision: str = "fp32"                                      # what the forward passes ran in: fp32 or bf16
    eager: str = ""                                              # why the CUDA-graph step was not used ("": it was,
                                                                 # or it was not asked for)

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


def _optimizer(params: Any, r: Recipe) -> torch.optim.Optimizer:
    if r.optimizer == "sgd":
        return torch.optim.SGD(params, lr=r.lr, momentum=r.momentum, nesterov=r.nesterov,
                               weight_decay=r.weight_decay)
    if r.optimizer == "adam":
        return torch.optim.Adam(params, lr=r.lr, weight_decay=r.weight_decay)
    if r.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=r.lr, weight_decay=r.weight_decay)
    raise ValueError(f"optimizer must be one of sgd, adam, adamw; got {r.optimizer!r}")


def _scheduler(opt: torch.optim.Optimizer, r: Recipe, epochs: int, steps: int,
               validated: bool = True) -> tuple[torch.optim.lr_scheduler.LRScheduler | None, bool]:
    """The scheduler and whether it steps per batch (else per epoch).

    ``plateau`` watches the validation accuracy (mode max) when ``validated``, else the training loss (mode min).
    """
    sched = torch.optim.lr_scheduler
    if r.scheduler == "none":
        return None, False
    if r.scheduler == "step":
        return sched.StepLR(opt, step_size=r.step_size, gamma=r.gamma), False
    if r.scheduler == "multistep":
        return sched.MultiStepLR(opt, milestones=list(r.milestones), gamma=r.gamma), False
    if r.scheduler == "plateau":
        return sched.ReduceLROnPlateau(opt, mode="max" if validated else "min", factor=r.factor,
                                       patience=r.patience), False
    if r.scheduler == "onecycle":
        # without cycle_momentum the recipe's momentum / betas stay as they are
        return sched.OneCycleLR(opt, max_lr=r.max_lr or 10 * r.lr, total_steps=epochs * steps,
                                pct_start=r.pct_start, anneal_strategy="linear" if r.anneal == "linear" else "cos",
                                cycle_momentum=r.cycle_momentum,
                                div_factor=r.div_factor, final_div_factor=r.final_div_factor,
                                three_phase=r.three_phase), True
    if r.scheduler == "cosine":
        return sched.CosineAnnealingLR(opt, T_max=epochs * steps), True
    raise ValueError(f"scheduler must be one of none, step, onecycle, cosine, multistep, plateau; "
                     f"got {r.scheduler!r}")


def eager_reason(recipe: Recipe) -> str:
    """Why a recipe cannot run as replays of one CUDA graph ("" when it can)."""
    if recipe.scheduler == "onecycle" and recipe.cycle_momentum:
        return ("cycle_momentum: the momentum changes every step and the update reads it on the host, "
                "so the step ran eagerly")
    return ""


@torch.inference_mode()
def _evaluate(fwd: nn.Module, data: Split, device: torch.device, channels_last: bool, precision: str,
              batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed loss and correct count, as device tensors (nothing is read back here)."""
    loss = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    norm = norm_of(data)
    for i in range(0, len(data), batch_size):
        x = prepare(data.x[i:i + batch_size], None, None, channels_last, norm)
        y = data.y[i:i + batch_size]
        with autocast(device, precision):
            logits = fwd(x)  # (B, classes)
        loss += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    return loss, correct


def evaluate(model: nn.Module, data: Split, device: str | torch.device | None = None, *,
             batch_size: int | None = None, precision: str | None = None) -> Evaluation:
    """Loss and accuracy of ``model`` on ``data`` (model put in eval mode, its mode restored after).

    ``batch_size``: None is 500 on the CPU (larger is no faster there), 2048 on CUDA.  ``precision``: as for
    :func:`fit`.
    """
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    if dev.type == "cpu":
        keep_freed_memory()
    model.to(dev)
    if data.device != dev:
        data = data.to(dev)
    was_training = model.training
    model.eval()
    try:
        loss, correct = _evaluate(model, data, dev, _channels_last(model), prec, _eval_batch(dev, batch_size))
    finally:
        model.train(was_training)
    n = len(data)
    return Evaluation(loss.item() / n, correct.item() / n, n)


def _eval_batch(device: torch.device, batch_size: int | None) -> int:
    return batch_size or (2048 if device.type == "cuda" else 500)


def _channels_last(model: nn.Module) -> bool:
    """Whether the model's convolution weights are in channels_last (the input then goes the same way)."""
    return any(p.dim() == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)
               for p in model.parameters())


# ---------------------------------------------------------------- fit


def fit(model: nn.Module, data: Splits | Split, recipe: Recipe, device: str | torch.device | None = None,
        report: Report | None = None, *, eval_data: Split | None = None, epochs: int | None = None,
        checkpoint: str | os.PathLike[str] | None = None, resume: str | os.PathLike[str] | None = None,
        channels_last: bool = True, compile: bool = False, eval_batch_size: int | None = None,
        threads: int | None = None, progress: Progress | None = None, graphs: bool | None = None,
        precision: str | None = None) -> FitResult:
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
    speed switches, and so is ``graphs``: each full training batch one replay
    of a CUDA graph of the whole step (None or True: on CUDA; False runs the
    same step uncaptured, as the CPU always does); ``progress(step, steps)`` is called after every training
    step (it gets no device sync).  ``threads``: CPU threads while training on
    the CPU (None: ``$CNNSEARCH_THREADS``, else every core this process may
    use); the previous setting is restored on return.  ``precision``: "fp32",
    or "bf16" (forward passes under bf16 autocast; weights, gradients, loss and
    update stay float32), None for :func:`resolve_precision`'s choice: bf16 on
    CUDA and on a CPU that runs it natively (about 1.6x faster there with
    channels_last), fp32 elsewhere.  The choice is recorded as ``FitResult.precision``.

    ``fit`` neither builds nor initialises the model: seed and build it first
    (``torch.manual_seed(recipe.seed); build(spec)``).  It seeds shuffling,
    augmentation and dropout from ``recipe.seed``.  The model is moved to the
    device (and to channels_last) in place and left in train mode.  With
    ``recipe.ema`` (:mod:`trainer.ema`) each epoch's evaluation measures the
    moving average of the weights, and a run that ends "ok" leaves the model
    holding it.
    """
    t_start = time.perf_counter()
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
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
    benchmark_before = torch.backends.cudnn.benchmark
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # the batch shape is fixed: time cuDNN's algorithms once, keep the best
    if dev.type == "cpu":
        torch.set_num_threads(cpu_threads(threads))
        keep_freed_memory()
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    fwd: nn.Module = torch.compile(model) if compile else model  # type: ignore[assignment]

    torch.manual_seed(recipe.seed)  # dropout
    gen = torch.Generator(device=dev).manual_seed(recipe.seed)  # shuffling and augmentation
    steps = steps_per_epoch(len(train), recipe.batch_size)
    opt = _optimizer(model.parameters(), recipe)
    ema = Ema(model, recipe.ema) if recipe.ema else None
    validated = isinstance(data, Splits)
    sched, per_batch = _scheduler(opt, recipe, total, steps, validated=validated)
    plateau = sched if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau) else None
    history: list[dict[str, float]] = []
    start = 1
    if resume is not None:
        history, start = ckpt_io.restore(resume, epochs=total, recipe=recipe, model=model, opt=opt, sched=sched,
                                         gen=gen, device=dev, precision=prec, ema=ema)
    ckpt = Path(checkpoint) if checkpoint is not None else None

    capture = dev.type == "cuda" and (graphs is None or graphs)
    eager = eager_reason(recipe) if capture else ""
    capture = capture and not eager
    one_epoch = Epoch(fwd, model, opt, sched if per_batch else None, recipe, gen, channels_last=channels_last,
                      precision=prec, progress=progress, capture=capture, ema=ema)
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
            if not per_batch and sched is not None and plateau is None:
                sched_step(sched)

            metrics: dict[str, float] = {
                "epoch": epoch, "train_loss": train_loss / seen, "train_acc": train_correct / seen,
            }
            if held is not None:
                model.eval()
                v_loss, v_correct = _evaluate(fwd if ema is None else ema.module, held, dev, channels_last, prec,
                                               _eval_batch(dev, eval_batch_size))
                val_loss, val_correct = torch.stack([v_loss, v_correct.float()]).tolist()
                if not math.isfinite(val_loss):
                    status = "nan"
                    message = f"the validation loss became {val_loss} after epoch {epoch}: the weights diverged"
                    break
                metrics.update(val_loss=val_loss / len(held), val_acc=val_correct / len(held))
            if plateau is not None:  # one metric read on the host per epoch: validation accuracy, else training loss
                plateau.step(metrics["val_acc"] if validated and "val_acc" in metrics
                           else metrics["train_loss"])
            metrics.update(seconds=time.perf_counter() - t0, train_seconds=train_seconds,
                           images_per_second=seen / train_seconds, lr=lr)
            history.append(metrics)
            if ckpt is not None:
                ckpt_io.save(ckpt, epoch=epoch, epochs=total, recipe=recipe, model=model, opt=opt, sched=sched,
                             gen=gen, device=dev, precision=prec, history=history, ema=ema)
            if report is not None:
                report(epoch, dict(metrics))
    except torch.OutOfMemoryError as e:
        status, message = "oom", f"out of device memory: {str(e).splitlines()[0] if str(e) else 'OutOfMemoryError'}"
    finally:
        torch.set_num_threads(threads_before)
        torch.backends.cudnn.benchmark = benchmark_before
        model.train()
    if ema is not None and status == "ok":
        model.load_state_dict(ema.module.state_dict())  # the run's result is the average
    if status == "oom":  # the exception and its frames are gone now: give the memory back
        model.zero_grad(set_to_none=True)
        opt.state.clear()
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return FitResult(status, history, time.perf_counter() - t_start, message, prec, eager)
