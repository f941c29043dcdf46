"""Checkpoints of a run between epochs: enough to go on and get the result of an uninterrupted run.

A checkpoint holds the model, its weight average (if the recipe keeps one), the
optimizer and scheduler states, every random state the run draws from and the
metrics so far, with the recipe, epoch count
and precision it was made for; it is written atomically (a temporary file, then a
rename) and read with ``weights_only=True`` (no code runs on loading).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from space.spec import Recipe
from trainer.ema import Ema

__all__ = ["FORMAT", "save", "restore"]

FORMAT = 1

Scheduler = torch.optim.lr_scheduler.LRScheduler


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


def save(path: Path, *, epoch: int, epochs: int, recipe: Recipe, model: nn.Module, opt: torch.optim.Optimizer,
         sched: Scheduler | None, gen: torch.Generator, device: torch.device, precision: str,
         history: list[dict[str, float]], ema: Ema | None = None) -> None:
    """Write the run's state after ``epoch`` of ``epochs`` to ``path``, atomically."""
    state = {
        "format": FORMAT, "epoch": epoch, "epochs": epochs, "recipe": _recipe_key(recipe),
        "model": model.state_dict(), "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict() if sched is not None else {},
        "rng": _rng_state(gen, device), "history": history, "precision": precision,
        "ema": ema.state_dict() if ema is not None else {},
    }
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def restore(path: str | os.PathLike[str], *, epochs: int, recipe: Recipe, model: nn.Module,
            opt: torch.optim.Optimizer, sched: Scheduler | None, gen: torch.Generator, device: torch.device,
            precision: str, ema: Ema | None = None) -> tuple[list[dict[str, float]], int]:
    """Load ``path`` into the model, optimizer, scheduler and random states: (the metrics so far, the next epoch).

    A file that is not such a checkpoint, or one made for another recipe, epoch count or precision, is a
    ValueError (a checkpoint from before precisions were recorded is taken as it is, and one from before a
    recipe field existed is read as made with that field's default).
    """
    state = torch.load(path, map_location="cpu", weights_only=True)  # RNG states must stay on the CPU
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path}: not a checkpoint of this trainer")
    saved = _recipe_key(Recipe()) | state["recipe"]  # a field added since the file was made: its default
    if saved != _recipe_key(recipe) or state["epochs"] != epochs:
        raise ValueError(f"{path}: the checkpoint was made with another recipe or epoch count")
    if state.get("precision", precision) != precision:
        raise ValueError(f"{path}: the checkpoint was made in {state['precision']}, not {precision}: "
                         f"resume with precision={state['precision']!r}")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    if sched is not None:
        sched.load_state_dict(state["scheduler"])
    if ema is not None:
        ema.load_state_dict(state["ema"])
    _set_rng_state(state["rng"], gen, device)
    return [dict(m) for m in state["history"]], state["epoch"] + 1
