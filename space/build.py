"""``build(spec) -> nn.Module``: a pure, deterministic function of the spec."""

from __future__ import annotations

import torch
from torch import nn

from space.spec import (
    GAP,
    Act,
    BatchNorm,
    Conv,
    Dropout,
    Dropout2d,
    Flatten,
    Layer,
    Linear,
    MaxPool,
    NetSpec,
    Residual,
    SepConv,
)

__all__ = ["build", "Net", "ResidualBlock"]

_ACT = {
    "relu": nn.ReLU, "relu6": nn.ReLU6, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU,
    "silu": nn.SiLU, "elu": nn.ELU, "tanh": nn.Tanh,
}


class ResidualBlock(nn.Module):
    def __init__(self, body: nn.Sequential) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Net(nn.Module):
    """The built network: ``(B, C, H, W) -> (B, classes)`` logits."""

    def __init__(self, layers: nn.Sequential, classes: int) -> None:
        super().__init__()
        self.layers = layers
        self.classes = classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).reshape(x.shape[0], self.classes)  # (B, classes)


def _module(layer: Layer, dims: tuple[int, ...]) -> tuple[nn.Module, tuple[int, ...]]:
    if isinstance(layer, Conv):
        c, h, w = dims
        m: nn.Module = nn.Conv2d(c, layer.out, layer.k, layer.stride, layer.pad, bias=layer.bias, groups=layer.groups)
        oh, ow = (h + 2 * layer.pad - layer.k) // layer.stride + 1, (w + 2 * layer.pad - layer.k) // layer.stride + 1
        return m, (layer.out, oh, ow)
    if isinstance(layer, SepConv):
        c, h, w = dims
        m = nn.Sequential(
            nn.Conv2d(c, c, layer.k, layer.stride, layer.pad, groups=c, bias=False),  # depthwise
            nn.Conv2d(c, layer.out, 1, bias=layer.bias),                               # pointwise
        )
        oh, ow = (h + 2 * layer.pad - layer.k) // layer.stride + 1, (w + 2 * layer.pad - layer.k) // layer.stride + 1
        return m, (layer.out, oh, ow)
    if isinstance(layer, BatchNorm):
        return (nn.BatchNorm2d(dims[0]) if len(dims) == 3 else nn.BatchNorm1d(dims[0])), dims
    if isinstance(layer, Act):
        return _ACT[layer.fn](), dims
    if isinstance(layer, MaxPool):
        c, h, w = dims
        s = layer.s
        return nn.MaxPool2d(layer.k, s, layer.pad), (c, (h + 2 * layer.pad - layer.k) // s + 1,
                                                      (w + 2 * layer.pad - layer.k) // s + 1)
    if isinstance(layer, Dropout):
        return nn.Dropout(layer.p), dims
    if isinstance(layer, Dropout2d):
        return nn.Dropout2d(layer.p), dims
    if isinstance(layer, GAP):
        return nn.AdaptiveAvgPool2d(1), (dims[0], 1, 1)
    if isinstance(layer, Flatten):
        n = 1
        for v in dims:
            n *= v
        return nn.Flatten(1), (n,)
    if isinstance(layer, Linear):
        n = dims[0]
        if len(dims) == 3:  # C x 1 x 1 after gap
            return nn.Sequential(nn.Flatten(1), nn.Linear(n, layer.out, bias=layer.bias)), (layer.out,)
        return nn.Linear(n, layer.out, bias=layer.bias), (layer.out,)
    if isinstance(layer, Residual):
        body, out = _sequential(layer.layers, dims)
        return ResidualBlock(body), out
    raise TypeError(f"not a layer: {layer!r}")  # pragma: no cover


def _sequential(layers: tuple[Layer, ...], dims: tuple[int, ...]) -> tuple[nn.Sequential, tuple[int, ...]]:
    mods = []
    for layer in layers:
        m, dims = _module(layer, dims)
        mods.append(m)
    return nn.Sequential(*mods), dims


def build(spec: NetSpec) -> Net:
    """The spec's network with PyTorch's default initialisation (seed it with ``torch.manual_seed``)."""
    body, _ = _sequential(spec.layers, tuple(spec.input))
    return Net(body, spec.classes)


