"""One trial: sample a spec, record what it costs, train it, report validation accuracy per epoch.

The trainer knows nothing of Optuna; this module turns its plain ``report``
callback into ``trial.report`` / ``should_prune`` / ``TrialPruned``.  A trial's
fidelity (training images and epochs: its rung of the fidelity plan) is in its
user attributes; its epochs are checkpointed, so that a trial interrupted and
queued again goes on from its last epoch instead of starting over.
"""

from __future__ import annotations

import gc
import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch

from search.export import with_epochs
from search.sample import OverBudget, sample
from search.searchspace import SearchSpace
from space.analysis import analyze
from space.build import build
from space.io import dumps, loads
from space.spec import NetSpec, SpecError

__all__ = ["Objective", "TrialFailed", "record_spec", "WORKER", "study_dir", "measure_rates"]

WORKER = f"{socket.gethostname()}:{os.getpid()}"

# (trial, epoch, epochs, metrics) after each epoch: the search prints its progress line from it
EpochHook = Callable[[Any, int, int, dict[str, Any]], None]


class TrialFailed(Exception):
    """A trial that could not finish (loss NaN, out of memory, ...): recorded, and the study goes on."""


def study_dir(root: str | os.PathLike[str], study_name: str) -> Path:
    """A folder of ``root`` for one study's files (a name made safe for a path, and unique to the study)."""
    import hashlib

    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", study_name)[:80]
    if safe != study_name:
        safe += "-" + hashlib.sha1(study_name.encode()).hexdigest()[:8]
    return Path(root) / safe


def record_spec(trial: optuna.Trial, spec: NetSpec, budget: int) -> None:
    a = analyze(spec)
    trial.set_user_attr("params", a.params)
    trial.set_user_attr("utilisation", round(a.params / budget, 4))
    trial.set_user_attr("macs", a.macs)
    trial.set_user_attr("rf", a.rf)
    trial.set_user_attr("spec", dumps(spec, header=False))


@dataclass
class Objective:
    space: SearchSpace
    budget: int
    epochs: int                    # epochs of a trial without its own (``user_attrs["epochs"]``)
    data: Any                      # trainer.data splits: train and val; never test
    device: torch.device
    seed: int = 0
    study_name: str = "study"
    weights_dir: Path | None = None  # where a trial that beats the study's best so far leaves its weights
    checkpoint_dir: Path | None = None  # where a running trial keeps its last epoch
    on_epoch: EpochHook | None = None
    precision: str | None = None
    input: tuple[int, int, int] = (1, 28, 28)  # the data's (C, H, W) and classes: what networks are sampled for
    classes: int = 10

    def spec_for(self, trial: optuna.Trial) -> NetSpec:
        """The spec of ``trial`` at its fidelity: an enqueued network's, or one sampled under the budget."""
        epochs = int(trial.user_attrs.get("epochs") or self.epochs)
        if "zoo" in trial.user_attrs and "spec" in trial.user_attrs:  # an enqueued reference network
            return with_epochs(loads(trial.user_attrs["spec"], f"zoo:{trial.user_attrs['zoo']}"), epochs)
        try:
            return sample(trial, self.space, self.budget, epochs=epochs, seed=self.seed,
                          name=f"{self.study_name}-t{trial.number}", classes=self.classes, input=self.input)
        except (OverBudget, SpecError) as e:
            trial.set_user_attr("fail_reason", f"untrainable: {e}")
            raise optuna.TrialPruned(f"untrainable: {e}") from None

    def __call__(self, trial: optuna.Trial) -> float:
        from trainer.loop import fit

        os.environ.setdefault("CNNSEARCH_WORKER", WORKER)
        trial.set_user_attr("worker", WORKER)
        trial.set_user_attr("device", str(self.device))
        spec = self.spec_for(trial)
        record_spec(trial, spec, self.budget)
        if analyze(spec).params > self.budget:  # the hard budget, checked again before any training
            trial.set_user_attr("fail_reason", "over budget")
            raise optuna.TrialPruned("over budget")
        limit = int(trial.user_attrs.get("train_limit") or 0)
        data = self.data if not limit else type(self.data)(self.data.train.head(limit), self.data.val)

        curve: list[float] = []
        seconds: list[float] = []
        total = spec.recipe.epochs

        def report(epoch: int, m: dict[str, Any], prune: bool = True) -> None:
            curve.append(round(float(m["val_acc"]), 5))
            seconds.append(round(float(m["seconds"]), 3))
            trial.set_user_attr("val_acc_curve", curve)
            trial.set_user_attr("epoch_seconds", seconds)
            trial.set_user_attr("images_per_second", round(float(m["images_per_second"]), 1))
            trial.report(float(m["val_acc"]), epoch)
            if self.on_epoch is not None:
                self.on_epoch(trial, epoch, total, m)
            if prune and epoch < total and trial.should_prune():  # a trial that trained all its epochs counts
                raise optuna.TrialPruned(f"pruned at epoch {epoch} (val_acc {m['val_acc']:.4f})")

        ckpt = resume = None
        if self.checkpoint_dir is not None:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            ckpt = self.checkpoint_dir / f"t{trial.user_attrs.get('retry_of', trial.number)}.pt"
            if ckpt.is_file():  # an interrupted run of these parameters: go on from its last epoch
                resume = ckpt
                done = torch.load(ckpt, map_location="cpu", weights_only=True).get("history", [])
                trial.set_user_attr("resumed_at_epoch", len(done))
                for m in done:
                    report(int(m["epoch"]), m, prune=False)
        torch.manual_seed(spec.recipe.seed)
        t0 = time.perf_counter()
        try:
            model = build(spec)
            try:
                result = fit(model, data, spec.recipe, self.device, report=report, checkpoint=ckpt, resume=resume,
                             precision=self.precision)
            except ValueError as e:
                if resume is None or "checkpoint" not in str(e):
                    raise
                ckpt.unlink(missing_ok=True)  # type: ignore[union-attr]  # not this trial's: start over
                curve.clear()
                seconds.clear()
                torch.manual_seed(spec.recipe.seed)
                model = build(spec)
                result = fit(model, data, spec.recipe, self.device, report=report, checkpoint=ckpt,
                             precision=self.precision)
        except optuna.TrialPruned:
            _drop(ckpt)
            raise
        finally:
            trial.set_user_attr("train_seconds", round(time.perf_counter() - t0, 2))
            _release(self.device)
        _drop(ckpt)
        trial.set_user_attr("precision", result.precision)
        if result.eager:  # why the CUDA-graph step was not used
            trial.set_user_attr("eager", result.eager)
        if result.status != "ok":
            trial.set_user_attr("fail_reason", f"{result.status}: {result.message}")
            raise TrialFailed(f"{result.status}: {result.message}")
        value = float(result.final["val_acc"])
        trial.set_user_attr("best_val_acc", max(curve) if curve else value)
        if self.weights_dir is not None and _would_be_best(trial, value):
            self.weights_dir.mkdir(parents=True, exist_ok=True)
            path = self.weights_dir / f"t{trial.number}.pt"
            torch.save(model.state_dict(), path)
            trial.set_user_attr("weights", str(path))
        return value


def _drop(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)


def measure_rates(specs: list[NetSpec], data: Any, device: torch.device, *, batches: int = 10, skip: int = 3,
                  precision: str | None = None) -> tuple[float, float]:
    """Training and evaluation images per second on ``device``, the median over ``specs`` (networks of the
    budget): each trains for ``batches`` batches, timed after the first ``skip`` (kernel creation, caches),
    then evaluates 2,000 validation images."""
    import statistics

    from trainer.loop import evaluate, fit

    train_rates, eval_rates = [], []
    for spec in specs:
        bs = spec.recipe.batch_size
        sub = data.train.head(min(len(data.train), bs * batches))
        stamps: list[float] = []
        torch.manual_seed(0)
        model = build(spec)
        r = fit(model, sub, spec.recipe, device, epochs=1,
                progress=_stamper(stamps), precision=precision)
        if r.status == "ok" and len(stamps) > skip + 1:
            train_rates.append(bs * (len(stamps) - 1 - skip) / max(stamps[-1] - stamps[skip], 1e-6))
        held = data.val.head(min(len(data.val), 2000))
        t0 = time.perf_counter()
        evaluate(model, held, device, precision=precision)
        eval_rates.append(len(held) / max(time.perf_counter() - t0, 1e-6))
        _release(device)
    if not train_rates:
        raise RuntimeError("could not measure the training speed: every probe network failed")
    return statistics.median(train_rates), statistics.median(eval_rates)


def _stamper(stamps: list[float]) -> Callable[[int, int], None]:
    def stamp(step: int, steps: int) -> None:
        stamps.append(time.perf_counter())
    return stamp


def _would_be_best(trial: optuna.Trial, value: float) -> bool:
    """Whether ``trial`` with ``value`` ranks at least as high as the study's best so far (rung first)."""
    from search.study import best

    b = best(trial.study.get_trials(deepcopy=False))
    if b is None or b.value is None:
        return True
    return (int(trial.user_attrs.get("rung", 0)), value) >= (int(b.user_attrs.get("rung", 0)), float(b.value))


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
