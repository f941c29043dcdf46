"""trainer.loop's precision: fp32 or bf16 autocast, chosen by what the processor runs natively, on the CPU."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from trainer_helpers import TINY

from space.build import build
from space.spec import from_dict
from trainer import device, loop
from trainer.data import Splits, load_splits
from trainer.loop import evaluate, fit, resolve_precision

ROOT = Path(__file__).resolve().parent.parent
SPEC = from_dict(TINY)
CPU = torch.device("cpu")

# (train_loss, train_acc, val_loss, val_acc) of each of two epochs on 300 + 200 images, as the trainer gave them
# in fp32 (commit 53b4c3e, before precision existed) on the AMD EPYC this project was first developed on: the
# graphed steps, uncaptured, gave TODAY; the eager epoch then stepped torch.optim and gave EAGER_BEFORE, within
# float rounding.  The eager and the graphed path now run one step function.  Another processor's kernels round
# differently (oneDNN picks its code by instruction set): SGD's numbers stay within 1e-7 of these, AdamW's, whose
# first steps divide by a second moment near zero, within 2e-4 (an Intel Xeon with AMX).
TODAY = {
    "sgd": [(2.3111909993489586, 0.15666666666666668, 2.204689178466797, 0.235),
            (1.8509647623697916, 0.49, 1.8720913696289063, 0.56)],
    "adamw": [(2.311466064453125, 0.22, 2.1719955444335937, 0.22),
              (1.85031982421875, 0.42, 2.0831089782714844, 0.345)],
}
EAGER_BEFORE = {
    "sgd": [(2.3111909993489586, 0.15666666666666668, 2.204689178466797, 0.235),
            (1.8509647623697916, 0.49, 1.8720915222167969, 0.56)],
    "adamw": [(2.3114678955078123, 0.22, 2.1724673461914064, 0.22),
              (1.8503297932942708, 0.42, 2.0835662841796876, 0.345)],
}
RECIPES = {
    "sgd": dict(optimizer="sgd", momentum=0.9, nesterov=True, lr=0.05, grad_clip=0.5, label_smoothing=0.1),
    "adamw": dict(optimizer="adamw", lr=0.002, weight_decay=0.01, scheduler="cosine"),
}


@pytest.fixture(scope="module")
def data() -> Splits:
    return load_splits(ROOT / "data", val=500, seed=0, limit=2000)


def _fit(data, recipe=None, **kw):
    recipe = recipe or SPEC.recipe
    torch.manual_seed(recipe.seed)
    return fit(build(SPEC), data, recipe, "cpu", threads=1, **kw)


def _numbers(result):
    return [(m["train_loss"], m["train_acc"], m["val_loss"], m["val_acc"]) for m in result.epochs]


# how near the numbers before bf16 an fp32 run must be on any processor; bf16 autocast moves SGD's by 1.4e-4
CLOSE = {"sgd": 1e-6, "adamw": 1e-3}


@pytest.mark.parametrize("name", list(RECIPES))
def test_precision_fp32_gives_the_numbers_of_the_trainer_before_bf16_eager_and_graphed_alike(data, name):
    r = dataclasses.replace(SPEC.recipe, epochs=2, **RECIPES[name])
    small = Splits(data.train.head(300), data.val.head(200))
    eager, graphed = (_fit(small, r, graphs=g, precision="fp32") for g in (False, True))
    assert eager.ok and graphed.ok and eager.precision == graphed.precision == "fp32"
    assert _numbers(eager) == _numbers(graphed)  # one step function: bit for bit, on any processor
    for got, today, before in zip(_numbers(eager), TODAY[name], EAGER_BEFORE[name], strict=True):
        assert got[1] == today[1] and got[3] == today[3]  # the same images right
        assert got == pytest.approx(today, rel=CLOSE[name])
        assert got == pytest.approx(before, rel=5e-4)
    if name == "sgd":  # and the check can tell: bf16 autocast lands outside it
        bf16 = [x for epoch in _numbers(_fit(small, r, graphs=False, precision="bf16")) for x in epoch]
        assert bf16 != pytest.approx([x for epoch in TODAY[name] for x in epoch], rel=CLOSE[name])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_one_epoch_learns_in_either_precision_and_the_result_says_which(data, precision):
    result = _fit(data, precision=precision)
    assert result.ok and result.precision == precision
    assert result.final["train_loss"] < 1.5 and result.final["val_acc"] > 0.7, result.final


def test_bf16_really_autocasts_and_lands_near_fp32(data):
    small = Splits(data.train.head(512), data.val.head(200))
    a, b = _fit(small, precision="fp32").final, _fit(small, precision="bf16").final
    assert a["train_loss"] != b["train_loss"]  # bf16 rounding shows in the numbers ...
    assert b["train_loss"] == pytest.approx(a["train_loss"], rel=0.05)  # ... but not in what is learnt
    assert abs(b["val_acc"] - a["val_acc"]) <= 0.05


def test_auto_is_bf16_where_onednn_runs_it_natively_and_fp32_where_not(data, monkeypatch):
    native = loop.cpu_bf16_supported()
    assert native == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert resolve_precision(None, CPU) == ("bf16" if native else "fp32")
    assert resolve_precision(None, torch.device("cuda")) == "bf16"  # CUDA as before: bf16 autocast
    small = Splits(data.train.head(128), data.val.head(100))
    assert _fit(small).precision == ("bf16" if native else "fp32")
    monkeypatch.setattr(device, "cpu_bf16_supported", lambda: False)
    assert resolve_precision(None, CPU) == "fp32"
    assert _fit(small).precision == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16"  # asked for explicitly: it runs (emulated where not native)


def test_evaluate_takes_the_precision_too(data):
    torch.manual_seed(0)
    model = build(SPEC)
    fp32 = evaluate(model, data.val, "cpu", precision="fp32")
    bf16 = evaluate(model, data.val, "cpu", precision="bf16")
    with torch.no_grad():
        x = (data.val.x.float() / 255 - 0.1307) / 0.3081
        want = (model.eval()(x).argmax(1) == data.val.y).float().mean().item()
    assert fp32.acc == pytest.approx(want)
    assert fp32.loss != bf16.loss and bf16.loss == pytest.approx(fp32.loss, rel=0.02)


@pytest.mark.parametrize("bad", ["fp16", "BF16", "float32", ""])
def test_an_unknown_precision_is_a_value_error_naming_it(data, bad):
    with pytest.raises(ValueError, match=f"precision must be one of fp32, bf16 .* got '{bad}'"):
        _fit(Splits(data.train.head(64), data.val.head(10)), precision=bad)
    with pytest.raises(ValueError, match=f"got '{bad}'"):
        evaluate(build(SPEC), data.val, "cpu", precision=bad)


def test_a_run_resumes_only_in_the_precision_it_was_checkpointed_in(data, tmp_path):
    small = Splits(data.train.head(256), data.val.head(100))
    r = dataclasses.replace(SPEC.recipe, epochs=2)
    ckpt = tmp_path / "run.pt"
    _fit(small, r, epochs=2, checkpoint=ckpt, precision="bf16")
    assert torch.load(ckpt, weights_only=True)["precision"] == "bf16"
    with pytest.raises(ValueError, match="made in bf16, not fp32"):
        _fit(small, r, resume=ckpt, precision="fp32")
    assert _fit(small, r, resume=ckpt, precision="bf16").ok
