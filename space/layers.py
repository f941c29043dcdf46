"""The layer kinds, one block each, registered once under their YAML name.

A kind is a frozen dataclass, a subclass of :class:`Layer`, that

* checks its own fields in ``__post_init__`` (a :class:`SpecError` naming the field);
* says in ``step(x)`` what comes out for an input of :class:`Shape` ``x``: the shape
  (with its receptive field and jump), the parameters and the multiply-adds, or
  a :class:`SpecError` when the input does not fit;
* makes its torch module for that input in ``module(x)``; torch is imported
  there, so this file (and :mod:`space.spec`, which re-exports the kinds)
  imports without it.

``@register("name")`` puts the kind in :data:`KINDS`, through which the YAML
reader, the analysis and the builder find it.  To add a kind, write its block
at the end of this file and an example for it in ``tests/test_space_layers.py``.

The receptive field follows ``r_out = r_in + (k - 1) * j_in`` and ``j_out = j_in * s``;
after global average pooling, or a linear layer, it is global (``rf = None``).
MACs count the multiply-adds of convolutions and linear layers for one image.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, TypeVar

from space.checks import SpecError, check_bool, check_choice, check_float, check_int

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "Shape", "Step", "LayerInfo", "Layer", "KINDS", "register", "walk", "sequential", "ACTIVATIONS",
    "Conv", "SepConv", "BatchNorm", "Act", "MaxPool", "Dropout", "Dropout2d", "GAP", "Flatten", "Linear", "Residual",
]


# ---------------------------------------------------------------- what passes through the layers


@dataclass(frozen=True)
class Shape:
    """The tensor after a layer, per image: (C, H, W) maps, or (F,) flat features."""

    dims: tuple[int, ...]
    rf: int | None  # None: global
    jump: int

    @classmethod
    def of(cls, dims: tuple[int, ...]) -> Shape:
        """The network's input: each value sees one pixel."""
        return cls(tuple(dims), 1, 1)

    @property
    def spatial(self) -> bool:
        return len(self.dims) == 3

    def maps(self, kind: str) -> tuple[int, int, int]:
        """(C, H, W); a :class:`SpecError` when the layer ``kind`` gets flat features instead."""
        if not self.spatial:
            raise SpecError(f"{kind} needs feature maps (C x H x W) but gets flat features of size {self.dims[0]}")
        c, h, w = self.dims
        return c, h, w

    def window(self, out: int, k: int, stride: int, pad: int) -> Shape:
        """After a k x k window (convolution or pooling) slid over the maps, with ``out`` channels."""
        _, h, w = self.dims
        if k > h + 2 * pad or k > w + 2 * pad:
            raise SpecError(f"kernel {k} is larger than its input {h}x{w} (with padding {pad})")
        oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        return Shape((out, oh, ow), None if self.rf is None else self.rf + (k - 1) * self.jump, self.jump * stride)


@dataclass(frozen=True)
class Step:
    """What a layer makes of its input: the output shape, its parameters and its multiply-adds."""

    shape: Shape
    params: int = 0
    macs: int = 0


@dataclass(frozen=True)
class LayerInfo:
    """One row of the analysis."""

    where: str        # layers[3], layers[5].layers[0], ...
    kind: str
    out: tuple[int, ...]
    rf: int | None
    jump: int
    params: int
    macs: int
    depth: int = 0    # nesting level (inside residual groups)


# ---------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Layer:
    """The base of every kind (a frozen dataclass, as its kinds must be).

    ``kind`` is the YAML name (set by :func:`register`); ``shown`` names the fields
    written to YAML even at their default.
    """

    kind: ClassVar[str]
    shown: ClassVar[tuple[str, ...]] = ()

    def step(self, x: Shape) -> Step:
        """Output shape, parameters and MACs for input ``x``; :class:`SpecError` (no place) when ``x`` does not fit."""
        raise NotImplementedError(f"{type(self).__name__}.step")

    def module(self, x: Shape) -> nn.Module:
        """The torch module for input ``x`` (a shape that ``step`` accepts)."""
        raise NotImplementedError(f"{type(self).__name__}.module")

    def trace(self, x: Shape, where: str, depth: int, rows: list[LayerInfo]) -> Shape:
        """Append this layer's row (a group appends its layers' rows too) and return its output shape."""
        try:
            y = self.step(x)
        except SpecError as e:
            raise e.at(where) from None
        rows.append(LayerInfo(where, self.kind, y.shape.dims, y.shape.rf, y.shape.jump, y.params, y.macs, depth))
        return y.shape


KINDS: dict[str, type[Layer]] = {}  # YAML name -> kind, in the order they are registered

L = TypeVar("L", bound=type[Layer])


def register(kind: str) -> Callable[[L], L]:
    """``@register("conv")`` above ``@dataclass(frozen=True)``: the class becomes the layer kind ``conv``."""

    def add(cls: L) -> L:
        params = cls.__dict__.get("__dataclass_params__")  # its own, not the base's
        if params is None or not params.frozen:
            raise TypeError(f"layer kind {kind!r}: {cls.__name__} must be a frozen dataclass")
        if kind in KINDS:
            raise ValueError(f"layer kind {kind!r} is registered twice ({KINDS[kind].__name__}, {cls.__name__})")
        cls.kind = kind
        KINDS[kind] = cls
        return cls

    return add


def walk(layers: tuple[Layer, ...], x: Shape, where: str = "layers", depth: int = 0,
         rows: list[LayerInfo] | None = None) -> Shape:
    """The shape after ``layers``; their rows go to ``rows``; a misfit raises :class:`SpecError` at ``where[i]``."""
    rows = [] if rows is None else rows
    for i, layer in enumerate(layers):
        x = layer.trace(x, f"{where}[{i}]", depth, rows)
    return x


def sequential(layers: tuple[Layer, ...], x: Shape) -> nn.Sequential:
    """The layers' modules in order, each made for the shape its predecessor gives."""
    from torch import nn

    mods = []
    for layer in layers:
        mods.append(layer.module(x))
        x = layer.step(x).shape
    return nn.Sequential(*mods)


# ---------------------------------------------------------------- the kinds

_ACT_MODULES = {  # fn -> torch.nn class
    "relu": "ReLU", "relu6": "ReLU6", "leaky_relu": "LeakyReLU", "gelu": "GELU",
    "silu": "SiLU", "elu": "ELU", "tanh": "Tanh",
}
ACTIVATIONS = tuple(_ACT_MODULES)


@register("conv")
@dataclass(frozen=True)
class Conv(Layer):
    """A 2-D convolution; ``groups`` > 1 gives a grouped (``groups == in`` a depthwise) one."""

    shown: ClassVar[tuple[str, ...]] = ("out", "k", "pad")
    out: int
    k: int = 3
    stride: int = 1
    pad: int = 0
    bias: bool = True
    groups: int = 1

    def __post_init__(self) -> None:
        check_int(self, "out", 1)
        check_int(self, "k", 1)
        check_int(self, "stride", 1)
        check_int(self, "pad", 0)
        check_bool(self, "bias")
        check_int(self, "groups", 1)
        if self.out % self.groups:
            raise SpecError(f"out must be divisible by groups ({self.groups}), got {self.out}")

    def step(self, x: Shape) -> Step:
        c, _, _ = x.maps(self.kind)
        y = x.window(self.out, self.k, self.stride, self.pad)
        if c % self.groups:
            raise SpecError(f"input channels {c} not divisible by groups {self.groups}")
        _, oh, ow = y.dims
        weights = self.out * (c // self.groups) * self.k * self.k
        return Step(y, weights + (self.out if self.bias else 0), oh * ow * weights)

    def module(self, x: Shape) -> nn.Module:
        from torch import nn

        return nn.Conv2d(x.dims[0], self.out, self.k, self.stride, self.pad, bias=self.bias, groups=self.groups)


@register("sepconv")
@dataclass(frozen=True)
class SepConv(Layer):
    """Depthwise-separable convolution: a k x k depthwise conv (no bias), then a 1x1 pointwise conv."""

    shown: ClassVar[tuple[str, ...]] = ("out", "k", "pad")
    out: int
    k: int = 3
    stride: int = 1
    pad: int = 0
    bias: bool = True

    def __post_init__(self) -> None:
        check_int(self, "out", 1)
        check_int(self, "k", 1)
        check_int(self, "stride", 1)
        check_int(self, "pad", 0)
        check_bool(self, "bias")

    def step(self, x: Shape) -> Step:
        c, _, _ = x.maps(self.kind)
        y = x.window(self.out, self.k, self.stride, self.pad)
        _, oh, ow = y.dims
        params = c * self.k * self.k + c * self.out + (self.out if self.bias else 0)
        return Step(y, params, oh * ow * c * self.k * self.k + oh * ow * c * self.out)

    def module(self, x: Shape) -> nn.Module:
        from torch import nn

        c = x.dims[0]
        return nn.Sequential(
            nn.Conv2d(c, c, self.k, self.stride, self.pad, groups=c, bias=False),  # depthwise
            nn.Conv2d(c, self.out, 1, bias=self.bias),                             # pointwise
        )


@register("bn")
@dataclass(frozen=True)
class BatchNorm(Layer):
    """Batch normalisation (2-D on feature maps, 1-D on flat features), with affine weights."""

    def step(self, x: Shape) -> Step:
        return Step(x, 2 * x.dims[0])

    def module(self, x: Shape) -> nn.Module:
        from torch import nn

        return nn.BatchNorm2d(x.dims[0]) if x.spatial else nn.BatchNorm1d(x.dims[0])


@register("act")
@dataclass(frozen=True)
class Act(Layer):
    shown: ClassVar[tuple[str, ...]] = ("fn",)
    fn: str = "relu"

    def __post_init__(self) -> None:
        check_choice(self, "fn", ACTIVATIONS)

    def step(self, x: Shape) -> Step:
        return Step(x)

    def module(self, x: Shape) -> nn.Module:
        from torch import nn

        module: nn.Module = getattr(nn, _ACT_MODULES[self.fn])()
        return module


@register("maxpool")
@dataclass(frozen=True)
class MaxPool(Layer):
    shown: ClassVar[tuple[str, ...]] = ("k",)
    k: int = 2
    stride: int = 0  # 0: same as k
    pad: int = 0

    def __post_init__(self) -> None:
        check_int(self, "k", 1)
        check_int(self, "stride", 0)
        check_int(self, "pad", 0)
        if self.pad * 2 > self.k:
            raise SpecError(f"pad must be at most half of k ({self.k}), got {self.pad}")

    @property
    def s(self) -> int:
        return self.stride or self.k

    def step(self, x: Shape) -> Step:
        c, _, _ = x.maps(self.kind)
        return Step(x.window(c, self.k, self.s, self.pad))

    def module(self, x: Shape) -> nn.Module:
        from torch import nn

        return nn.MaxPool2d(self.k, self.s, self.pad)


@register("dropout")
@dataclass(frozen=True)
class Dropout(Layer):
    shown: ClassVar[tuple[str, ...]] = ("p",)
    p: float = 0.1

    def __post_init__(self) -> None:
        check_float(self, "p", 0.0, 1.0, hi_open=True)

    def step(self, x: Shape) -> Step:
        return Step(x)

    def module(self, x: Shape) -> nn.Module:
        from torch import nn

        return nn.Dropout(self.p)


@register("dropout2d")
@dataclass(frozen=True)
class Dropout2d(Layer):
    """Channel dropout: zeroes whole feature maps."""

    shown: ClassVar[tuple[str, ...]] = ("p",)
    p: float = 0.1

    def __post_init__(self) -> None:
        check_float(self, "p", 0.0, 1.0, hi_open=True)

    def step(self, x: Shape) -> Step:
        x.maps(self.kind)
        return Step(x)

    def module(self, x: Shape) -> nn.Module:
        from torch import nn

        return nn.Dropout2d(self.p)


@register("gap")
@dataclass(frozen=True)
class GAP(Layer):
    """Global average pooling to C x 1 x 1."""

    def step(self, x: Shape) -> Step:
        c, _, _ = x.maps(self.kind)
        return Step(Shape((c, 1, 1), None, x.jump))

    def module(self, x: Shape) -> nn.Module:
        from torch import nn

        return nn.AdaptiveAvgPool2d(1)


@register("flatten")
@dataclass(frozen=True)
class Flatten(Layer):
    def step(self, x: Shape) -> Step:
        return Step(Shape((math.prod(x.dims),), x.rf, x.jump))

    def module(self, x: Shape) -> nn.Module:
        from torch import nn

        return nn.Flatten(1)


@register("linear")
@dataclass(frozen=True)
class Linear(Layer):
    """A fully connected layer on flat features (after ``flatten``, or on C x 1 x 1 after ``gap``)."""

    out: int
    bias: bool = True

    def __post_init__(self) -> None:
        check_int(self, "out", 1)
        check_bool(self, "bias")

    def step(self, x: Shape) -> Step:
        if x.spatial and x.dims[1:] != (1, 1):
            c, h, w = x.dims
            raise SpecError(f"linear needs flat features, but gets {c}x{h}x{w} maps (add flatten or gap before it)")
        n = x.dims[0]
        return Step(Shape((self.out,), None, x.jump), n * self.out + (self.out if self.bias else 0), n * self.out)

    def module(self, x: Shape) -> nn.Module:
        from torch import nn

        linear = nn.Linear(x.dims[0], self.out, bias=self.bias)
        return nn.Sequential(nn.Flatten(1), linear) if x.spatial else linear  # C x 1 x 1 after gap


@register("residual")
@dataclass(frozen=True)
class Residual(Layer):
    """``x + f(x)`` where ``f`` is the group of layers; the group must keep the shape.

    Its rows in the analysis: one for the group (the sum of its layers), its
    layers' rows one level deeper, then one for the add.
    """

    layers: tuple[Layer, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.layers, list):
            object.__setattr__(self, "layers", tuple(self.layers))
        if not isinstance(self.layers, tuple) or not self.layers:
            raise SpecError(f"layers must be a non-empty list of layers, got {self.layers!r}")
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise SpecError(f"layers[{i}] is not a layer: {layer!r}")

    def trace(self, x: Shape, where: str, depth: int, rows: list[LayerInfo]) -> Shape:
        at = len(rows)
        rows.append(LayerInfo(where, self.kind, x.dims, x.rf, x.jump, 0, 0, depth))  # the sums, once known
        z = walk(self.layers, x, f"{where}.layers" if where else "layers", depth + 1, rows)
        if z.dims != x.dims:
            raise SpecError(f"residual group maps {'x'.join(map(str, x.dims))} to {'x'.join(map(str, z.dims))}; "
                            "the shapes must be equal for the add", where)
        inner = [r for r in rows[at + 1:] if r.kind != "residual"]  # a nested group's row repeats its layers'
        rows[at] = LayerInfo(where, self.kind, z.dims, z.rf, z.jump,
                             sum(r.params for r in inner), sum(r.macs for r in inner), depth)
        rows.append(LayerInfo(where + ".add", "add", z.dims, z.rf, z.jump, 0, 0, depth))
        return z

    def step(self, x: Shape) -> Step:
        rows: list[LayerInfo] = []
        z = self.trace(x, "", 0, rows)
        return Step(z, rows[0].params, rows[0].macs)

    def module(self, x: Shape) -> nn.Module:
        from space.modules import ResidualBlock

        return ResidualBlock(sequential(self.layers, x))
