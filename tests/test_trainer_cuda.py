"""trainer.loop on CUDA: the graphed and eager epochs, divergence, resume and evaluation (skipped without a GPU).

CI has no GPU; these run where one is lent (``python -m pytest tests/test_trainer_cuda.py``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from trainer_helpers import Stop, stop_after

from space.build import build
from space.io import load
from space.spec import Augment
from trainer.data import Splits, load_splits
from trainer.loop import evaluate, fit

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
DEV = "cuda"

ROOT = Path(__file__).resolve().parent.parent
SPEC = load(ROOT / "space" / "zoo" / "seed000_19642.yaml")


@pytest.fixture(scope="module")
def data() -> Splits:
    return load_splits(ROOT / "data", val=1000, seed=0, limit=5000)


def _fit(data, recipe, **kw):
    torch.manual_seed(recipe.seed)
    return fit(build(SPEC), data, recipe, DEV, **kw)


@pytest.mark.parametrize("graphs", [True, False])
@pytest.mark.parametrize("recipe", [
    {"lr": 0.05},  # the seed's own otherwise: SGD, StepLR, crop + nearest rotation
    {"optimizer": "adamw", "lr": 0.003, "weight_decay": 0.01, "scheduler": "onecycle", "grad_clip": 1.0,
     "label_smoothing": 0.1, "batch_size": 100},  # 4,000 images: no partial batch
    {"optimizer": "adam", "lr": 0.002, "scheduler": "cosine", "batch_size": 96,
     "augment": Augment(rotate=10, translate=0.1, scale=0.1, shear=5, erase_p=0.2)},
    {"lr": 0.05, "ema": 0.99},  # the weight average: part of the captured step
])
def test_both_epochs_learn_on_cuda(data, graphs, recipe):
    r = dataclasses.replace(SPEC.recipe, epochs=4, **recipe)
    seen = []
    result = _fit(data, r, graphs=graphs, report=lambda e, m: seen.append(e))
    assert result.ok, result.message
    assert seen == [1, 2, 3, 4]
    first, last = result.epochs[0], result.epochs[-1]
    assert last["train_loss"] < first["train_loss"]
    assert last["val_acc"] > 0.7, result.epochs


def test_the_graphed_and_eager_epochs_agree_on_cuda(data):
    r = dataclasses.replace(SPEC.recipe, epochs=8, lr=0.05)
    graphed = _fit(data, r, graphs=True).epochs[-1]
    eager = _fit(data, r, graphs=False).epochs[-1]
    # different random streams (the graph draws from the default generator): the same function, not the same numbers
    assert graphed["val_acc"] > 0.93 and eager["val_acc"] > 0.93
    assert abs(graphed["val_acc"] - eager["val_acc"]) < 0.03
    assert abs(graphed["train_loss"] - eager["train_loss"]) < 0.1


@pytest.mark.parametrize("graphs", [True, False])
def test_a_nan_learning_rate_is_status_nan_on_cuda(data, graphs):
    r = dataclasses.replace(SPEC.recipe, epochs=2, momentum=0.0)
    object.__setattr__(r, "lr", float("nan"))  # the validator refuses NaN: force it past
    result = _fit(Splits(data.train.head(1000), data.val), r, graphs=graphs)
    assert result.status == "nan" and "diverged" in result.message and result.epochs == []


def test_resume_on_cuda_continues_at_the_next_epoch(data, tmp_path):
    r = dataclasses.replace(SPEC.recipe, epochs=3, lr=0.05)
    ckpt = tmp_path / "run.pt"
    with pytest.raises(Stop):
        _fit(data, r, checkpoint=ckpt, report=stop_after(2))
    seen = []
    resumed = _fit(data, r, resume=ckpt, report=lambda e, m: seen.append(e))
    assert resumed.ok and seen == [3] and [m["epoch"] for m in resumed.epochs] == [1, 2, 3]
    assert resumed.epochs[-1]["val_acc"] > 0.6


def test_evaluate_on_cuda_matches_the_cpu(data):
    torch.manual_seed(0)
    model = build(SPEC)
    assert fit(model, data, dataclasses.replace(SPEC.recipe, epochs=2, lr=0.05), DEV).ok
    on_gpu = evaluate(model, data.val, DEV)
    on_cpu = evaluate(model.float().cpu(), data.val, "cpu", precision="fp32")
    assert on_gpu.n == on_cpu.n == 1000
    assert abs(on_gpu.acc - on_cpu.acc) <= 0.005  # bf16 autocast against float32
    assert abs(on_gpu.loss - on_cpu.loss) < 0.02


@pytest.mark.parametrize("graphs", [True, False])
def test_precision_fp32_on_cuda_learns_and_is_recorded(data, graphs):
    r = dataclasses.replace(SPEC.recipe, epochs=2, lr=0.05, grad_clip=1.0)
    auto = _fit(data, r, graphs=graphs)
    fp32 = _fit(data, r, graphs=graphs, precision="fp32")
    assert auto.ok and fp32.ok, (auto.message, fp32.message)
    assert auto.precision == "bf16" and fp32.precision == "fp32"
    assert fp32.epochs[-1]["val_acc"] > 0.8 and abs(fp32.epochs[-1]["val_acc"] - auto.epochs[-1]["val_acc"]) < 0.05
