"""trainer.loop: fit and evaluate on tiny subsets, on the CPU."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from trainer_helpers import TINY, Stop, stop_after

from space.build import build
from space.spec import Augment, NetSpec, Recipe, from_dict
from trainer import loop
from trainer.data import Splits, load_splits
from trainer.loop import METRICS, FitResult, evaluate, fit

ROOT = Path(__file__).resolve().parent.parent

TIMING = ("seconds", "train_seconds", "images_per_second")
THREADS = 1  # the test machine is shared: one thread is steadier (and the results depend on the count)


@pytest.fixture(scope="module")
def spec() -> NetSpec:
    return from_dict(TINY)


@pytest.fixture(scope="module")
def data() -> Splits:
    return load_splits(ROOT / "data", val=500, seed=0, limit=2000)


def _small(data: Splits, n: int = 512) -> Splits:
    return Splits(data.train.head(n), data.val.head(200))


def _fit(spec: NetSpec, data: Splits, recipe: Recipe | None = None, **kw) -> FitResult:
    recipe = recipe or spec.recipe
    torch.manual_seed(recipe.seed)
    return fit(build(spec), data, recipe, "cpu", threads=THREADS, **kw)


def _untimed(epochs: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in m.items() if k not in TIMING} for m in epochs]


def test_one_epoch_on_2000_images_lowers_the_validation_loss(spec, data):
    torch.manual_seed(0)
    model = build(spec)
    before = evaluate(model, data.val, "cpu")
    result = fit(model, data, spec.recipe, "cpu", threads=THREADS)
    after = evaluate(model, data.val, "cpu")
    assert result.status == "ok" and result.message == ""
    assert before.loss > 2.0 and after.loss < 1.0 and after.acc > 0.7
    assert result.final["val_acc"] == pytest.approx(after.acc)
    assert result.final["val_loss"] == pytest.approx(after.loss, rel=1e-5)
    assert model.training  # left in train mode


def test_report_is_called_once_per_epoch_after_evaluation_with_every_metric(spec, data):
    calls = []
    result = _fit(spec, _small(data), dataclasses.replace(spec.recipe, epochs=3),
                  report=lambda e, m: calls.append((e, m)))
    assert [e for e, _ in calls] == [1, 2, 3]
    for epoch, m in calls:
        assert set(METRICS) <= set(m) and m["epoch"] == epoch
        assert 0 <= m["val_acc"] <= 1 and 0 <= m["train_acc"] <= 1 and m["images_per_second"] > 0
        assert m["lr"] == 0.01 and m["seconds"] >= m["train_seconds"] > 0
    assert [m for _, m in calls] == result.epochs


def test_an_exception_from_report_comes_out_of_fit(spec, data):
    class Pruned(Exception):
        pass

    def report(epoch, m):
        if epoch == 2:
            raise Pruned(f"epoch {epoch}")

    with pytest.raises(Pruned, match="epoch 2"):
        _fit(spec, _small(data, 256), dataclasses.replace(spec.recipe, epochs=5), report=report)


@pytest.mark.parametrize("how", ["nan-lr", "huge-lr"])
def test_a_diverging_loss_ends_the_run_with_status_nan(spec, data, how):
    recipe = dataclasses.replace(spec.recipe, optimizer="sgd", lr=1e30, momentum=0.0, epochs=3)
    if how == "nan-lr":  # the Recipe validator refuses NaN: force it past
        object.__setattr__(recipe, "lr", float("nan"))
    calls = []
    result = _fit(spec, _small(data, 256), recipe, report=lambda e, m: calls.append(e))
    assert result.status == "nan" and not result.ok
    assert "diverged" in result.message and "epoch 1" in result.message
    assert calls == [] and result.epochs == []


def test_running_out_of_memory_is_status_oom(spec, data, monkeypatch):
    def full(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(loop.F, "cross_entropy", full)
    result = _fit(spec, _small(data, 256))
    assert result.status == "oom" and "out of memory" in result.message and result.epochs == []


def test_the_same_seed_gives_the_same_metrics_and_another_seed_does_not(spec, data):
    r = dataclasses.replace(spec.recipe, epochs=2)
    a = _fit(spec, _small(data), r)
    b = _fit(spec, _small(data), r)
    c = _fit(spec, _small(data), dataclasses.replace(r, seed=1))
    assert _untimed(a.epochs) == _untimed(b.epochs)
    assert _untimed(a.epochs) != _untimed(c.epochs)


@pytest.mark.parametrize("recipe, n", [
    (dict(optimizer="sgd", momentum=0.9, nesterov=True, lr=0.05, scheduler="step", step_size=1, gamma=0.5,
          label_smoothing=0.1, grad_clip=0.5), 300),  # batch 64: 4 full batches and one of 44
    (dict(optimizer="adamw", lr=0.001, weight_decay=0.01, scheduler="onecycle"), 257),  # 4 full, a lone image left out
    (dict(optimizer="adam", lr=0.002, scheduler="cosine", batch_size=50, ema=0.9), 300),  # full batches only
], ids=["sgd-step-partial", "adamw-onecycle-lone", "adam-cosine-full-ema"])
def test_the_graphed_steps_give_the_eager_epochs_result_on_the_cpu(spec, data, recipe, n):
    # on the CPU graphs=True runs the steps a CUDA graph captures (batch by step number, rates from a tensor,
    # trainer.optim's update), uncaptured and with the eager epoch's random draws: since trainer.step, the one
    # step both paths call, this holds exactly (test_the_eager_and_the_graphed_path_are_one_path_on_the_cpu)
    r = dataclasses.replace(spec.recipe, epochs=2, **recipe)
    small = _small(data, n)
    eager = _fit(spec, small, r, graphs=False)
    graphed = _fit(spec, small, r, graphs=True)
    assert eager.ok and graphed.ok
    assert _untimed(_fit(spec, small, r).epochs) == _untimed(eager.epochs)  # the CPU's default: eager
    for e, g in zip(eager.epochs, graphed.epochs, strict=True):
        assert (g["epoch"], g["lr"]) == (e["epoch"], e["lr"])
        assert g["train_loss"] == pytest.approx(e["train_loss"], rel=1e-4)
        assert g["train_acc"] == pytest.approx(e["train_acc"], abs=1.5 / n)
        assert g["val_loss"] == pytest.approx(e["val_loss"], rel=1e-3)
        assert g["val_acc"] == pytest.approx(e["val_acc"], abs=0.011)
    assert graphed.epochs[1]["train_loss"] != graphed.epochs[0]["train_loss"]


@pytest.mark.parametrize("graphs", [False, True], ids=["eager", "graphed"])
@pytest.mark.parametrize("scheduler", ["step", "onecycle", "cosine"])
def test_resuming_from_a_checkpoint_gives_the_uninterrupted_result(spec, data, tmp_path, scheduler, graphs):
    recipe = dataclasses.replace(spec.recipe, optimizer="sgd", momentum=0.9, nesterov=True, lr=0.05,
                                 scheduler=scheduler, step_size=1, gamma=0.5, epochs=3, label_smoothing=0.1,
                                 grad_clip=1.0)
    small = _small(data, 384)
    whole = _fit(spec, small, recipe, checkpoint=tmp_path / "whole.pt", graphs=graphs)
    ckpt = tmp_path / "run.pt"
    with pytest.raises(Stop):
        _fit(spec, small, recipe, checkpoint=ckpt, report=stop_after(2), graphs=graphs)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2
    seen = []
    torch.manual_seed(123)  # a different initialisation and global RNG: the checkpoint must restore both
    resumed = fit(build(spec), small, recipe, "cpu", resume=ckpt, checkpoint=ckpt, threads=THREADS,
                  report=lambda e, m: seen.append(e), graphs=graphs)
    assert seen == [3]
    assert _untimed(resumed.epochs) == _untimed(whole.epochs)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 3


def test_a_checkpoint_of_another_recipe_is_refused(spec, data, tmp_path):
    ckpt = tmp_path / "a.pt"
    _fit(spec, _small(data, 256), checkpoint=ckpt)
    with pytest.raises(ValueError, match="another recipe"):
        _fit(spec, _small(data, 256), dataclasses.replace(spec.recipe, lr=0.02), resume=ckpt)


@pytest.mark.parametrize("recipe, lrs", [
    (dict(optimizer="sgd", scheduler="step", step_size=1, gamma=0.5), [0.01, 0.005]),
    # cosine over 8 steps, read at steps 4 and 8: 0.01 (1 + cos(pi t / 8)) / 2 for t = 3, 7
    (dict(optimizer="adamw", weight_decay=0.01, scheduler="cosine"), [0.0069134, 0.00038060]),
    (dict(optimizer="adam", scheduler="onecycle", max_lr=0.05, pct_start=0.25), None),
    (dict(optimizer="sgd", scheduler="none", label_smoothing=0.1, grad_clip=0.5), [0.01, 0.01]),
], ids=["sgd-step", "adamw-cosine", "adam-onecycle", "sgd-none"])
def test_every_optimizer_and_schedule_trains(spec, data, recipe, lrs):
    r = dataclasses.replace(spec.recipe, epochs=2, augment=Augment(), **recipe)
    result = _fit(spec, _small(data, 256), r)
    assert result.ok and len(result.epochs) == 2
    got = [m["lr"] for m in result.epochs]
    if lrs is None:  # one cycle: up to max_lr at 25%, then down to max_lr / 25 / 1e4 at the last step
        assert got[1] == pytest.approx(0.05 / 25 / 1e4, rel=1e-3)
    else:
        assert got == pytest.approx(lrs, rel=1e-4)


def test_epochs_overrides_the_recipe(spec, data):
    result = _fit(spec, _small(data, 256), epochs=2)
    assert [m["epoch"] for m in result.epochs] == [1, 2]


def test_eval_data_replaces_the_validation_split_and_none_means_no_evaluation(spec, data):
    small = _small(data, 256)
    other = data.train.head(100)
    with_other = _fit(spec, small, eval_data=other)
    torch.manual_seed(0)
    m = build(spec)
    plain = fit(m, small.train, spec.recipe, "cpu", threads=THREADS)  # a single Split: nothing to evaluate on
    assert "val_acc" not in plain.final and plain.final["train_loss"] > 0
    assert with_other.final["train_loss"] == pytest.approx(plain.final["train_loss"])
    assert with_other.final["val_acc"] == pytest.approx(evaluate(m, other, "cpu").acc)


def test_evaluate_restores_the_mode_and_counts_correctly(spec, data):
    torch.manual_seed(0)
    model = build(spec)
    model.eval()
    ev = evaluate(model, data.val, "cpu", batch_size=128)
    assert not model.training and ev.n == 500 and 0 <= ev.acc <= 1
    with torch.no_grad():
        x = (data.val.x.float() / 255 - 0.1307) / 0.3081
        want = (model(x).argmax(1) == data.val.y).float().mean().item()
    assert ev.acc == pytest.approx(want)


def test_a_device_that_is_not_there_is_a_value_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA is here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        loop.resolve_device("cuda")
    assert loop.resolve_device(None) == torch.device("cpu")


def test_the_trainer_does_not_import_optuna():
    import subprocess
    import sys

    code = "import sys, trainer, trainer.train; sys.exit('optuna' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


@pytest.mark.parametrize("graphs", [False, True], ids=["eager", "graphs-uncaptured"])
def test_every_batch_goes_through_the_one_step_function_the_gpu_captures(spec, data, monkeypatch, graphs):
    from trainer.step import Epoch

    calls = []
    real = Epoch.step

    def counted(self, idx, lr):
        calls.append((len(idx), float(lr)))
        return real(self, idx, lr)

    monkeypatch.setattr(Epoch, "step", counted)
    r = dataclasses.replace(spec.recipe, optimizer="sgd", lr=0.05, scheduler="cosine", grad_clip=0.5, epochs=2)
    result = _fit(spec, _small(data, 300), r, graphs=graphs)  # batch 64: 4 full batches and one of 44
    assert result.ok
    assert [n for n, _ in calls] == [64, 64, 64, 64, 44] * 2
    assert calls[0][1] == pytest.approx(0.05) and calls[-1][1] < calls[0][1]


def test_the_eager_and_the_graphed_path_are_one_path_on_the_cpu(spec, data):
    r = dataclasses.replace(spec.recipe, optimizer="adamw", lr=0.002, weight_decay=0.01, scheduler="onecycle",
                            grad_clip=1.0, label_smoothing=0.1, epochs=2)
    small = _small(data, 300)
    assert _untimed(_fit(spec, small, r, graphs=False).epochs) == _untimed(_fit(spec, small, r, graphs=True).epochs)


def test_clipping_clips_and_a_large_bound_changes_nothing(spec, data):
    r = dataclasses.replace(spec.recipe, optimizer="sgd", lr=0.05, epochs=1)
    small = _small(data, 256)
    plain = _untimed(_fit(spec, small, r).epochs)
    assert _untimed(_fit(spec, small, dataclasses.replace(r, grad_clip=1e6)).epochs) == plain
    assert _untimed(_fit(spec, small, dataclasses.replace(r, grad_clip=1e-3)).epochs) != plain
