"""``python -m space.from_torch MODULE:CLASS [--kwargs JSON] [--input C,H,W] --out FILE.yaml``: a torch model as a spec.

The class is imported (MODULE is a module name or the path of a .py file), made with the JSON kwargs,
traced with ``torch.fx.symbolic_trace`` and read node by node into the layer kinds of
:mod:`space.layers`: ``conv`` (any padding, stride, bias, groups; a depthwise conv without bias
followed by a 1x1 conv is the registry's ``sepconv``), ``bn``, ``act`` (relu, relu6, leaky_relu,
gelu, silu, elu, tanh at their default constants, as modules, functions or tensor methods),
``maxpool``, ``gap`` (average pooling over the whole map, in any of its spellings), ``dropout``,
``dropout2d``, ``flatten`` (``flatten(1)``, ``view(B, -1)``, ``reshape(-1, N)``, ...), ``linear`` and
``residual`` (``x + f(x)`` over a chain of layers).  A final ``softmax`` / ``log_softmax`` is
dropped: the trainer's loss takes logits.

The result is checked before anything is written: the spec is built (:func:`space.build.build`),
the model's weights and batch-norm statistics are copied into it in order, and both are run on one
random batch, in eval mode and in train mode under one seed, and must agree within 1e-5
(:func:`compare` says exactly what it compared).  A node the spec cannot express is one
``error: node 'NAME' (OP): ...`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import operator
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from space.analysis import count_params, format_table
from space.build import build
from space.cli import Parser, UsageError, positive_int, run_main
from space.io import dumps, write_atomic
from space.layers import (
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
    Residual,
    SepConv,
)
from space.spec import NetSpec

__all__ = ["NotExpressible", "Imported", "Check", "from_module", "copy_weights", "compare", "load_class", "main"]

TOL = 1e-5  # the largest output difference the check accepts
BATCH = 8   # images in the check's batch


class NotExpressible(ValueError):
    """A node of the traced graph that no spec layer expresses; the message names the node and its op."""

    def __init__(self, node: fx.Node, why: str = "") -> None:
        self.node = node
        why = f" ({why})" if why else ""
        super().__init__(f"node {node.name!r} ({_op(node)}): not expressible as a spec layer{why}")


def _op(node: fx.Node) -> str:
    if node.op == "call_module":
        owner = node.graph.owning_module
        return f"call_module {owner.get_submodule(str(node.target)) if owner is not None else node.target!r}"
    if node.op == "call_function":
        return f"call_function {fx.node._get_qualified_name(node.target)}"  # type: ignore[arg-type]
    return f"{node.op} {node.target}"


# ---------------------------------------------------------------- what a conversion gives


@dataclass
class Part:
    """One spec layer and the model's modules whose state it takes (in order); a residual's parts inside."""

    layer: Layer
    sources: tuple[nn.Module, ...] = ()
    inner: list[Part] = field(default_factory=list)
    dims: tuple[int, ...] = ()  # the per-image input shape, as the model runs it

    def leaves(self) -> list[Part]:
        return [q for p in self.inner for q in p.leaves()] if isinstance(self.layer, Residual) else [self]


@dataclass
class Imported:
    """The spec read from a model, the parts it is made of, and the final op that was dropped (if any)."""

    spec: NetSpec
    parts: list[Part]
    final: str | None = None  # "log_softmax" or "softmax": applied to the spec's logits when comparing
    unused: list[str] = field(default_factory=list)  # the model's modules with state that forward never calls

    @property
    def sources(self) -> list[nn.Module]:
        return [m for p in self.parts for q in p.leaves() for m in q.sources]


@dataclass(frozen=True)
class Check:
    """One comparison of the model with the built spec: what was compared and the largest difference."""

    what: str
    diff: float

    @property
    def ok(self) -> bool:
        return self.diff <= TOL


# ---------------------------------------------------------------- reading the graph

_ACT_MODULES: dict[type[nn.Module], str] = {
    nn.ReLU: "relu", nn.ReLU6: "relu6", nn.LeakyReLU: "leaky_relu", nn.GELU: "gelu",
    nn.SiLU: "silu", nn.ELU: "elu", nn.Tanh: "tanh",
}
_ACT_DEFAULTS = {"leaky_relu": ("negative_slope", 0.01), "gelu": ("approximate", "none"), "elu": ("alpha", 1.0)}

# function or method -> (kind of op, its parameters after the input, their defaults)
_Sig = tuple[str, tuple[str, ...], dict[str, Any]]
_INPLACE = {"inplace": False}
_FUNCTIONS: dict[Any, _Sig] = {
    F.relu: ("relu", ("inplace",), _INPLACE), torch.relu: ("relu", (), {}), torch.relu_: ("relu", (), {}),
    F.relu_: ("relu", (), {}), F.relu6: ("relu6", ("inplace",), _INPLACE),
    F.leaky_relu: ("leaky_relu", ("negative_slope", "inplace"), {"negative_slope": 0.01, **_INPLACE}),
    F.gelu: ("gelu", ("approximate",), {"approximate": "none"}), F.silu: ("silu", ("inplace",), _INPLACE),
    F.elu: ("elu", ("alpha", "inplace"), {"alpha": 1.0, **_INPLACE}), torch.tanh: ("tanh", (), {}),
    F.tanh: ("tanh", (), {}),
    F.max_pool2d: ("maxpool", ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
                   {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False, "return_indices": False}),
    torch.max_pool2d: ("maxpool", ("kernel_size", "stride", "padding", "dilation", "ceil_mode"),
                       {"stride": (), "padding": 0, "dilation": 1, "ceil_mode": False}),
    F.avg_pool2d: ("avgpool",
                   ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
                   {"stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True,
                    "divisor_override": None}),
    F.adaptive_avg_pool2d: ("adaptive", ("output_size",), {}),
    torch.mean: ("mean", ("dim", "keepdim", "dtype"), {"keepdim": False, "dtype": None}),
    F.dropout: ("dropout", ("p", "training", "inplace"), {"p": 0.5, "training": True, **_INPLACE}),
    F.dropout2d: ("dropout2d", ("p", "training", "inplace"), {"p": 0.5, "training": True, **_INPLACE}),
    torch.dropout: ("dropout", ("p", "training"), {}),
    torch.flatten: ("flatten", ("start_dim", "end_dim"), {"start_dim": 0, "end_dim": -1}),
    torch.reshape: ("view", ("shape",), {}),
    operator.add: ("add", ("other",), {}), torch.add: ("add", ("other", "alpha"), {"alpha": 1}),
    F.log_softmax: ("log_softmax", ("dim", "_stacklevel", "dtype"), {"dim": None, "_stacklevel": 3, "dtype": None}),
    F.softmax: ("softmax", ("dim", "_stacklevel", "dtype"), {"dim": None, "_stacklevel": 3, "dtype": None}),
    torch.log_softmax: ("log_softmax", ("dim", "dtype"), {"dtype": None}),
    torch.softmax: ("softmax", ("dim", "dtype"), {"dtype": None}),
}
_METHODS: dict[str, _Sig] = {
    "relu": ("relu", (), {}), "relu_": ("relu", (), {}), "tanh": ("tanh", (), {}), "tanh_": ("tanh", (), {}),
    "mean": ("mean", ("dim", "keepdim", "dtype"), {"dim": None, "keepdim": False, "dtype": None}),
    "flatten": ("flatten", ("start_dim", "end_dim"), {"start_dim": 0, "end_dim": -1}),
    "view": ("view", (), {}), "reshape": ("view", (), {}),
    "add": ("add", ("other", "alpha"), {"alpha": 1}), "add_": ("add", ("other", "alpha"), {"alpha": 1}),
    "log_softmax": ("log_softmax", ("dim", "dtype"), {"dtype": None}),
    "softmax": ("softmax", ("dim", "dtype"), {"dtype": None}),
    "contiguous": ("identity", (), {}),
}


def _sig(node: fx.Node) -> _Sig | None:
    if node.op == "call_function":
        try:
            return _FUNCTIONS.get(node.target)
        except TypeError:  # an unhashable target
            return None
    if node.op == "call_method":
        return _METHODS.get(str(node.target))
    return None


def _bind(node: fx.Node, sig: _Sig) -> dict[str, Any]:
    """The node's arguments after its input, by name, defaults filled in."""
    kind, names, defaults = sig
    if kind == "view":  # view(*shape) / view(shape) / reshape(input, shape)
        rest = node.args[1:]
        shape = rest[0] if len(rest) == 1 and isinstance(rest[0], (tuple, list)) else rest
        return {"shape": tuple(shape if shape else node.kwargs.get("shape", ()))}  # type: ignore[arg-type]
    rest = node.args[1:]
    if len(rest) > len(names):
        raise NotExpressible(node, f"{len(rest)} arguments after the input")
    got = dict(zip(names, rest, strict=False))
    for k, v in node.kwargs.items():
        if k not in names or k in got:
            raise NotExpressible(node, f"argument {k}={v!r}")
        got[k] = v
    for k in names:
        if k not in got:
            if k not in defaults:
                raise NotExpressible(node, f"argument {k} missing")
            got[k] = defaults[k]
    return got


def _data(node: fx.Node) -> fx.Node | None:
    """The tensor a node works on (its first argument)."""
    a = node.args[0] if node.args else None
    return a if isinstance(a, fx.Node) else None


def _shape(node: fx.Node) -> tuple[int, ...]:
    """The node's output shape (batch first) when the model ran (:class:`_Shapes`)."""
    shape = node.meta.get("from_torch_shape")
    if shape is None:
        raise NotExpressible(node, "its value is not one tensor")
    return shape


class _Shapes(fx.Interpreter):
    """Runs the graph once and notes each tensor's shape on its node."""

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        if isinstance(result, torch.Tensor):
            n.meta["from_torch_shape"] = tuple(result.shape)
        return result


def _pair(v: Any, node: fx.Node, what: str) -> int:
    """A square size: ``k`` or ``(k, k)``."""
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            v = v[0]
        elif len(v) == 2 and v[0] == v[1]:
            v = v[0]
        else:
            raise NotExpressible(node, f"{what} {tuple(v)} is not square")
    if isinstance(v, bool) or not isinstance(v, int):
        raise NotExpressible(node, f"{what} {v!r}")
    return v


def _is_batch(v: Any) -> bool:
    """``t.size(0)``, ``t.size()[0]`` or ``t.shape[0]``: the batch size, whatever the batch."""
    if not isinstance(v, fx.Node):
        return False
    if v.op == "call_method" and v.target == "size":
        return bool(len(v.args) == 2 and v.args[1] == 0 or v.kwargs.get("dim") == 0)
    if v.op == "call_function" and v.target is operator.getitem and v.args[1] == 0:
        s = v.args[0]
        return isinstance(s, fx.Node) and bool(
            s.op == "call_method" and s.target == "size" and len(s.args) == 1 and not s.kwargs
            or s.op == "call_function" and s.target is getattr and s.args[1] == "shape")
    return False


def _has_state(m: nn.Module) -> bool:
    return any(True for _ in m.parameters()) or any(True for _ in m.buffers())


class _Reader:
    """Reads the traced graph, from its output back to its input, into :class:`Part` lists."""

    def __init__(self, gm: fx.GraphModule, train_flags: dict[str, Any]) -> None:
        self.gm = gm
        self.train_flags = train_flags  # dropout node name -> its training flag when traced in train mode
        self.called: dict[str, fx.Node] = {}  # module target with state -> the node calling it
        self.final: str | None = None

    # -- structure: a chain of nodes from src to end, residual adds as groups

    def chain(self, src: fx.Node, end: fx.Node) -> list[fx.Node | tuple[fx.Node, fx.Node, list[Any]]]:
        items: list[Any] = []
        node = end
        while node is not src:
            if node.op == "placeholder":
                raise NotExpressible(end, "its input does not come from the chain of layers before it")
            sig = _sig(node)
            if sig is not None and sig[0] == "add":
                items.append(self.residual(node, sig))
                node = items[-1][0]
                continue
            data = _data(node)
            if data is None:
                raise NotExpressible(node, "" if _sig(node) is None and node.op != "call_module" else
                                     "it takes no tensor input")
            items.append(node)
            node = data
        return items[::-1]

    def residual(self, add: fx.Node, sig: _Sig) -> tuple[fx.Node, fx.Node, list[Any]]:
        args = _bind(add, sig)
        a, b = add.args[0], args["other"]
        if args.get("alpha", 1) != 1:
            raise NotExpressible(add, f"alpha={args['alpha']!r}")
        if not isinstance(a, fx.Node) or not isinstance(b, fx.Node):
            raise NotExpressible(add, "adds a constant")
        if a is b:
            raise NotExpressible(add, "x + x, with no layers in the branch")
        if a in _ancestors(b):
            src, end = a, b
        elif b in _ancestors(a):
            src, end = b, a
        else:
            raise NotExpressible(add, "adds two branches; only x + f(x) is a residual")
        if _shape(a) != _shape(b):
            raise NotExpressible(add, f"adds shapes {_shape(a)[1:]} and {_shape(b)[1:]} (a residual keeps the shape)")
        return src, add, self.chain(src, end)

    # -- conversion, front to back, with the shapes the model ran

    def parts(self, items: list[Any], top: bool) -> list[Part]:
        out: list[Part] = []
        for n, item in enumerate(items):
            if isinstance(item, tuple):
                src, add, inner = item
                group = _fuse(self.parts(inner, top=False))
                if not group:
                    raise NotExpressible(add, "x + x, with no layers in the branch")
                out.append(Part(Residual(tuple(p.layer for p in group)), (), group, _shape(src)[1:]))
                continue
            last = top and n == len(items) - 1
            dims = _shape(item.args[0])[1:]
            out += [Part(layer, srcs, dims=dims) for layer, srcs in self.node(item, last)]
        return out

    def node(self, node: fx.Node, last: bool) -> list[tuple[Layer, tuple[nn.Module, ...]]]:
        x = _shape(node.args[0])  # type: ignore[arg-type]  # the input, batch first
        if node.op == "call_module":
            m = self.gm.get_submodule(str(node.target))
            if _has_state(m):
                if str(node.target) in self.called:
                    raise NotExpressible(node, f"module {node.target!r} is called a second time: its weights are "
                                               "shared, and a spec layer has its own")
                self.called[str(node.target)] = node
            layer = self.module(node, m, x, last)
            return [] if layer is None else [(layer, (m,) if _has_state(m) else ())]
        sig = _sig(node)
        if sig is None:
            raise NotExpressible(node)
        layer = self.function(node, sig[0], _bind(node, sig), x, last)
        return [] if layer is None else [(layer, ())]

    def module(self, node: fx.Node, m: nn.Module, x: tuple[int, ...], last: bool) -> Layer | None:
        t = type(m)
        if t is nn.Conv2d:
            assert isinstance(m, nn.Conv2d)
            if m.padding_mode != "zeros":
                raise NotExpressible(node, f"padding_mode {m.padding_mode!r}")
            if m.dilation != (1, 1):
                raise NotExpressible(node, f"dilation {m.dilation}")
            k = _pair(m.kernel_size, node, "kernel")
            stride = _pair(m.stride, node, "stride")
            if m.padding == "valid":
                pad = 0
            elif m.padding == "same":
                if (k - 1) % 2:
                    raise NotExpressible(node, f"padding 'same' with the even kernel {k} pads one side more")
                pad = (k - 1) // 2
            else:
                pad = _pair(m.padding, node, "padding")
            return Conv(m.out_channels, k, stride, pad, m.bias is not None, m.groups)
        if t in (nn.BatchNorm2d, nn.BatchNorm1d):
            assert isinstance(m, nn.modules.batchnorm._BatchNorm)
            if len(x) != (4 if t is nn.BatchNorm2d else 2):
                raise NotExpressible(node, f"{t.__name__} on a {len(x)}-d input")
            if not (m.affine and m.track_running_stats):
                raise NotExpressible(node, "without affine weights or running statistics")
            if m.eps != 1e-5 or m.momentum != 0.1:
                raise NotExpressible(node, f"eps {m.eps}, momentum {m.momentum}: bn has eps 1e-5, momentum 0.1")
            return BatchNorm()
        if t in _ACT_MODULES:
            fn = _ACT_MODULES[t]
            if fn in _ACT_DEFAULTS:
                self.constant(node, fn, *_ACT_DEFAULTS[fn], getattr(m, _ACT_DEFAULTS[fn][0]))
            return Act(fn)
        if t is nn.MaxPool2d:
            assert isinstance(m, nn.MaxPool2d)
            return self.maxpool(node, {"kernel_size": m.kernel_size, "stride": m.stride, "padding": m.padding,
                                       "dilation": m.dilation, "ceil_mode": m.ceil_mode,
                                       "return_indices": m.return_indices})
        if t is nn.AvgPool2d:
            assert isinstance(m, nn.AvgPool2d)
            return self.avgpool(node, x, {"kernel_size": m.kernel_size, "padding": m.padding,
                                             "divisor_override": m.divisor_override})
        if t is nn.AdaptiveAvgPool2d:
            assert isinstance(m, nn.AdaptiveAvgPool2d)
            return self.adaptive(node, m.output_size)
        if t is nn.Dropout:
            assert isinstance(m, nn.Dropout)
            return Dropout(m.p)
        if t is nn.Dropout2d:
            assert isinstance(m, nn.Dropout2d)
            if len(x) != 4:
                raise NotExpressible(node, "channel dropout on flat features")
            return Dropout2d(m.p)
        if t is nn.Flatten:
            assert isinstance(m, nn.Flatten)
            return self.flatten(node, x, m.start_dim, m.end_dim)
        if t is nn.Linear:
            assert isinstance(m, nn.Linear)
            if len(x) != 2:
                raise NotExpressible(node, f"a linear layer on a {len(x)}-d input (it needs flat features)")
            return Linear(m.out_features, m.bias is not None)
        if t is nn.Identity:
            return None
        if t in (nn.LogSoftmax, nn.Softmax):
            assert isinstance(m, (nn.LogSoftmax, nn.Softmax))
            return self.softmax(node, "log_softmax" if t is nn.LogSoftmax else "softmax", m.dim, None, x, last)
        raise NotExpressible(node)

    def function(self, node: fx.Node, kind: str, a: dict[str, Any], x: tuple[int, ...], last: bool) -> Layer | None:
        if kind in ("relu", "relu6", "leaky_relu", "gelu", "silu", "elu", "tanh"):
            if kind in _ACT_DEFAULTS:
                name, default = _ACT_DEFAULTS[kind]
                self.constant(node, kind, name, default, a[name])
            return Act(kind)
        if kind == "maxpool":
            return self.maxpool(node, a)
        if kind == "avgpool":
            return self.avgpool(node, x, a)
        if kind == "adaptive":
            return self.adaptive(node, a["output_size"])
        if kind == "mean":
            dims = a["dim"] if isinstance(a["dim"], (tuple, list)) else (a["dim"],)
            if len(x) != 4 or a["dtype"] is not None or sorted(int(d) % 4 for d in dims if d is not None) != [2, 3]:
                raise NotExpressible(node, "a mean over other dimensions than the map's two")
            return GAP() if a["keepdim"] else _GapFlat()
        if kind in ("dropout", "dropout2d"):
            on_eval, on_train = a["training"], self.train_flags.get(node.name)
            if on_eval is False and on_train is False:
                return None  # never on: nothing
            if on_eval is not False or on_train is not True:
                raise NotExpressible(node, f"training={on_train!r} in train mode, {on_eval!r} in eval mode; a spec's "
                                           "dropout is on in train mode only (pass training=self.training)")
            if kind == "dropout2d" and len(x) != 4:
                raise NotExpressible(node, "channel dropout on flat features")
            return (Dropout if kind == "dropout" else Dropout2d)(a["p"])
        if kind == "flatten":
            return self.flatten(node, x, a["start_dim"], a["end_dim"])
        if kind == "view":
            return self.view(node, x, a["shape"])
        if kind in ("log_softmax", "softmax"):
            return self.softmax(node, kind, a["dim"], a["dtype"], x, last)
        if kind == "identity":
            return None
        raise NotExpressible(node)

    # -- the kinds' rules

    @staticmethod
    def constant(node: fx.Node, fn: str, name: str, default: Any, got: Any) -> None:
        if got != default:
            raise NotExpressible(node, f"{name}={got!r}; act {fn} has {name}={default!r}")

    @staticmethod
    def maxpool(node: fx.Node, a: dict[str, Any]) -> Layer:
        k = _pair(a["kernel_size"], node, "kernel")
        stride = k if a["stride"] in (None, (), []) else _pair(a["stride"], node, "stride")
        pad = _pair(a["padding"], node, "padding")
        if _pair(a["dilation"], node, "dilation") != 1 or a["ceil_mode"] or a.get("return_indices"):
            raise NotExpressible(node, "dilation, ceil_mode or return_indices")
        return MaxPool(k, 0 if stride == k else stride, pad)

    @staticmethod
    def avgpool(node: fx.Node, x: tuple[int, ...], a: dict[str, Any]) -> Layer:
        k = a["kernel_size"]
        kh, kw = (k, k) if isinstance(k, int) else (tuple(k) * 2)[:2] if len(k) == 1 else tuple(k)
        if len(x) != 4 or (kh, kw) != x[2:] or _pair(a["padding"], node, "padding") or a["divisor_override"]:
            where = "x".join(map(str, x[2:]))
            raise NotExpressible(node, f"average pooling over {kh}x{kw} of a {where} map; only over the whole map, "
                                       "as gap")
        return GAP()

    @staticmethod
    def adaptive(node: fx.Node, size: Any) -> Layer:
        if size not in (1, (1, 1), [1, 1], (1,), [1]):
            raise NotExpressible(node, f"adaptive average pooling to {size!r}; only to 1, as gap")
        return GAP()

    @staticmethod
    def flatten(node: fx.Node, x: tuple[int, ...], start: int, end: int) -> Layer | None:
        if start != 1 or end != -1 and end != len(x) - 1:
            raise NotExpressible(node, f"flatten from dimension {start} to {end}; only flatten(1) keeps the batch")
        return None if len(x) == 2 else Flatten()

    @staticmethod
    def view(node: fx.Node, x: tuple[int, ...], shape: tuple[Any, ...]) -> Layer | None:
        n = math.prod(x[1:])
        if len(shape) == 2:
            b, f = shape
            ok_b = b == -1 or _is_batch(b)
            ok_f = f == n or (f == -1 and _is_batch(b))
            if ok_b and ok_f:
                return None if len(x) == 2 else Flatten()
        shown = tuple(("B" if _is_batch(v) else v) for v in shape)
        raise NotExpressible(node, f"a view to {shown} of {tuple(x[1:])} per image; only to (B, -1), (-1, {n}) "
                                   f"or (B, {n}) (flatten)")

    def softmax(self, node: fx.Node, kind: str, dim: Any, dtype: Any, x: tuple[int, ...], last: bool) -> Layer | None:
        if not last:
            raise NotExpressible(node, f"{kind} inside the network; only a final one is dropped")
        if len(x) != 2 or dim not in (1, -1, None) or dtype is not None:  # None: torch's choice, 1 on 2-d
            raise NotExpressible(node, f"{kind} over dimension {dim!r} of a {len(x)}-d output")
        self.final = kind
        return None


class _GapFlat(GAP):
    """``x.mean((2, 3))``: gap, then flatten (split in :func:`_fuse`)."""


def _ancestors(node: fx.Node) -> set[fx.Node]:
    seen: set[fx.Node] = set()
    todo = [node]
    while todo:
        for a in todo.pop().all_input_nodes:
            if a not in seen:
                seen.add(a)
                todo.append(a)
    return seen


def _fuse(parts: list[Part]) -> list[Part]:
    """``mean((2, 3))`` as gap + flatten; a depthwise conv (no bias) then a 1x1 conv as the registry's sepconv."""
    out: list[Part] = []
    for p in parts:
        if isinstance(p.layer, _GapFlat):
            c = p.dims[0]
            out += [Part(GAP(), (), [], p.dims), Part(Flatten(), (), [], (c, 1, 1))]
            continue
        prev = out[-1] if out else None
        if (prev is not None and isinstance(prev.layer, Conv) and isinstance(p.layer, Conv)
                and prev.layer.groups == prev.dims[0] == prev.layer.out and not prev.layer.bias
                and p.layer.k == 1 and p.layer.stride == 1 and p.layer.pad == 0 and p.layer.groups == 1):
            dw, pw = prev.layer, p.layer
            out[-1] = Part(SepConv(pw.out, dw.k, dw.stride, dw.pad, pw.bias), prev.sources + p.sources, [], prev.dims)
            continue
        out.append(p)
    return out


def _trim(parts: list[Part]) -> list[Part]:
    """A flatten of C x 1 x 1 maps right before a linear layer, or at the end, is implied: the spec leaves it out."""
    out = []
    for i, p in enumerate(parts):
        nxt = parts[i + 1].layer if i + 1 < len(parts) else None
        if isinstance(p.layer, Flatten) and p.dims[1:] == (1, 1) and (nxt is None or isinstance(nxt, Linear)):
            continue
        out.append(p)
    return out


def _trace(model: nn.Module, train: bool) -> fx.GraphModule:
    was = model.training
    model.train(train)
    try:
        return fx.symbolic_trace(model)
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0]
        raise UsageError(f"cannot trace {type(model).__name__} with torch.fx: {type(e).__name__}: {first}") from None
    finally:
        model.train(was)


def from_module(model: nn.Module, input: tuple[int, int, int] = (1, 28, 28), name: str = "net") -> Imported:
    """The spec equivalent to ``model`` on (B, *input) images; :class:`NotExpressible` names the node it cannot."""
    gm = _trace(model, train=False)
    gm_train = _trace(model, train=True)
    seq = [(n.name, n.op, str(n.target)) for n in gm.graph.nodes]
    seq_train = [(n.name, n.op, str(n.target)) for n in gm_train.graph.nodes]
    if seq != seq_train:
        at = next((i for i, (a, b) in enumerate(zip(seq, seq_train, strict=False)) if a != b),
                  min(len(seq), len(seq_train)))
        node = list(gm.graph.nodes)[min(at, len(seq) - 1)]
        raise NotExpressible(node, "the forward traces differently in train and eval mode")
    flags = {n.name: _bind(n, s)["training"] for n in gm_train.graph.nodes
             if (s := _sig(n)) is not None and s[0] in ("dropout", "dropout2d")}
    gm.graph.eliminate_dead_code()

    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            _Shapes(gm).run(torch.zeros(2, *input))
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0]
        raise UsageError(f"{type(model).__name__} does not run on a batch of 2 x {'x'.join(map(str, input))} "
                         f"images: {type(e).__name__}: {first}") from None
    finally:
        model.train(was)

    nodes = list(gm.graph.nodes)
    inputs = [n for n in nodes if n.op == "placeholder"]
    out = next(n for n in nodes if n.op == "output")
    if len(inputs) != 1:
        raise NotExpressible(inputs[1] if inputs else out, "a spec takes one input")
    result = out.args[0]
    if not isinstance(result, fx.Node):
        raise NotExpressible(out, f"returns {type(result).__name__}, not one tensor")
    reader = _Reader(gm, flags)
    items = reader.chain(inputs[0], result)
    _check_uses(inputs[0], items, out)
    parts = _trim(_fuse(reader.parts(items, top=True)))
    if not parts:
        raise NotExpressible(result, "the network has no layers")
    y = _shape(result)
    if len(y) != 2 and not (len(y) == 4 and y[2:] == (1, 1)):
        raise NotExpressible(result, f"the network gives {tuple(y[1:])} per image, not a vector of class scores")
    spec = NetSpec(tuple(p.layer for p in parts), tuple(input), y[1], name)  # type: ignore[arg-type]
    unused = [n for n, m in model.named_modules()
              if n and n not in reader.called and not list(m.children()) and _has_state(m)]
    return Imported(spec, parts, reader.final, unused)


def _check_uses(src: fx.Node, items: list[Any], out: fx.Node) -> None:
    """Each value feeds exactly the next layer (a residual's input: its branch and its add); size queries aside."""
    want: dict[fx.Node, int] = {}

    def use(v: fx.Node) -> None:
        want[v] = want.get(v, 0) + 1

    def walk(prev: fx.Node, chain: list[Any]) -> fx.Node:
        for item in chain:
            if isinstance(item, tuple):
                s, add, inner = item
                use(walk(s, inner))  # the branch's end feeds the add,
                use(s)               # and so does the shortcut
                prev = add
            else:
                use(prev)
                prev = item
        return prev

    use(walk(src, items))  # the output
    for node, n in want.items():
        uses = [u for u in node.users if not (u.op == "call_method" and u.target == "size"
                                            or u.op == "call_function" and u.target is getattr)]
        if len(uses) != n:
            raise NotExpressible(node, f"its value is used {len(uses)} times; only x + f(x) may use one twice")


# ---------------------------------------------------------------- weights and the check


def copy_weights(imported: Imported, net: nn.Module) -> None:
    """The model's parameters and buffers, module by module in the spec's order, into the built ``net``."""
    src = [t for m in imported.sources for t in m.state_dict().values()]
    dst = list(net.state_dict().items())
    if len(src) != len(dst):
        raise AssertionError(f"the model has {len(src)} tensors for the spec's {len(dst)}")
    with torch.no_grad():
        for (key, d), s in zip(dst, src, strict=False):
            if d.shape != s.shape:
                raise AssertionError(f"{key}: the model's tensor is {tuple(s.shape)}, the spec's {tuple(d.shape)}")
            d.copy_(s)


def _dropouts(m: nn.Module) -> list[nn.Module]:
    return [d for d in m.modules() if isinstance(d, (nn.Dropout, nn.Dropout2d))]


def compare(model: nn.Module, imported: Imported, net: nn.Module, batch: int = BATCH, seed: int = 0) -> list[Check]:
    """The model and the built spec (weights copied) on one random batch: their largest output difference.

    * eval mode (running statistics, no dropout);
    * train mode (batch statistics), each run after ``torch.manual_seed(seed)``, so that their dropout
      masks are drawn alike when the layers draw them in the same order;
    * when that differs and the spec has dropout: train mode again with every dropout off (p = 0 in the
      built net; the model's graph with its dropout nodes taken out), batch-norm batch statistics kept.

    The model's final softmax / log_softmax, dropped from the spec, is applied to the spec's logits.
    Both are left in eval mode; the train runs update their batch-norm running statistics alike.
    """
    spec = imported.spec
    x = torch.randn(batch, *spec.input, generator=torch.Generator().manual_seed(seed))
    final: Callable[[torch.Tensor], torch.Tensor] = {
        None: lambda t: t, "log_softmax": lambda t: F.log_softmax(t, 1), "softmax": lambda t: F.softmax(t, 1),
    }[imported.final]

    def run(m: nn.Module, train: bool, f: Callable[[torch.Tensor], torch.Tensor] = lambda t: t) -> torch.Tensor:
        m.train(train)
        torch.manual_seed(seed)
        with torch.no_grad():
            return f(m(x)).reshape(batch, -1)

    def diff(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).abs().max())

    checks = [Check("eval mode (running statistics, no dropout)", diff(run(model, False), run(net, False, final)))]
    train = Check(f"train mode, seed {seed} (batch statistics; dropout masks drawn alike, in the same order)",
                  diff(run(model, True), run(net, True, final)))
    checks.append(train)
    if not train.ok and _dropouts(net):
        gm = _trace(model, train=True)
        for n in list(gm.graph.nodes):
            s = _sig(n)
            if (s is not None and s[0] in ("dropout", "dropout2d")
                    or n.op == "call_module" and type(gm.get_submodule(str(n.target))) in (nn.Dropout, nn.Dropout2d)):
                n.replace_all_uses_with(n.args[0])
                gm.graph.erase_node(n)
        gm.recompile()
        ps = [(d, d.p) for d in _dropouts(net)]
        for d, _ in ps:
            setattr(d, "p", 0.0)  # noqa: B010  (the module's p, typed as a tensor or module by torch)
        try:
            checks.append(Check("train mode, dropout off (p = 0; batch statistics)",
                                diff(run(gm, True), run(net, True, final))))
        finally:
            for d, p in ps:
                d.p = p
    model.eval()
    net.eval()
    return checks


# ---------------------------------------------------------------- the command


def load_class(target: str) -> type[nn.Module]:
    """``MODULE:CLASS``, MODULE an importable name or the path of a .py file; :class:`UsageError` otherwise."""
    mod_name, sep, cls_name = target.rpartition(":")
    if not sep or not mod_name or not cls_name:
        raise UsageError(f"expected MODULE:CLASS, got {target!r}")
    path = Path(mod_name)
    try:
        if mod_name.endswith(".py") or path.is_file():
            if not path.is_file():
                raise UsageError(f"no such file: {mod_name}")
            key = f"_from_torch_{abs(hash(str(path.resolve())))}"
            spec = importlib.util.spec_from_file_location(key, path)
            assert spec is not None and spec.loader is not None
            mod = importlib.util.module_from_spec(spec)
            sys.modules[key] = mod
            sys.path.insert(0, str(path.resolve().parent))
            try:
                spec.loader.exec_module(mod)
            except BaseException:
                del sys.modules[key]
                raise
            finally:
                sys.path.remove(str(path.resolve().parent))
        else:
            mod = importlib.import_module(mod_name)
    except UsageError:
        raise
    except ModuleNotFoundError as e:
        raise UsageError(f"cannot import {mod_name}: no module named {e.name!r}") from None
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0]
        raise UsageError(f"cannot import {mod_name}: {type(e).__name__}: {first}") from None
    obj: Any = mod
    for part in cls_name.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"{mod_name} has no class {cls_name!r}")
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise UsageError(f"{mod_name}:{cls_name} is not a torch.nn.Module class")
    return obj


def _kwargs(s: str) -> dict[str, Any]:
    try:
        v = json.loads(s)
    except json.JSONDecodeError as e:
        raise UsageError(f"--kwargs: not valid JSON: {e}") from None
    if not isinstance(v, dict):
        raise UsageError(f"--kwargs: expected a JSON object, got {s!r}")
    return v


def _dims(s: str) -> tuple[int, int, int]:
    parts = s.replace("x", ",").split(",")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected C,H,W such as 1,28,28, got {s!r}")
    c, h, w = (positive_int(p.strip()) for p in parts)
    return c, h, w


def _run(argv: Sequence[str] | None) -> int:
    p = Parser(prog="python -m space.from_torch",
               description="Read a torch model (an nn.Module class) into a spec, check it against the model, write it.")
    p.add_argument("target", metavar="MODULE:CLASS", help="the nn.Module class (MODULE: a module name or a .py file)")
    p.add_argument("--kwargs", default="{}", metavar="JSON", help="the constructor's keyword arguments (an object)")
    p.add_argument("--input", type=_dims, default=(1, 28, 28), metavar="C,H,W", help="one image (default 1,28,28)")
    p.add_argument("--name", help="the spec's name (default: the output file's stem)")
    p.add_argument("--seed", type=int, default=0, help="seed of the check's batch and dropout masks (default 0)")
    p.add_argument("--out", required=True, metavar="FILE.yaml", help="where to write the spec")
    a = p.parse_args(argv)
    kwargs = _kwargs(a.kwargs)
    cls = load_class(a.target)
    out = Path(a.out)
    if not out.parent.is_dir():
        raise UsageError(f"--out: no such folder: {out.parent}")
    try:
        model = cls(**kwargs)
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0]
        raise UsageError(f"cannot make {cls.__name__}(**{kwargs!r}): {type(e).__name__}: {first}") from None
    model = model.float()
    with warnings.catch_warnings():  # the model's own (deprecation) warnings would break the one-line contract
        warnings.simplefilter("ignore")
        try:
            imported = from_module(model, a.input, a.name or out.stem)
        except NotExpressible as e:
            raise UsageError(str(e)) from None
        spec = imported.spec
        torch.manual_seed(a.seed)
        net = build(spec)
        copy_weights(imported, net)
        mine = sum(t.numel() for m in imported.sources for t in m.parameters())
        if count_params(spec) != mine or sum(t.numel() for t in net.parameters()) != mine:
            raise UsageError(f"the spec counts {count_params(spec)} parameters, the model's layers have {mine}")
        checks = compare(model, imported, net, seed=a.seed)
    bad = [c for c in checks[:1] + checks[-1:] if not c.ok]
    if bad:
        raise UsageError(f"the spec's outputs differ from {cls.__name__}'s by {bad[0].diff:.3g} in {bad[0].what} "
                         f"(more than {TOL:g}); nothing written")
    spec = NetSpec(spec.layers, spec.input, spec.classes, spec.name, spec.recipe,
                   {"provenance": {"from_torch": a.target, "kwargs": kwargs}})
    write_atomic(out, dumps(spec))
    for name in imported.unused:
        print(f"note: {name} ({type(model.get_submodule(name)).__name__}) is never called; left out",
              file=sys.stderr)
    if imported.final:
        print(f"dropped the final {imported.final} (the trainer's loss takes logits; the check applies it to the "
              "spec's outputs)")
    print(f"checked against {cls.__name__} on {BATCH} random {'x'.join(map(str, spec.input))} images, its weights and "
          "batch-norm statistics copied:")
    for c in checks:
        print(f"check: {c.what}: max |difference| {c.diff:.2e} ({'ok' if c.ok else f'more than {TOL:g}'})")
    print(f"wrote {out}")
    print(format_table(spec))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_run, argv)


if __name__ == "__main__":
    sys.exit(main())
