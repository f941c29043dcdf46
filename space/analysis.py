"""What a spec costs and sees, from the spec alone (no torch).

A small shape record (channels, height, width, receptive field, jump) is passed
through the layers, each kind saying what it makes of it (:mod:`space.layers`).
The receptive field follows ``r_out = r_in + (k - 1) * j_in`` and ``j_out = j_in * s``;
after global average pooling, or a linear layer, it is global (``rf = None``).
MACs count the multiply-adds of convolutions and linear layers for one image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from space.layers import LayerInfo, Shape, walk

if TYPE_CHECKING:
    from space.spec import NetSpec

__all__ = ["Shape", "LayerInfo", "Analysis", "analyze", "count_params", "format_table"]


@dataclass(frozen=True)
class Analysis:
    layers: tuple[LayerInfo, ...]
    params: int
    macs: int
    out_shape: tuple[int, ...]
    rf: int | None    # receptive field of the last spatial layer before the network goes global
    final_rf: int | None


def analyze(spec: NetSpec) -> Analysis:
    """Per-layer shapes, receptive fields, parameters and MACs; raises :class:`SpecError` on shapes that don't fit."""
    rows: list[LayerInfo] = []
    x = walk(spec.layers, Shape.of(spec.input), "layers", 0, rows)
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
