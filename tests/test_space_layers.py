"""Every registered layer kind: counted as built, shaped as it runs, kept by YAML, and checked field by field.

The tests are parametrized over the registry (``space.layers.KINDS``), so a kind
registered tomorrow is tested too, and fails until it has an example here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch
import yaml

from space.analysis import analyze, count_params
from space.build import build
from space.checks import check_int
from space.io import dumps, loads
from space.layers import (
    GAP,
    KINDS,
    Act,
    BatchNorm,
    Conv,
    Dropout,
    Dropout2d,
    Flatten,
    Layer,
    Linear,
    MaxPool,
    Residual,
    SepConv,
    Shape,
    Step,
    register,
)
from space.spec import NetSpec, SpecError, to_dict

INPUT = (4, 9, 9)


@dataclass(frozen=True)
class Example:
    layer: Layer
    bad: dict[str, Any]             # one field with a bad value, as a YAML file would give it
    before: tuple[Layer, ...] = ()  # what the layer needs in front of it


EXAMPLES = {
    "conv": Example(Conv(out=6, k=3, stride=2, pad=1, groups=2), {"k": 0}),
    "sepconv": Example(SepConv(out=6, k=3, stride=2, pad=1, bias=False), {"stride": 0}),
    "bn": Example(BatchNorm(), {"momentum": 0.1}),  # no fields: an unknown one is the bad value
    "act": Example(Act("gelu"), {"fn": "swish"}),
    "maxpool": Example(MaxPool(k=3, stride=2, pad=1), {"pad": 2}),
    "dropout": Example(Dropout(0.2), {"p": 1.0}),
    "dropout2d": Example(Dropout2d(0.3), {"p": -0.1}),
    "gap": Example(GAP(), {"size": 1}),
    "flatten": Example(Flatten(), {"start_dim": 1}),
    "linear": Example(Linear(out=7), {"out": 0}, before=(Flatten(),)),
    "residual": Example(Residual((Conv(out=4, k=3, pad=1), BatchNorm(), Act())), {"layers": []}),
}


# inputs or fields a kind treats differently: counted and shaped as the examples are
VARIANTS = {
    "bn on flat features": Example(BatchNorm(), {}, before=(Flatten(),)),
    "linear after gap": Example(Linear(out=7), {}, before=(GAP(),)),
    "depthwise conv without bias": Example(Conv(out=8, k=3, groups=4, bias=False), {}),
    "maxpool with stride k": Example(MaxPool(k=2), {}),
    "nested residual": Example(Residual((BatchNorm(), Residual((Conv(out=4, k=1), Act("tanh"))))), {}),
}


def _example(case: str) -> Example:
    if case in VARIANTS:
        return VARIANTS[case]
    if case not in EXAMPLES:
        pytest.fail(f"layer kind {case!r} has no example in {__name__}.EXAMPLES")
    return EXAMPLES[case]


def _spec(case: str) -> tuple[NetSpec, int]:
    """A network around the example, and the example's index in it."""
    ex = _example(case)
    layers = ex.before + (ex.layer, Flatten(), Linear(out=10))
    return NetSpec(layers, input=INPUT, name="one_layer"), len(ex.before)


def test_every_example_is_of_a_registered_kind() -> None:
    assert set(EXAMPLES) == set(KINDS)
    assert all(ex.layer.kind == kind for kind, ex in EXAMPLES.items())


@pytest.mark.parametrize("case", [*KINDS, *VARIANTS])
def test_kind_parameters_as_counted_are_the_built_modules(case: str) -> None:
    spec, i = _spec(case)
    net = build(spec)
    row = next(r for r in analyze(spec).layers if r.where == f"layers[{i}]")
    assert row.params == sum(p.numel() for p in net.layers[i].parameters())
    assert count_params(spec) == sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("case", [*KINDS, *VARIANTS])
def test_kind_output_shape_as_analysed_is_the_forward_shape(case: str) -> None:
    spec, i = _spec(case)
    net = build(spec).eval()
    seen: list[tuple[int, ...]] = []
    net.layers[i].register_forward_hook(lambda m, args, out: seen.append(tuple(out.shape)))
    torch.manual_seed(0)
    with torch.no_grad():
        logits = net(torch.randn(2, *INPUT))
    row = next(r for r in analyze(spec).layers if r.where == f"layers[{i}]")
    assert seen == [(2, *row.out)]
    assert tuple(logits.shape) == (2, 10)


@pytest.mark.parametrize("kind", list(KINDS))
def test_kind_survives_the_yaml_round_trip(kind: str) -> None:
    spec, i = _spec(kind)
    back = loads(dumps(spec))
    assert back == spec
    assert type(back.layers[i]) is type(spec.layers[i])


@pytest.mark.parametrize("kind", list(KINDS))
def test_kind_bad_value_is_a_spec_error_naming_the_layer_and_the_field(kind: str) -> None:
    spec, i = _spec(kind)
    d = to_dict(spec)
    d["layers"][i].update(_example(kind).bad)
    (field,) = _example(kind).bad
    with pytest.raises(SpecError) as info:
        loads(yaml.safe_dump(d), source="bad.yaml")
    assert info.value.where == f"layers[{i}]"
    assert str(info.value).startswith(f"bad.yaml: layers[{i}]: ")
    assert repr(field) in str(info.value) or f"{field} must" in str(info.value)


def test_layer_kinds_are_listed_in_the_order_they_are_registered() -> None:  # as error messages list them
    assert list(KINDS)[:11] == ["conv", "sepconv", "bn", "act", "maxpool", "dropout", "dropout2d", "gap", "flatten",
                                "linear", "residual"]


# ---------------------------------------------------------------- adding a kind


@pytest.fixture
def restore_kinds():  # type: ignore[no-untyped-def]
    before = dict(KINDS)
    yield
    KINDS.clear()
    KINDS.update(before)


def test_a_kind_registered_in_one_block_is_read_analysed_and_built(restore_kinds: None) -> None:
    @register("avgpool")
    @dataclass(frozen=True)
    class AvgPool(Layer):
        k: int = 2

        def __post_init__(self) -> None:
            check_int(self, "k", 1)

        def step(self, x: Shape) -> Step:
            c, _, _ = x.maps(self.kind)
            return Step(x.window(c, self.k, self.k, 0))

        def module(self, x: Shape) -> torch.nn.Module:
            return torch.nn.AvgPool2d(self.k)

    spec = loads("input: [1, 28, 28]\nlayers:\n- {kind: conv, out: 10, k: 3}\n- {kind: avgpool, k: 2}\n"
                 "- {kind: gap}\n")
    assert spec.layers[1] == AvgPool(2)
    a = analyze(spec)
    assert [(r.kind, r.out, r.rf) for r in a.layers] == [
        ("conv", (10, 26, 26), 3), ("avgpool", (10, 13, 13), 4), ("gap", (10, 1, 1), None)]
    assert a.params == sum(p.numel() for p in build(spec).parameters()) == 10 * 9 + 10
    assert "- {kind: avgpool}" in dumps(spec)
    with pytest.raises(SpecError, match=r"layers\[1\]: k must be >= 1, got 0"):
        loads("layers:\n- {kind: conv, out: 10, k: 3}\n- {kind: avgpool, k: 0}\n- {kind: gap}\n")
    with pytest.raises(SpecError, match=r"layers\[1\]: avgpool needs feature maps"):
        NetSpec((Flatten(), AvgPool(), Linear(out=10)))


def test_a_kind_cannot_be_registered_twice(restore_kinds: None) -> None:
    with pytest.raises(ValueError, match="'conv' is registered twice"):
        @register("conv")
        @dataclass(frozen=True)
        class Conv2(Layer):
            pass


def test_a_kind_must_be_a_frozen_dataclass(restore_kinds: None) -> None:
    with pytest.raises(TypeError, match="layer kind 'plain': Plain must be a frozen dataclass"):
        @register("plain")
        class Plain(Layer):  # no @dataclass(frozen=True)
            pass
    assert "plain" not in KINDS
