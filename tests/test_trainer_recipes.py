"""Recipes beyond the write-ups': multistep, plateau and onecycle's options give torch's own learning rates
(and momenta) step by step; the resized crop's statistics; rotation's fill; each init scheme is nn.init's."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from space.build import build
from space.io import dumps, loads
from space.spec import Augment, Flatten, Linear, NetSpec, Recipe, SpecError
from trainer import step as step_mod
from trainer.augment import augment, resized_crop_boxes
from trainer.data import Split, Splits
from trainer.loop import eager_reason, fit

N, BS = 50, 16  # 4 steps an epoch (16, 16, 16, 2)
STEPS = 4


def _data(n: int = N, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = (torch.rand(n, 1, 6, 6, generator=g) * 80 + 50 * y[:, None, None, None]).to(torch.uint8)
    return Split(x, y)


def _spec(**recipe) -> NetSpec:
    return NetSpec((Flatten(), Linear(3)), input=(1, 6, 6), classes=3,
                   recipe=Recipe(batch_size=BS, epochs=recipe.pop("epochs", 3), **recipe))


def _run(monkeypatch, spec: NetSpec, data) -> tuple[list[tuple[float, float | None]], object]:
    """Train; the learning rate and the momentum (SGD) or beta1 (Adam) of every step, as the update saw them."""
    seen: list[tuple[float, float | None]] = []
    real = step_mod.update

    def spy(opt, grads, lr):
        g = opt.param_groups[0]
        seen.append((float(lr), g["betas"][0] if "betas" in g else g.get("momentum")))
        real(opt, grads, lr)

    monkeypatch.setattr(step_mod, "update", spy)
    torch.manual_seed(0)
    result = fit(build(spec), data, spec.recipe, "cpu", threads=1)
    assert result.ok, result.message
    return seen, result


def _reference(recipe: Recipe, make, per_batch: bool, epochs: int, metrics=None):
    """torch's own sequence: a fresh optimizer of the recipe's kind, its scheduler stepped as the trainer does."""
    p = [nn.Parameter(torch.zeros(1))]
    opt = (torch.optim.SGD(p, lr=recipe.lr, momentum=recipe.momentum) if recipe.optimizer == "sgd"
           else torch.optim.Adam(p, lr=recipe.lr))
    sched = make(opt)
    out = []
    for e in range(epochs):
        for _ in range(STEPS):
            g = opt.param_groups[0]
            out.append((g["lr"], g["betas"][0] if "betas" in g else g.get("momentum")))
            if per_batch:
                opt.step()
                sched.step()
        if not per_batch:
            opt.step()
            sched.step(metrics[e]) if metrics is not None else sched.step()
    return out


def _same(got, want):
    assert len(got) == len(want)
    for i, ((lr, m), (lr_w, m_w)) in enumerate(zip(got, want, strict=True)):
        assert lr == pytest.approx(lr_w, rel=1e-6), f"step {i}: lr {lr} != {lr_w}"
        assert m == pytest.approx(m_w, rel=1e-9), f"step {i}: momentum {m} != {m_w}"


@pytest.mark.parametrize("opts", [
    {"anneal": "cos"},
    {"anneal": "linear", "div_factor": 10.0, "final_div_factor": 100.0},
    {"three_phase": True, "pct_start": 0.25},
    {"cycle_momentum": True},
    {"cycle_momentum": True, "optimizer": "adam", "anneal": "linear", "three_phase": True, "pct_start": 0.25},
], ids=["cos", "linear-div", "three-phase", "cycle-momentum-sgd", "cycle-momentum-adam"])
def test_onecycle_gives_torchs_learning_rates_and_momenta_step_by_step(monkeypatch, opts):
    spec = _spec(scheduler="onecycle", lr=0.01, max_lr=0.2, epochs=3, **opts)
    r = spec.recipe
    got, _ = _run(monkeypatch, spec, _data())
    want = _reference(r, lambda o: torch.optim.lr_scheduler.OneCycleLR(
        o, max_lr=0.2, total_steps=3 * STEPS, pct_start=r.pct_start, anneal_strategy=r.anneal,
        cycle_momentum=r.cycle_momentum, div_factor=r.div_factor, final_div_factor=r.final_div_factor,
        three_phase=r.three_phase), True, 3)
    _same(got, want)


def test_multistep_gives_torchs_learning_rates_step_by_step(monkeypatch):
    spec = _spec(scheduler="multistep", milestones=(1, 3), gamma=0.5, lr=0.1, epochs=4)
    got, _ = _run(monkeypatch, spec, _data())
    want = _reference(spec.recipe, lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [1, 3], gamma=0.5), False, 4)
    _same(got, want)
    assert sorted({round(lr, 6) for lr, _ in got}) == [0.025, 0.05, 0.1]


def test_plateau_watches_the_training_loss_without_a_validation_split(monkeypatch):
    spec = _spec(scheduler="plateau", factor=0.5, patience=0, lr=0.5, epochs=5)
    got, result = _run(monkeypatch, spec, _data())
    losses = [m["train_loss"] for m in result.epochs]
    want = _reference(spec.recipe, lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(
        o, mode="min", factor=0.5, patience=0), False, 5, losses)
    _same(got, want)


def test_plateau_watches_validation_accuracy_where_there_is_a_validation_split(monkeypatch):
    spec = _spec(scheduler="plateau", factor=0.5, patience=0, lr=0.5, epochs=5)
    got, result = _run(monkeypatch, spec, Splits(_data(), _data(30, seed=1)))
    accs = [m["val_acc"] for m in result.epochs]
    want = _reference(spec.recipe, lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(
        o, mode="max", factor=0.5, patience=0), False, 5, accs)
    _same(got, want)
    assert len({lr for lr, _ in got}) > 1  # it did cut the rate: the comparison is not of constants


def test_a_momentum_cycled_per_step_falls_back_to_eager_steps_with_the_reason():
    assert "cycle_momentum" in eager_reason(Recipe(scheduler="onecycle", cycle_momentum=True))
    assert eager_reason(Recipe(scheduler="onecycle")) == "" and eager_reason(Recipe(scheduler="plateau")) == ""


def test_new_recipe_keys_round_trip_and_default_keys_stay_out_of_the_yaml():
    spec = _spec(scheduler="multistep", milestones=(2, 5), init="kaiming",
                 augment=Augment(resized_crop=0.5, crop_scale=(0.3, 1.0), fill=10.0))
    text = dumps(spec)
    back = loads(text)
    assert back == spec and back.recipe.milestones == (2, 5) and back.recipe.augment.crop_scale == (0.3, 1.0)
    plain = dumps(_spec(scheduler="onecycle"))
    for key in ("milestones", "div_factor", "three_phase", "anneal", "cycle_momentum", "init", "factor"):
        assert key not in plain
    with pytest.raises(SpecError, match="milestones must be increasing"):
        Recipe(scheduler="multistep", milestones=(3, 2))
    with pytest.raises(SpecError, match="crop_scale must be a pair"):
        Augment(crop_scale=(0.5, 1.5))
    with pytest.raises(SpecError, match="init must be one of default, kaiming, xavier"):
        Recipe(init="orthogonal")


# ---------------------------------------------------------------- augmentation


def test_the_resized_crops_area_and_aspect_ratio_follow_their_ranges():
    g = torch.Generator().manual_seed(0)
    aug = Augment(resized_crop=1.0, crop_scale=(0.25, 0.64), crop_ratio=(1.0, 1.0))  # no side clamped
    on, box = resized_crop_boxes(20000, aug, g)
    area = box[:, 0] * box[:, 1]
    assert bool(on.all())
    assert area.min() >= 0.25 - 1e-6 and area.max() <= 0.64 + 1e-6
    assert area.mean().item() == pytest.approx(0.445, abs=0.005)  # uniform in the range
    assert area.std().item() == pytest.approx((0.64 - 0.25) / math.sqrt(12), abs=0.005)
    aug = Augment(resized_crop=0.3, crop_scale=(0.2, 0.3), crop_ratio=(0.5, 2.0))
    on, box = resized_crop_boxes(20000, aug, g)
    log_ratio = torch.log(box[:, 0] / box[:, 1])
    assert on.float().mean().item() == pytest.approx(0.3, abs=0.015)
    assert log_ratio.mean().item() == pytest.approx(0.0, abs=0.02)  # log-uniform, symmetric about 1
    assert log_ratio.abs().max().item() <= math.log(2.0) + 1e-5
    assert ((box[:, 2].abs() + box[:, 0]) <= 1 + 1e-5).all()  # every crop inside the image
    assert ((box[:, 3].abs() + box[:, 1]) <= 1 + 1e-5).all()


def test_a_resized_crop_of_the_whole_image_is_the_image_and_a_small_one_zooms_in():
    x = torch.rand(4, 3, 8, 8) * 255
    whole = Augment(resized_crop=1.0, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
    assert torch.allclose(augment(x, whole, torch.Generator().manual_seed(0)), x, atol=1e-3)
    half = Augment(resized_crop=1.0, crop_scale=(0.25, 0.25), crop_ratio=(1.0, 1.0))
    stripes = torch.zeros(1, 1, 8, 8)
    stripes[..., ::2] = 255
    out = augment(stripes, half, torch.Generator().manual_seed(0))
    assert out.shape == stripes.shape and out.std() < stripes.std()  # zoomed 2x: the stripes blur out


def test_rotation_brings_in_the_fill_value():
    x = torch.zeros(2, 1, 9, 9)
    out = augment(x, Augment(rotate=45.0, fill=100.0, interp="nearest"), torch.Generator().manual_seed(1))
    assert out[:, :, 4, 4].eq(0).all() and out.max().item() == pytest.approx(100.0)
    assert augment(x, Augment(rotate=45.0), torch.Generator().manual_seed(1)).max().item() == 0.0


# ---------------------------------------------------------------- init


@pytest.mark.parametrize("scheme", ["kaiming", "xavier"])
def test_each_init_scheme_gives_the_weights_nn_init_gives(scheme):
    from space.spec import BatchNorm, Conv

    spec = NetSpec((Conv(4, k=3), BatchNorm(), Conv(6, k=3, groups=2), Flatten(), Linear(10)), input=(2, 9, 9),
                   recipe=Recipe(init=scheme))
    torch.manual_seed(3)
    got = build(spec)
    torch.manual_seed(3)
    want = build(NetSpec(spec.layers, input=spec.input))  # torch's defaults, then nn.init layer by layer
    with torch.no_grad():
        for m in want.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                if scheme == "kaiming":
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                else:
                    nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
    for (k, a), (_, b) in zip(got.state_dict().items(), want.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    torch.manual_seed(3)
    default = build(NetSpec(spec.layers, input=spec.input))
    assert not torch.equal(next(default.parameters()), next(got.parameters()))


class _Stop(Exception):
    pass


@pytest.mark.parametrize("opts", [
    {"scheduler": "plateau", "factor": 0.5, "patience": 0, "lr": 0.5},
    {"scheduler": "multistep", "milestones": (2,), "gamma": 0.3},
    {"scheduler": "onecycle", "cycle_momentum": True, "anneal": "linear", "three_phase": True},
], ids=["plateau", "multistep", "onecycle-cycle-momentum"])
def test_an_interrupted_run_resumed_from_its_checkpoint_equals_an_uninterrupted_one(tmp_path, opts):
    spec = _spec(epochs=4, **opts)
    data = Splits(_data(), _data(30, seed=1))
    torch.manual_seed(0)
    whole = fit(build(spec), data, spec.recipe, "cpu", threads=1)

    def stop_after_two(epoch, m):
        if epoch == 2:
            raise _Stop

    ckpt = tmp_path / "c.pt"
    torch.manual_seed(0)
    with pytest.raises(_Stop):
        fit(build(spec), data, spec.recipe, "cpu", report=stop_after_two, checkpoint=ckpt, threads=1)
    torch.manual_seed(0)
    resumed = fit(build(spec), data, spec.recipe, "cpu", resume=ckpt, threads=1)
    assert [m["lr"] for m in resumed.epochs] == [m["lr"] for m in whole.epochs]
    assert resumed.final["val_loss"] == whole.final["val_loss"]
