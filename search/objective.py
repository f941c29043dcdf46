"""One trial: sample a spec, record what it costs, train it, report validation accuracy per epoch.

The trainer knows nothing of Optuna; this module turns its plain ``report``
callback into ``trial.report`` / ``should_prune`` / ``TrialPruned``.
"""

from __future__ import annotations

import gc
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch

from search.sample import OverBudget, sample
from search.searchspace import SearchSpace
from space.analysis import analyze
from space.build import build
from space.io import dumps
from space.spec import NetSpec, SpecError

__all__ = ["Objective", "TrialFailed", "record_spec", "WORKER"]

WORKER = f"{socket.gethostname()}:{os.getpid()}"


class TrialFailed(Exception):
    """A trial that could not finish (loss NaN, out of memory, ...): recorded, and the study goes on."""


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
    epochs: int
    data: Any                      # trainer.data splits: train (possibly limited) and val; never test
    device: torch.device
    seed: int = 0
    study_name: str = "study"
    weights_dir: Path | None = None  # where a trial that beats the study's best so far leaves its weights

    def __call__(self, trial: optuna.Trial) -> float:
        from trainer.loop import fit

        os.environ.setdefault("CNNSEARCH_WORKER", WORKER)
        trial.set_user_attr("worker", WORKER)
        trial.set_user_attr("device", str(self.device))
        if "zoo" in trial.user_attrs and "spec" in trial.user_attrs:  # an enqueued reference network
            from space.io import loads

            spec = loads(trial.user_attrs["spec"], f"zoo:{trial.user_attrs['zoo']}")
        else:
            try:
                spec = sample(trial, self.space, self.budget, epochs=self.epochs, seed=self.seed,
                              name=f"{self.study_name}-t{trial.number}")
            except (OverBudget, SpecError) as e:
                trial.set_user_attr("fail_reason", f"untrainable: {e}")
                raise optuna.TrialPruned(f"untrainable: {e}") from None
        record_spec(trial, spec, self.budget)
        if analyze(spec).params > self.budget:  # the hard budget, checked again before any training
            trial.set_user_attr("fail_reason", "over budget")
            raise optuna.TrialPruned("over budget")

        curve: list[float] = []
        seconds: list[float] = []

        def report(epoch: int, m: dict[str, Any]) -> None:
            curve.append(round(float(m["val_acc"]), 5))
            seconds.append(round(float(m["seconds"]), 3))
            trial.set_user_attr("val_acc_curve", curve)
            trial.set_user_attr("epoch_seconds", seconds)
            trial.set_user_attr("images_per_second", round(float(m["images_per_second"]), 1))
            trial.report(float(m["val_acc"]), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch} (val_acc {m['val_acc']:.4f})")

        torch.manual_seed(spec.recipe.seed)
        t0 = time.perf_counter()
        try:
            model = build(spec)
            result = fit(model, self.data, spec.recipe, self.device, report=report)
        finally:
            trial.set_user_attr("train_seconds", round(time.perf_counter() - t0, 2))
            _release(self.device)
        if result.status != "ok":
            trial.set_user_attr("fail_reason", f"{result.status}: {result.message}")
            raise TrialFailed(f"{result.status}: {result.message}")
        value = float(result.final["val_acc"])
        trial.set_user_attr("best_val_acc", max(curve) if curve else value)
        if self.weights_dir is not None and value >= _best_value(trial):
            self.weights_dir.mkdir(parents=True, exist_ok=True)
            path = self.weights_dir / f"t{trial.number}.pt"
            torch.save(model.state_dict(), path)
            trial.set_user_attr("weights", str(path))
        return value


def _best_value(trial: optuna.Trial) -> float:
    try:
        return float(trial.study.best_value)
    except ValueError:  # no completed trial yet
        return float("-inf")


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
