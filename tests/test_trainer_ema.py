"""trainer.ema and ``recipe.ema``: the moving average of the weights, what fit evaluates and keeps (CPU)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn
from trainer_helpers import TINY, Stop, stop_after

from space.build import build
from space.io import dumps, loads
from space.spec import NetSpec, SpecError, from_dict
from trainer.data import Splits, load_splits
from trainer.ema import Ema
from trainer.loop import evaluate, fit

ROOT = Path(__file__).resolve().parent.parent
TIMING = ("seconds", "train_seconds", "images_per_second")


@pytest.fixture(scope="module")
def spec() -> NetSpec:
    return from_dict(TINY)


@pytest.fixture(scope="module")
def data() -> Splits:
    full = load_splits(ROOT / "data", val=500, seed=0, limit=2000)
    return Splits(full.train.head(384), full.val.head(200))


def _fit(spec, data, recipe, model=None, **kw):
    torch.manual_seed(recipe.seed)
    model = model if model is not None else build(spec)
    return model, fit(model, data, recipe, "cpu", threads=1, **kw)


def _untimed(epochs):
    return [{k: v for k, v in m.items() if k not in TIMING} for m in epochs]


def _net() -> nn.Module:
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[1].running_mean.fill_(4.0)
    return net


def test_the_average_moves_by_the_warmed_up_decay_and_copies_integer_buffers():
    net = _net()
    ema = Ema(net, 0.5)
    with torch.no_grad():
        net[0].weight.fill_(12.0)
        net[1].running_mean.fill_(15.0)
        net[1].num_batches_tracked.fill_(7)
    ema.update()  # t = 1: d = min(0.5, 2 / 11)
    d = 2 / 11
    assert ema.module[0].weight[0, 0].item() == pytest.approx(d * 1 + (1 - d) * 12)
    assert ema.module[1].running_mean[0].item() == pytest.approx(d * 4 + (1 - d) * 15)
    assert ema.module[1].num_batches_tracked.item() == 7
    for _ in range(20):  # (1 + t) / (10 + t) passes 0.5 at t = 8: from then on d = 0.5
        ema.update()
    before = ema.module[0].weight[0, 0].item()
    with torch.no_grad():
        net[0].weight.fill_(0.0)
    ema.update()
    assert ema.t.item() == 22
    assert ema.module[0].weight[0, 0].item() == pytest.approx(0.5 * before)
    assert net[0].weight[0, 0].item() == 0.0  # the model is read, never written


def test_the_average_is_a_copy_that_takes_no_gradients_and_round_trips_its_state():
    net = _net()
    ema = Ema(net, 0.9)
    assert all(not p.requires_grad for p in ema.module.parameters()) and not ema.module.training
    ema.update()
    other = Ema(_net(), 0.9)
    other.load_state_dict(ema.state_dict())
    assert other.t.item() == 1
    assert all(torch.equal(a, b) for a, b in zip(other.tensors(), ema.tensors(), strict=True))
    with pytest.raises(ValueError, match="decay"):
        Ema(net, 1.0)


def test_fit_trains_the_same_weights_and_evaluates_and_keeps_their_average(spec, data):
    r = dataclasses.replace(spec.recipe, epochs=2)
    plain_model, plain = _fit(spec, data, r)
    avg_model, averaged = _fit(spec, data, dataclasses.replace(r, ema=0.9))
    assert plain.ok and averaged.ok
    # the training itself is untouched: same losses, accuracies and rates epoch by epoch
    for p, a in zip(plain.epochs, averaged.epochs, strict=True):
        assert (a["train_loss"], a["train_acc"], a["lr"]) == (p["train_loss"], p["train_acc"], p["lr"])
    # what is evaluated, and left in the model, is the average
    assert averaged.final["val_loss"] != plain.final["val_loss"]
    after = evaluate(avg_model, data.val, "cpu")
    assert after.acc == pytest.approx(averaged.final["val_acc"])
    assert after.loss == pytest.approx(averaged.final["val_loss"], rel=1e-5)
    first = next(iter(avg_model.parameters()))
    assert not torch.equal(first, next(iter(plain_model.parameters())))
    assert avg_model.training  # left in train mode, as without an average


@pytest.mark.parametrize("graphs", [False, True], ids=["eager", "graphed"])
def test_resuming_an_averaged_run_gives_the_uninterrupted_result(spec, data, tmp_path, graphs):
    r = dataclasses.replace(spec.recipe, epochs=3, ema=0.95, scheduler="cosine")
    whole_model, whole = _fit(spec, data, r, graphs=graphs)
    ckpt = tmp_path / "run.pt"
    with pytest.raises(Stop):
        _fit(spec, data, r, checkpoint=ckpt, report=stop_after(2), graphs=graphs)
    assert torch.load(ckpt, weights_only=True)["ema"]["t"].item() == 2 * 6  # 384 images, batch 64: 6 steps
    torch.manual_seed(123)  # another initialisation: the checkpoint restores the weights and their average
    model = build(spec)
    resumed = fit(model, data, r, "cpu", resume=ckpt, threads=1, graphs=graphs)
    assert _untimed(resumed.epochs) == _untimed(whole.epochs)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), whole_model.state_dict().values(),
                                                  strict=True))


def test_a_checkpoint_without_the_average_is_refused_for_a_recipe_with_one(spec, data, tmp_path):
    ckpt = tmp_path / "plain.pt"
    _fit(spec, data, spec.recipe, checkpoint=ckpt)
    with pytest.raises(ValueError, match="another recipe"):
        _fit(spec, data, dataclasses.replace(spec.recipe, ema=0.9), resume=ckpt)


@pytest.mark.parametrize("value", [1.0, -0.1, 1.5, "high", True])
def test_a_bad_ema_is_refused_with_its_name(value):
    with pytest.raises(SpecError, match="ema"):
        from_dict(TINY | {"recipe": TINY["recipe"] | {"ema": value}})


def test_ema_is_written_only_when_it_is_on_and_reads_back():
    off = from_dict(TINY)
    assert "ema" not in dumps(off)  # specs without one dump as before
    on = from_dict(TINY | {"recipe": TINY["recipe"] | {"ema": 0.99}})
    assert "ema: 0.99" in dumps(on)
    assert loads(dumps(on)).recipe.ema == 0.99


def test_a_checkpoint_from_before_the_field_existed_resumes_as_made_without_an_average(spec, data, tmp_path):
    r = dataclasses.replace(spec.recipe, epochs=2)
    _, whole = _fit(spec, data, r)
    ckpt = tmp_path / "old.pt"
    with pytest.raises(Stop):
        _fit(spec, data, r, checkpoint=ckpt, report=stop_after(1))
    state = torch.load(ckpt, weights_only=True)
    del state["recipe"]["ema"], state["ema"]  # as written before recipe.ema
    torch.save(state, ckpt)
    _, resumed = _fit(spec, data, r, resume=ckpt)
    assert _untimed(resumed.epochs) == _untimed(whole.epochs)
    with pytest.raises(ValueError, match="another recipe"):
        _fit(spec, data, dataclasses.replace(r, ema=0.9), resume=ckpt)
