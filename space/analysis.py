"""What a spec costs and sees, from the spec alone (no torch).

A small shape record (channels, height, width, receptive field, jump) is passed
through the layers.  The receptive field follows ``r_out = r_in + (k - 1) * j_in``
and ``j_out = j_in * s``; after global average pooling, or a linear layer, it
is global (``rf = None``).  MACs count the multiply-adds of convolutions and
linear layers for one image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from space.spec import (
    GAP,
    Act,
    BatchNorm,
    Conv,
    Dropout,
    Dropout2d,
    Flatten,
    Linear,
    MaxPool,
    Residual,
    SepConv,
    SpecError,
)

if TYPE_CHECKING:
    from space.spec import Layer, NetSpec

__all__ = ["Shape", "LayerInfo", "Analysis", "analyze", "count_params", "format_table"]


@dataclass(frozen=True)
class Shape:
    """The tensor after a layer, per image: (C, H, W) maps, or (F,) flat features."""

    dims: tuple[int, ...]
    rf: int | None  # None: global
    jump: int

    @property
    def spatial(self) -> bool:
        return len(self.dims) == 3


@dataclass(frozen=True)
class LayerInfo:
    where: str        # layers[3], layers[5].layers[0], ...
    kind: str
    out: tuple[int, ...]
    rf: int | None
    jump: int
    params: int
    macs: int
    depth: int = 0    # nesting level (inside residual groups)


@dataclass(frozen=True)
class Analysis:
    layers: tuple[LayerInfo, ...]
    params: int
    macs: int
    out_shape: tuple[int, ...]
    rf: int | None    # receptive field of the last spatial layer before the network goes global
    final_rf: int | None


def _conv_out(n: int, k: int, s: int, p: int) -> int:
    return (n + 2 * p - k) // s + 1


def _step(layer: Layer, x: Shape, where: str, depth: int, rows: list[LayerInfo]) -> Shape:
    def err(msg: str) -> SpecError:
        return SpecError(msg, where)

    def need_maps() -> tuple[int, int, int]:
        if not x.spatial:
            raise err(f"{layer.kind} needs feature maps (C x H x W) but gets flat features of size {x.dims[0]}")
        c, h, w = x.dims
        return c, h, w

    params = macs = 0
    if isinstance(layer, (Conv, SepConv, MaxPool)):
        c, h, w = need_maps()
        k, pad = layer.k, layer.pad
        s = layer.s if isinstance(layer, MaxPool) else layer.stride
        if k > h + 2 * pad or k > w + 2 * pad:
            raise err(f"kernel {k} is larger than its input {h}x{w} (with padding {pad})")
        oh, ow = _conv_out(h, k, s, pad), _conv_out(w, k, s, pad)
        if isinstance(layer, Conv):
            if c % layer.groups:
                raise err(f"input channels {c} not divisible by groups {layer.groups}")
            params = layer.out * (c // layer.groups) * k * k + (layer.out if layer.bias else 0)
            macs = oh * ow * layer.out * (c // layer.groups) * k * k
            oc = layer.out
        elif isinstance(layer, SepConv):
            params = c * k * k + c * layer.out + (layer.out if layer.bias else 0)
            macs = oh * ow * c * k * k + oh * ow * c * layer.out
            oc = layer.out
        else:
            oc = c
        y = Shape((oc, oh, ow), None if x.rf is None else x.rf + (k - 1) * x.jump, x.jump * s)
    elif isinstance(layer, BatchNorm):
        params = 2 * x.dims[0]
        y = x
    elif isinstance(layer, (Act, Dropout)):
        y = x
    elif isinstance(layer, Dropout2d):
        need_maps()
        y = x
    elif isinstance(layer, GAP):
        c, _, _ = need_maps()
        y = Shape((c, 1, 1), None, x.jump)
    elif isinstance(layer, Flatten):
        n = 1
        for v in x.dims:
            n *= v
        y = Shape((n,), x.rf, x.jump)
    elif isinstance(layer, Linear):
        if x.spatial:
            c, h, w = x.dims
            if (h, w) != (1, 1):
                raise err(f"linear needs flat features, but gets {c}x{h}x{w} maps (add flatten or gap before it)")
            n = c
        else:
            n = x.dims[0]
        params = n * layer.out + (layer.out if layer.bias else 0)
        macs = n * layer.out
        y = Shape((layer.out,), None, x.jump)
    elif isinstance(layer, Residual):
        rows.append(LayerInfo(where, layer.kind, x.dims, x.rf, x.jump, 0, 0, depth))
        at = len(rows) - 1
        z = x
        first = len(rows)
        for i, inner in enumerate(layer.layers):
            z = _step(inner, z, f"{where}.layers[{i}]", depth + 1, rows)
        if z.dims != x.dims:
            raise err(f"residual group maps {'x'.join(map(str, x.dims))} to {'x'.join(map(str, z.dims))}; "
                      "the shapes must be equal for the add")
        p = sum(r.params for r in rows[first:] if r.kind != "residual")
        m = sum(r.macs for r in rows[first:] if r.kind != "residual")
        rows[at] = LayerInfo(where, "residual", z.dims, z.rf, z.jump, p, m, depth)
        rows.append(LayerInfo(where + ".add", "add", z.dims, z.rf, z.jump, 0, 0, depth))
        return z
    else:  # pragma: no cover - the spec validates layer types
        raise err(f"unknown layer {layer!r}")
    rows.append(LayerInfo(where, layer.kind, y.dims, y.rf, y.jump, params, macs, depth))
    return y


def analyze(spec: NetSpec) -> Analysis:
    """Per-layer shapes, receptive fields, parameters and MACs; raises :class:`SpecError` on shapes that don't fit."""
    rows: list[LayerInfo] = []
    x = Shape(tuple(spec.input), 1, 1)
    for i, layer in enumerate(spec.layers):
        x = _step(layer, x, f"layers[{i}]", 0, rows)
    top = [r for r in rows if r.kind not in ("residual", "add") or r.depth > 0]
    leaf = [r for r in rows if r.kind != "residual"]
    params = sum(r.params for r in leaf)
    macs = sum(r.macs for r in leaf)
    local = [r.rf for r in top if r.rf is not None]
    return Analysis(tuple(rows), params, macs, x.dims, local[-1] if local else 1, x.rf)


def count_params(spec: NetSpec) -> int:
    return analyze(spec).params


def format_table(spec: NetSpec) -> str:
    """The per-layer table that ``space.describe`` prints, ending with ``params: N``."""
    a = analyze(spec)
    lines = [f"{'layer':<22} {'kind':<10} {'output':>12} {'RF':>7} {'jump':>5} {'params':>9} {'MACs':>11}"]
    for r in a.layers:
        if r.kind == "add":
            continue
        name = "  " * r.depth + r.where.rsplit(".", 1)[-1]
        out = "x".join(str(v) for v in r.out)
        rf = "global" if r.rf is None else str(r.rf)
        p = "" if r.kind == "residual" else f"{r.params:,}"
        m = "" if r.kind == "residual" else f"{r.macs:,}"
        lines.append(f"{name:<22} {r.kind:<10} {out:>12} {rf:>7} {r.jump:>5} {p:>9} {m:>11}")
    lines.append(f"receptive field: {a.rf} (then {'global' if a.final_rf is None else a.final_rf}); "
                 f"MACs: {a.macs:,}")
    lines.append(f"params: {a.params}")
    return "\n".join(lines)
