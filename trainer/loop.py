"""The training loop: one function, ``fit``, that every search trial and every final run goes through.

The data sit on the training device as uint8 tensors; a batch is a slice of a
seeded index permutation, turned to float, augmented (:mod:`trainer.augment`)
and normalised there.  Loss and accuracy are summed on the device and read
once per epoch, so on CUDA nothing waits for the GPU inside an epoch; there
each full batch is one replay of a CUDA graph of the whole step (forward,
backward, update: :class:`_GraphedEpoch`, :mod:`trainer.optim`).  The
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
import warnings
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
from trainer.optim import init_state, update

__all__ = ["FitResult", "Evaluation", "fit", "evaluate", "resolve_device", "resolve_precision", "cpu_threads",
           "cpu_bf16_supported", "METRICS", "PRECISIONS"]

METRICS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds", "train_seconds",
           "images_per_second", "lr")
PRECISIONS = ("fp32", "bf16")
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
    precision: str = "fp32"                                      # what the forward passes ran in: fp32 or bf16

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


@functools.cache
def cpu_bf16_supported() -> bool:
    """Whether oneDNN runs bfloat16 natively on this processor (AVX512-BF16 or AMX): asked once per process."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN, or a torch that no longer has the query
        return False


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """``precision`` checked, or for None the fastest that trains as well: bf16 autocast on CUDA, and on a
    CPU whose oneDNN runs bf16 natively (:func:`cpu_bf16_supported`); fp32 elsewhere.

    "bf16" asked for on a CPU without native support still runs (emulated, slowly).
    """
    if precision is None:
        return "bf16" if device.type == "cuda" or (device.type == "cpu" and cpu_bf16_supported()) else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)} or None (auto), got {precision!r}")
    return precision


# ---------------------------------------------------------------- pieces


def _prepare(x: torch.Tensor, recipe: Recipe | None, gen: torch.Generator | None,
             channels_last: bool) -> torch.Tensor:
    """uint8 (B, C, H, W) -> augmented, normalised float32 (B, C, H, W)."""
    out = x.float()
    if recipe is not None:
        out = augment(out, recipe.augment, gen)
    out = (out - MEAN * 255) * (1 / (STD * 255))
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


def _autocast(device: torch.device, precision: str, cache: bool = True) -> Any:
    """bf16 autocast for ``precision`` "bf16", else nothing (``cache=False`` inside a graph capture, as torch asks)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache)
    return nullcontext()


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


def _batch_loss(fwd: nn.Module, data: Split, idx: torch.Tensor, recipe: Recipe, gen: torch.Generator | None,
                channels_last: bool, precision: str,
                cache: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The training loss on the images ``idx`` of ``data``, augmented: (loss, logits (B, classes), labels (B,))."""
    x = _prepare(data.x[idx], recipe, gen, channels_last)  # (B, C, H, W)
    y = data.y[idx]  # (B,)
    with _autocast(data.device, precision, cache):
        logits = fwd(x)  # (B, classes)
    return F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing), logits, y


def _sched_step(sched: torch.optim.lr_scheduler.LRScheduler) -> None:
    """``sched.step()``, without torch's warning that the optimizer never stepped (a CUDA graph steps it)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
        sched.step()


def _clip(grads: list[torch.Tensor], max_norm: float) -> None:
    """Scale ``grads`` in place to a total norm of at most ``max_norm``, as ``clip_grad_norm_`` (no host sync)."""
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, (max_norm / (norm + 1e-6)).clamp(max=1.0))


def _steps(n: int, batch: int) -> int:
    """Batches per epoch: every image once; a lone last image is left out (batch norm cannot train on it)."""
    steps = -(-n // batch)
    return steps - 1 if n % batch == 1 and steps > 1 else steps


@torch.inference_mode()
def _evaluate(fwd: nn.Module, data: Split, device: torch.device, channels_last: bool, precision: str,
              batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed loss and correct count, as device tensors (nothing is read back here)."""
    loss = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    for i in range(0, len(data), batch_size):
        x = _prepare(data.x[i:i + batch_size], None, None, channels_last)
        y = data.y[i:i + batch_size]
        with _autocast(device, precision):
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
        _keep_freed_memory()
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
    precision: str
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
            loss, logits, y = _batch_loss(self.fwd, data, idx, r, self.gen, self.channels_last, self.precision)
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


class _GraphedEpoch:
    """One pass over the training split, every full batch one replay of a CUDA graph of the whole step.

    The step (take the batch at its place in the epoch's permutation, augment,
    forward, backward, clip, update, add to the metric sums) is captured once,
    on the first epoch, after three warm-up steps whose effects are undone.  A
    replay is one launch where the eager step makes several hundred from
    Python.  Everything the step reads sits in tensors that live as long as
    the graph: the permutation, the epoch's learning rates (the scheduler is
    stepped through the epoch on the host at its start) and the step number.
    The last, partial batch runs the same code uncaptured.  Random draws
    (augmentation, dropout) come from the default CUDA generator, which graphs
    replay safely, seeded by ``fit``.

    With ``capture=False`` the same steps run uncaptured, augmentation drawing
    from ``gen`` as the eager epoch does: the tests check this path on the CPU
    against the eager one.
    """

    def __init__(self, fwd: nn.Module, model: nn.Module, opt: torch.optim.Optimizer,
                 batch_sched: torch.optim.lr_scheduler.LRScheduler | None, recipe: Recipe, gen: torch.Generator,
                 channels_last: bool, precision: str, progress: Progress | None, capture: bool) -> None:
        self.fwd, self.model, self.opt, self.batch_sched, self.recipe = fwd, model, opt, batch_sched, recipe
        self.channels_last, self.progress, self.capture = channels_last, progress, capture
        self.precision = precision
        self.aug_gen = None if capture else gen
        self.gen = gen
        self.params = list(opt.param_groups[0]["params"])
        self.graph: torch.cuda.CUDAGraph | None = None
        self.data: Split | None = None

    def _buffers(self, data: Split, steps: int) -> None:
        dev, bs = data.device, self.recipe.batch_size
        self.data = data
        self.perm = torch.empty(len(data), dtype=torch.long, device=dev)  # the epoch's order
        self.lrs = torch.empty(steps, device=dev)                         # the epoch's learning rates
        self.pos = torch.zeros(1, dtype=torch.long, device=dev)           # the step about to run
        self.offsets = torch.arange(bs, device=dev)                       # (B,)
        self.loss_sum = torch.zeros((), device=dev)
        self.correct = torch.zeros((), dtype=torch.long, device=dev)
        init_state(self.opt)

    def _step(self, idx: torch.Tensor, lr: torch.Tensor) -> None:
        """One training step on the images ``idx`` at learning rate ``lr`` (0-d); no host sync."""
        assert self.data is not None
        r = self.recipe
        loss, logits, y = _batch_loss(self.fwd, self.data, idx, r, self.aug_gen, self.channels_last, self.precision,
                                      cache=False)
        grads = list(torch.autograd.grad(loss, self.params, materialize_grads=True))
        if r.grad_clip:
            _clip(grads, r.grad_clip)
        update(self.opt, grads, lr)
        self.loss_sum += loss.detach() * len(idx)
        self.correct += (logits.detach().argmax(1) == y).sum()

    def _full_step(self) -> None:
        """The captured step: the batch and learning rate at ``pos``, then ``pos`` + 1."""
        idx = self.perm.index_select(0, self.offsets + self.pos * self.recipe.batch_size)  # (B,)
        self._step(idx, self.lrs.index_select(0, self.pos).squeeze(0))
        self.pos += 1

    def _capture(self) -> None:
        """Warm up on a side stream (cuDNN and cuBLAS pick kernels, autograd settles), capture, undo the warm-up.

        The warm-up's random draws are not given back: CUDA runs are not bitwise reproducible anyway.
        """
        dev = self.perm.device
        model_state = {k: v.clone() for k, v in self.model.state_dict().items()}
        opt_state = [{k: v.clone() for k, v in self.opt.state[p].items()} for p in self.params]
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
        self.graph = graph

    def train(self, data: Split, steps: int,
              epoch: int) -> tuple[torch.Tensor, torch.Tensor, int, float, str]:
        """As :meth:`_Epoch.train`; divergence shows in the summed loss, read by ``fit`` once per epoch."""
        if self.data is None:
            self._buffers(data, steps)
        elif data is not self.data:
            raise ValueError("a graphed epoch trains on the split it was made with")
        bs, n = self.recipe.batch_size, len(data)
        full = n // bs
        self.model.train()
        lrs = []
        for _ in range(steps):
            lrs.append(self.opt.param_groups[0]["lr"])
            if self.batch_sched is not None:
                _sched_step(self.batch_sched)
        self.perm.copy_(torch.randperm(n, generator=self.gen, device=data.device))
        self.lrs.copy_(torch.tensor(lrs))
        if self.capture and self.graph is None and full:
            self._capture()
        self.pos.zero_()
        self.loss_sum.zero_()
        self.correct.zero_()
        for i in range(full):
            if self.graph is not None:
                self.graph.replay()
            else:
                self._full_step()
            if self.progress is not None:
                self.progress(i + 1, steps)
        if steps > full:  # the partial last batch
            self._step(self.perm[full * bs:], self.lrs[full])
            if self.progress is not None:
                self.progress(steps, steps)
        seen = min(n, steps * bs)
        return self.loss_sum, self.correct, seen, lrs[-1], ""


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
    of a CUDA graph of the whole step (None: on CUDA; on the CPU ``True``
    runs the same steps uncaptured); ``progress(step, steps)`` is called after every training
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
    device (and to channels_last) in place and left in train mode.
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

    if graphs is None:
        graphs = dev.type == "cuda"
    one_epoch: _Epoch | _GraphedEpoch
    if graphs:
        one_epoch = _GraphedEpoch(fwd, model, opt, sched if per_batch else None, recipe, gen, channels_last, prec,
                                  progress, capture=dev.type == "cuda")
    else:
        one_epoch = _Epoch(fwd, model, opt, sched if per_batch else None, recipe, gen, channels_last, prec, progress)
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
                _sched_step(sched)

            metrics: dict[str, float] = {
                "epoch": epoch, "train_loss": train_loss / seen, "train_acc": train_correct / seen,
            }
            if held is not None:
                model.eval()
                v_loss, v_correct = _evaluate(fwd, held, dev, channels_last, prec,
                                               _eval_batch(dev, eval_batch_size))
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
        torch.backends.cudnn.benchmark = benchmark_before
        model.train()
    if status == "oom":  # the exception and its frames are gone now: give the memory back
        model.zero_grad(set_to_none=True)
        opt.state.clear()
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return FitResult(status, history, time.perf_counter() - t_start, message, prec)
