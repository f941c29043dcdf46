"""Random valid specs (hypothesis): the analysis agrees with the built module, and specs survive YAML."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from space.analysis import analyze, count_params
from space.build import build
from space.io import dumps, loads
from space.spec import (
    ACTIVATIONS,
    GAP,
    INTERPOLATIONS,
    OPTIMIZERS,
    SCHEDULERS,
    Act,
    Augment,
    BatchNorm,
    Conv,
    Dropout,
    Dropout2d,
    Flatten,
    Linear,
    MaxPool,
    NetSpec,
    Recipe,
    Residual,
    SepConv,
    SpecError,
    to_dict,
)

Dims = tuple[int, int, int]


def fast(examples: int) -> settings:
    """Few enough examples to run in seconds on two cores; no deadline (the first build imports lazily)."""
    return settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _out_hw(h: int, w: int, k: int, s: int, p: int) -> tuple[int, int]:
    return (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1


@st.composite
def conv_layers(draw: st.DrawFn, dims: Dims) -> tuple[Conv, Dims]:
    c, h, w = dims
    groups = draw(st.sampled_from(_divisors(c)))
    out = groups * draw(st.integers(1, max(1, 12 // groups)))
    pad = draw(st.integers(0, 2))
    k = draw(st.integers(1, min(5, min(h, w) + 2 * pad)))
    s = draw(st.integers(1, 2))
    layer = Conv(out=out, k=k, stride=s, pad=pad, bias=draw(st.booleans()), groups=groups)
    return layer, (out, *_out_hw(h, w, k, s, pad))


@st.composite
def sepconv_layers(draw: st.DrawFn, dims: Dims) -> tuple[SepConv, Dims]:
    c, h, w = dims
    out = draw(st.integers(1, 12))
    pad = draw(st.integers(0, 2))
    k = draw(st.integers(1, min(5, min(h, w) + 2 * pad)))
    s = draw(st.integers(1, 2))
    return SepConv(out=out, k=k, stride=s, pad=pad, bias=draw(st.booleans())), (out, *_out_hw(h, w, k, s, pad))


@st.composite
def maxpool_layers(draw: st.DrawFn, dims: Dims) -> tuple[MaxPool, Dims]:
    c, h, w = dims
    k = draw(st.integers(1, min(3, h, w)))
    pad = draw(st.integers(0, k // 2))
    stride = draw(st.integers(0, 2))
    layer = MaxPool(k=k, stride=stride, pad=pad)
    return layer, (c, *_out_hw(h, w, k, layer.s, pad))


@st.composite
def keep_shape_layers(draw: st.DrawFn, dims: Dims, depth: int) -> Any:
    """A layer that maps C x H x W to itself, for a residual body."""
    c = dims[0]
    kinds = ["conv", "sepconv", "bn", "act", "dropout", "dropout2d", "maxpool"] + (["residual"] if depth < 2 else [])
    kind = draw(st.sampled_from(kinds))
    k = draw(st.sampled_from([1, 3]))
    if kind == "conv":
        return Conv(out=c, k=k, pad=k // 2, bias=draw(st.booleans()), groups=draw(st.sampled_from(_divisors(c))))
    if kind == "sepconv":
        return SepConv(out=c, k=k, pad=k // 2, bias=draw(st.booleans()))
    if kind == "maxpool":
        return MaxPool(k=3, stride=1, pad=1)
    if kind == "residual":
        return draw(residual_layers(dims, depth + 1))[0]
    return draw(simple_layers(kind))


@st.composite
def residual_layers(draw: st.DrawFn, dims: Dims, depth: int = 0) -> tuple[Residual, Dims]:
    n = draw(st.integers(1, 3))
    return Residual(layers=tuple(draw(keep_shape_layers(dims, depth)) for _ in range(n))), dims


@st.composite
def simple_layers(draw: st.DrawFn, kind: str) -> Any:
    if kind == "bn":
        return BatchNorm()
    if kind == "act":
        return Act(fn=draw(st.sampled_from(ACTIVATIONS)))
    p = draw(st.sampled_from([0.0, 0.1, 0.25, 0.5]))
    return Dropout(p=p) if kind == "dropout" else Dropout2d(p=p)


@st.composite
def body_layer(draw: st.DrawFn, dims: Dims) -> tuple[Any, Dims]:
    kind = draw(st.sampled_from(["conv", "conv", "sepconv", "bn", "act", "maxpool", "dropout", "dropout2d",
                                 "residual"]))
    if kind == "conv":
        return draw(conv_layers(dims))
    if kind == "sepconv":
        return draw(sepconv_layers(dims))
    if kind == "maxpool":
        return draw(maxpool_layers(dims))
    if kind == "residual":
        return draw(residual_layers(dims))
    return draw(simple_layers(kind)), dims


@st.composite
def head_layers(draw: st.DrawFn, dims: Dims, classes: int) -> list[Any]:
    """flatten + linear, gap + linear, or a conv to the classes and gap (either order)."""
    c, h, w = dims
    head = draw(st.sampled_from(["flatten", "gap_linear", "conv_gap", "gap_conv"]))
    if head == "flatten":
        layers: list[Any] = [Flatten()]
        if draw(st.booleans()):
            layers.append(Dropout(p=0.1))
        if draw(st.booleans()):  # a hidden layer, with BatchNorm1d
            layers += [Linear(out=draw(st.integers(2, 16))), BatchNorm(), Act()]
        return layers + [Linear(out=classes, bias=draw(st.booleans()))]
    if head == "gap_linear":
        layers = [GAP()]
        if draw(st.booleans()):
            layers.append(Flatten())
        if draw(st.booleans()):
            layers.append(Dropout(p=0.2))
        return layers + [Linear(out=classes, bias=draw(st.booleans()))]
    if head == "conv_gap":
        k = draw(st.integers(1, min(3, h, w)))
        return [Conv(out=classes, k=k, bias=draw(st.booleans())), GAP()]
    return [GAP(), Conv(out=classes, k=1, bias=draw(st.booleans()))]


@st.composite
def recipes(draw: st.DrawFn) -> Recipe:
    optimizer = draw(st.sampled_from(OPTIMIZERS))
    momentum = draw(st.sampled_from([0.0, 0.5, 0.9]))
    unit = st.floats(0.0, 1.0, exclude_max=True, allow_nan=False)
    return Recipe(
        optimizer=optimizer,
        lr=draw(st.floats(1e-5, 1.0)),
        momentum=momentum,
        nesterov=optimizer == "sgd" and momentum > 0 and draw(st.booleans()),
        weight_decay=draw(st.sampled_from([0.0, 1e-4, 5e-4])),
        scheduler=draw(st.sampled_from(SCHEDULERS)),
        step_size=draw(st.integers(1, 20)),
        gamma=draw(st.floats(0.01, 1.0)),
        max_lr=draw(st.none() | st.floats(1e-4, 1.0)),
        pct_start=draw(st.floats(0.05, 0.95)),
        batch_size=draw(st.integers(1, 512)),
        epochs=draw(st.integers(1, 30)),
        label_smoothing=draw(unit),
        grad_clip=draw(st.floats(0.0, 10.0)),
        seed=draw(st.integers(0, 2**31)),
        augment=Augment(rotate=draw(st.floats(0.0, 180.0)), translate=draw(st.floats(0.0, 0.5)),
                        scale=draw(st.floats(0.0, 0.9)), shear=draw(st.floats(0.0, 60.0)),
                        crop_p=draw(st.floats(0.0, 1.0)), crop_size=draw(st.integers(1, 28)),
                        erase_p=draw(st.floats(0.0, 1.0)), interp=draw(st.sampled_from(INTERPOLATIONS))),
    )


@st.composite
def specs(draw: st.DrawFn, with_recipe: bool = False) -> NetSpec:
    """A random valid spec; the few draws that still do not fit are skipped with ``assume``."""
    dims: Dims = (draw(st.integers(1, 3)), draw(st.integers(4, 16)), draw(st.integers(4, 16)))
    classes = draw(st.integers(2, 10))
    layers = []
    x = dims
    for _ in range(draw(st.integers(0, 6))):
        layer, x = draw(body_layer(x))
        layers.append(layer)
    layers += draw(head_layers(x, classes))
    extra: dict[str, Any] = {}
    if with_recipe:
        extra["recipe"] = draw(recipes())
        extra["name"] = draw(st.text(min_size=1, max_size=12))
        extra["info"] = {"notes": draw(st.text(max_size=30)), "source": draw(st.text(min_size=1, max_size=12))}
    try:
        return NetSpec(layers=tuple(layers), input=dims, classes=classes, **extra)
    except SpecError:
        assume(False)
        raise  # unreachable: assume(False) raises


def _top_level_shapes(spec: NetSpec, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    net = build(spec).eval()
    shapes = {}
    with torch.no_grad():
        for i, module in enumerate(net.layers):
            x = module(x)
            shapes[f"layers[{i}]"] = tuple(x.shape[1:])
    return shapes


@fast(300)
@given(specs())
def test_random_spec_analytic_count_equals_built_module(spec: NetSpec) -> None:
    assert count_params(spec) == sum(p.numel() for p in build(spec).parameters())


@fast(100)
@given(specs())
def test_random_spec_build_shapes_equal_analysis_layer_by_layer(spec: NetSpec) -> None:
    a = analyze(spec)
    expected = {r.where: r.out for r in a.layers if r.where.count("[") == 1 and r.kind != "add"}
    shapes = _top_level_shapes(spec, torch.randn(2, *spec.input))  # (B, C, H, W)
    assert shapes == expected
    assert shapes[f"layers[{len(spec.layers) - 1}]"] == a.out_shape
    with torch.no_grad():
        assert build(spec).eval()(torch.randn(2, *spec.input)).shape == (2, spec.classes)


@fast(150)
@given(specs(with_recipe=True))
def test_random_spec_survives_yaml_round_trip_with_info(spec: NetSpec) -> None:
    text = dumps(spec)
    back = loads(text)
    assert back == spec
    assert back.info == spec.info
    assert to_dict(back) == to_dict(spec)
    assert text.startswith("# ")
    assert f"{count_params(spec):,} parameters" in text.splitlines()[0]


@fast(50)
@given(specs(with_recipe=True))
def test_random_spec_build_does_not_mutate_spec(spec: NetSpec) -> None:
    before = copy.deepcopy(spec)
    before_dict = to_dict(spec)
    build(spec)
    assert spec == before
    assert to_dict(spec) == before_dict
    assert spec.info == before.info


@fast(30)
@given(specs())
def test_random_spec_build_is_deterministic_under_manual_seed(spec: NetSpec) -> None:
    torch.manual_seed(1234)
    a = build(spec).state_dict()
    torch.manual_seed(1234)
    b = build(spec).state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_specs_are_frozen() -> None:
    spec = NetSpec(layers=(Flatten(), Linear(out=10)))
    try:
        spec.classes = 3  # type: ignore[misc]
    except dataclasses.FrozenInstanceError:
        pass
    else:
        raise AssertionError("NetSpec is not frozen")
