"""Sampling: ``trial.suggest_*`` calls in, a :class:`NetSpec` under the budget out.

The shape of a network (stages, convolutions, kernel, transitions, head, ...)
and the relative widths of its stages are sampled; then the base width is
solved for, so that the network fills a sampled share of the budget (``fill``)
without ever exceeding it, and (``widen``) its stages are widened a channel at
a time into what the base width's coarser steps leave.  Nothing here builds a
model: counting is analytic.

Parameter names are stable and hierarchical (``arch.stages``, ``s2.convs``,
``s2.growth``, ``opt.lr``, ``aug.rotate``), so replaying a trial's params with
``optuna.trial.FixedTrial`` gives back the same spec.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any, Protocol

from search.searchspace import Dim, SearchSpace
from space.analysis import count_params
from space.spec import (
    GAP,
    Act,
    Augment,
    BatchNorm,
    Conv,
    Dropout2d,
    Layer,
    Linear,
    MaxPool,
    NetSpec,
    Recipe,
    Residual,
    SepConv,
    SpecError,
)

__all__ = ["Shape", "OverBudget", "sample", "sample_shape", "fit_to_budget", "fill_widths", "make_spec",
           "smallest_params"]

MAX_WIDTH = 1024


class TrialLike(Protocol):  # optuna.Trial and optuna.trial.FixedTrial
    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int: ...
    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...
    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


class OverBudget(Exception):
    """The sampled shape does not fit the budget even at its smallest width."""


def _pick(trial: TrialLike, name: str, dim: Dim) -> Any:
    if dim.fixed:
        return dim.value
    if dim.choices is not None:
        return trial.suggest_categorical(name, list(dim.choices))
    assert dim.low is not None and dim.high is not None
    if dim.is_int:
        return trial.suggest_int(name, int(dim.low), int(dim.high), log=dim.log)
    return trial.suggest_float(name, float(dim.low), float(dim.high), log=dim.log)


@dataclass(frozen=True)
class Shape:
    """A network's shape without its widths: what is sampled before the budget is applied."""

    stages: int
    convs: tuple[int, ...]          # per stage
    types: tuple[str, ...]          # per stage, of the non-first convolutions: plain | sep
    opens: tuple[str, ...]          # per stage, of the convolution opening it: plain | sep (plain for the first)
    growth: tuple[float, ...]       # per stage; 1.0 for the first
    squeeze: tuple[bool, ...]       # per stage; a 1x1 squeeze after the pool that opens it (never for the first)
    residual: tuple[bool, ...]      # per stage; identity skip over the stage's later convolutions
    kernel: int
    first_pad: int
    dropout: float
    act: str
    bn_order: str                   # bn_act: conv -> bn -> act; act_bn: conv -> act -> bn
    head: str
    min_channels: int
    widen: bool = False             # stages widened a channel at a time after the base width (fill_widths)
    conv_bias: bool = True          # a bias on the convolutions BatchNorm follows (bn_act), which cancels it


def sample_shape(trial: TrialLike, space: SearchSpace) -> Shape:
    stages = _pick(trial, "arch.stages", space["stages"])
    convs, types, opens, growth, squeeze, residual = [], [], [], [], [], []
    for i in range(1, stages + 1):
        n = _pick(trial, f"s{i}.convs", space["convs"])
        convs.append(n)
        types.append(_pick(trial, f"s{i}.type", space["conv_type"]) if n > 1 else "plain")
        opens.append("plain" if i == 1 else _pick(trial, f"s{i}.open", space["open_type"]))
        residual.append(bool(_pick(trial, f"s{i}.residual", space["residual"])) if n > 1 else False)
        growth.append(1.0 if i == 1 else _pick(trial, f"s{i}.growth", space["growth"]))
        squeeze.append(False if i == 1 else bool(_pick(trial, f"s{i}.squeeze", space["squeeze"])))
    return Shape(
        stages=stages, convs=tuple(convs), types=tuple(types), opens=tuple(opens), growth=tuple(growth),
        squeeze=tuple(squeeze), residual=tuple(residual),
        kernel=_pick(trial, "arch.kernel", space["kernel"]),
        first_pad=_pick(trial, "arch.first_pad", space["first_pad"]),
        dropout=_pick(trial, "arch.dropout", space["dropout"]),
        act=_pick(trial, "arch.act", space["act"]),
        bn_order=_pick(trial, "arch.bn_order", space["bn_order"]),
        head=_pick(trial, "arch.head", space["head"]),
        min_channels=space["min_channels"].value,
        widen=bool(_pick(trial, "arch.widen", space["widen"])),
        conv_bias=bool(_pick(trial, "arch.conv_bias", space["conv_bias"])),
    )


def widths(shape: Shape, base: int) -> tuple[int, ...]:
    out, w = [], float(base)
    for g in shape.growth:
        w *= g
        out.append(max(shape.min_channels, round(w)))
    return tuple(out)


def layers_for(shape: Shape, ch: tuple[int, ...], classes: int) -> tuple[Layer, ...]:
    """The layers of ``shape`` with stage widths ``ch``."""
    k, pad = shape.kernel, shape.kernel // 2
    act = Act(shape.act)
    layers: list[Layer] = []

    def block(conv: Conv | SepConv) -> list[Layer]:
        if shape.bn_order == "act_bn":
            return [conv, act, BatchNorm()]
        return [conv if shape.conv_bias else replace(conv, bias=False), BatchNorm(), act]

    for i in range(shape.stages):
        c = ch[i]
        if i > 0:
            layers.append(MaxPool(2))
            if shape.dropout > 0:
                layers.append(Dropout2d(shape.dropout))
            if shape.squeeze[i]:
                layers += block(Conv(max(shape.min_channels, round(ch[i - 1] / 2)), k=1))
        first_pad = (pad if shape.first_pad else 0) if i == 0 else pad
        opening = SepConv(c, k=k, pad=first_pad) if shape.opens[i] == "sep" else Conv(c, k=k, pad=first_pad)
        layers += block(opening)
        later: list[Layer] = []
        for _ in range(shape.convs[i] - 1):
            conv: Conv | SepConv = SepConv(c, k=k, pad=pad) if shape.types[i] == "sep" else Conv(c, k=k, pad=pad)
            later += block(conv)
        if later and shape.residual[i]:
            layers.append(Residual(tuple(later)))
        else:
            layers += later
    if shape.dropout > 0:
        layers.append(Dropout2d(shape.dropout))
    if shape.head == "gap_linear":
        layers += [GAP(), Linear(classes)]
    elif shape.head == "gap_conv":
        layers += [GAP(), Conv(classes, k=1)]
    else:  # conv_gap: a 1x1 convolution to the classes, then global average pooling
        layers += [Conv(classes, k=1), GAP()]
    return tuple(layers)


def _params(shape: Shape, ch: tuple[int, ...], classes: int, input: tuple[int, int, int]) -> int:
    return count_params(NetSpec(layers_for(shape, ch, classes), input=input, classes=classes))


def fit_to_budget(shape: Shape, target: int, budget: int, classes: int = 10,
                  input: tuple[int, int, int] = (1, 28, 28)) -> int:
    """The largest base width whose network has at most ``target`` parameters (never more than ``budget``).

    Raises :class:`OverBudget` when even the smallest width is over ``budget``, and
    :class:`SpecError` when the shape does not fit the input (e.g. too many pools).
    """
    smallest = _params(shape, widths(shape, 1), classes, input)
    if smallest > budget:
        raise OverBudget(f"the smallest network of this shape has {smallest} parameters > budget {budget}")
    lo, hi = 1, MAX_WIDTH
    while lo < hi:  # parameters grow with the base width (up to rounding; checked below)
        mid = (lo + hi + 1) // 2
        if _params(shape, widths(shape, mid), classes, input) <= target:
            lo = mid
        else:
            hi = mid - 1
    while lo > 1 and _params(shape, widths(shape, lo), classes, input) > min(target, budget):
        lo -= 1
    return lo


def fill_widths(shape: Shape, base: int, target: int, classes: int = 10,
                input: tuple[int, int, int] = (1, 28, 28)) -> tuple[int, ...]:
    """The stage widths of ``base``, then widened a channel at a time, the last stage first and round after
    round, while the network keeps to ``target`` parameters.

    A step of the base width moves every stage at once: at a few thousand parameters it is 10-20% of the
    budget, so a network solved for its base width alone lands well short of its target.
    """
    ch = list(widths(shape, base))
    grew = True
    while grew:
        grew = False
        for i in reversed(range(shape.stages)):
            ch[i] += 1
            if _params(shape, tuple(ch), classes, input) <= target:
                grew = True
            else:
                ch[i] -= 1
    return tuple(ch)


def sample_recipe(trial: TrialLike, space: SearchSpace, epochs: int, seed: int) -> Recipe:
    opt = _pick(trial, "opt.name", space["optimizer"])
    lr_dim = space["lr"]
    if not lr_dim.fixed and lr_dim.choices is None:  # each optimizer family gets its own, sensible, lr range
        assert lr_dim.low is not None and lr_dim.high is not None
        lo, hi = (max(lr_dim.low, 0.005), lr_dim.high) if opt == "sgd" else (lr_dim.low, min(lr_dim.high, 0.02))
        if lo > hi:
            lo, hi = lr_dim.low, lr_dim.high
        lr_dim = Dim("lr", low=float(lo), high=float(hi), log=lr_dim.log)
    lr = _pick(trial, f"opt.{opt}.lr", lr_dim)
    kw: dict[str, Any] = {"optimizer": opt, "lr": lr}
    if opt == "sgd":
        kw["momentum"] = _pick(trial, "opt.momentum", space["momentum"])
        kw["nesterov"] = bool(_pick(trial, "opt.nesterov", space["nesterov"]))
    kw["weight_decay"] = _pick(trial, "opt.weight_decay", space["weight_decay"])
    sched = _pick(trial, "sched.name", space["scheduler"])
    kw["scheduler"] = sched
    if sched == "onecycle":  # the sampled rate is the peak
        kw["max_lr"], kw["lr"] = lr, lr / 10
        kw["pct_start"] = _pick(trial, "sched.pct_start", space["pct_start"])
    elif sched == "step":
        kw["step_size"] = max(1, round(_pick(trial, "sched.step_frac", space["step_frac"]) * epochs))
        kw["gamma"] = _pick(trial, "sched.gamma", space["step_gamma"])
    elif sched == "multistep":
        shares = (_pick(trial, "sched.milestone1", space["milestone1"]),
                  _pick(trial, "sched.milestone2", space["milestone2"]))
        kw["milestones"] = tuple(sorted({max(1, min(epochs, round(f * epochs))) for f in shares}))
        kw["gamma"] = _pick(trial, "sched.gamma", space["step_gamma"])
    elif sched == "plateau":
        kw["factor"] = _pick(trial, "sched.plateau_factor", space["plateau_factor"])
        kw["patience"] = _pick(trial, "sched.plateau_patience", space["plateau_patience"])
    if sched == "onecycle":
        for name in ("div_factor", "final_div_factor", "three_phase", "anneal", "cycle_momentum"):
            kw[name] = _pick(trial, f"sched.{name}", space[name])
    kw["init"] = _pick(trial, "init", space["init"])
    kw["batch_size"] = _pick(trial, "train.batch_size", space["batch_size"])
    kw["label_smoothing"] = _pick(trial, "train.label_smoothing", space["label_smoothing"])
    kw["grad_clip"] = _pick(trial, "train.grad_clip", space["grad_clip"])
    kw["ema"] = _pick(trial, "train.ema", space["ema"])
    aug = {name: _pick(trial, f"aug.{name}", space[name])
           for name in ("rotate", "translate", "scale", "shear", "crop_p", "erase_p")}
    aug["fill"] = _pick(trial, "aug.fill", space["rotate_fill"])
    aug["resized_crop"] = _pick(trial, "aug.resized_crop", space["resized_crop"])
    if aug["resized_crop"]:
        aug["crop_scale"] = (_pick(trial, "aug.crop_scale_min", space["crop_scale_min"]), 1.0)
    return Recipe(epochs=epochs, seed=seed, augment=Augment(**aug), **kw)


def make_spec(shape: Shape, ch: tuple[int, ...], recipe: Recipe, name: str, classes: int = 10,
              input: tuple[int, int, int] = (1, 28, 28)) -> NetSpec:
    return NetSpec(layers_for(shape, ch, classes), input=input, classes=classes, name=name, recipe=recipe)


def sample(trial: TrialLike, space: SearchSpace, budget: int, *, epochs: int, seed: int = 0, name: str = "net",
           classes: int = 10, input: tuple[int, int, int] = (1, 28, 28)) -> NetSpec:
    """A spec with at most ``budget`` parameters; raises :class:`OverBudget` or :class:`SpecError` when the
    sampled shape cannot be made into one (the search prunes such a trial)."""
    shape = sample_shape(trial, space)
    fill = _pick(trial, "arch.fill", space["fill"])
    target = int(fill * budget)
    base = fit_to_budget(shape, target, budget, classes, input)
    ch = fill_widths(shape, base, min(target, budget), classes, input) if shape.widen else widths(shape, base)
    recipe = sample_recipe(trial, space, epochs, seed)
    spec = make_spec(shape, ch, recipe, name, classes, input)
    if count_params(spec) > budget:  # pragma: no cover - fit_to_budget guarantees this
        raise OverBudget(f"{count_params(spec)} parameters > budget {budget}")
    return spec


def smallest_params(space: SearchSpace, classes: int = 10, input: tuple[int, int, int] = (1, 28, 28)) -> int:
    """The fewest parameters any network of the space can have (for refusing impossible budgets)."""

    def lows(d: Dim) -> Any:
        return min(d.values, key=lambda v: (v is True, v))

    best = None
    stages_dim = space["stages"]
    for stages in sorted(set(range(int(min(stages_dim.values)), int(max(stages_dim.values)) + 1))
                         if not stages_dim.choices else stages_dim.choices):
        for head, opens in itertools.product(space["head"].values, space["open_type"].values):
            for k in space["kernel"].values:
                for pad in space["first_pad"].values:
                    shape = Shape(
                        stages=stages, convs=(int(lows(space["convs"])),) * stages, types=("plain",) * stages,
                        opens=("plain",) + (opens,) * (stages - 1),
                        growth=(1.0,) + (float(lows(space["growth"])),) * (stages - 1),
                        squeeze=(False,) * stages, residual=(False,) * stages, kernel=k, first_pad=pad,
                        dropout=0.0, act="relu", bn_order="bn_act", head=head,
                        min_channels=space["min_channels"].value, conv_bias=bool(lows(space["conv_bias"])))
                    try:
                        n = _params(shape, widths(shape, 1), classes, input)
                    except SpecError:
                        continue
                    best = n if best is None else min(best, n)
    if best is None:
        raise SpecError("no network of this search space fits the input shape")
    return best
