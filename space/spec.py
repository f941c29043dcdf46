"""The layer-spec: a CNN and its training recipe as frozen, validated data.

A spec is a YAML document::

    name: seed_19642
    input: [1, 28, 28]          # C, H, W
    classes: 10
    layers:
    - {kind: conv, out: 16, k: 3, pad: 1}
    - {kind: bn}
    - {kind: act, fn: relu}
    - {kind: maxpool, k: 2}
    - kind: residual             # identity shortcut around a group of layers
      layers:
      - {kind: conv, out: 16, k: 3, pad: 1}
    - {kind: gap}
    - {kind: linear, out: 10}
    recipe: {optimizer: sgd, lr: 0.01, ...}

Every class here validates itself in ``__post_init__`` and raises
:class:`SpecError` naming the field and the value; :func:`from_dict` adds the
location (``layers[3]``).  Shape checks (kernels larger than their input,
mismatched residuals, ...) run when a :class:`NetSpec` is made, through the
pure analysis in :mod:`space.analysis`.  This module does not import torch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

__all__ = [
    "SpecError", "Conv", "SepConv", "BatchNorm", "Act", "MaxPool", "Dropout", "Dropout2d",
    "GAP", "Flatten", "Linear", "Residual", "Layer", "LAYER_KINDS", "Augment", "Recipe",
    "NetSpec", "ACTIVATIONS", "OPTIMIZERS", "SCHEDULERS", "INTERPOLATIONS", "from_dict", "to_dict",
]


class SpecError(ValueError):
    """Anything wrong with a spec, a recipe or a search space; the message says what and where."""

    def __init__(self, message: str, where: str = "") -> None:
        self.bare = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)

    def in_file(self, source: str) -> SpecError:
        """The same error, prefixed with the file it came from (``spec.yaml: layers[2]: ...``)."""
        err = SpecError(self.bare, self.where)
        err.args = (f"{source}: {self}",)
        return err

    def at(self, where: str) -> SpecError:
        """The same error, located one level further out (``layers[2]`` + ``.out``)."""
        if not where:
            return self
        inner = self.where
        if inner and not inner.startswith("["):
            inner = "." + inner
        return SpecError(self.bare, where + inner)


# ---------------------------------------------------------------- field checks


def _int(obj: Any, name: str, lo: int | None = None) -> None:
    v = getattr(obj, name)
    if isinstance(v, bool) or not isinstance(v, int):
        raise SpecError(f"{name} must be an integer, got {v!r}")
    if lo is not None and v < lo:
        raise SpecError(f"{name} must be >= {lo}, got {v!r}")


def _float(obj: Any, name: str, lo: float | None = None, hi: float | None = None,
           lo_open: bool = False, hi_open: bool = False, optional: bool = False) -> None:
    v = getattr(obj, name)
    if v is None and optional:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise SpecError(f"{name} must be a number, got {v!r}")
    if not math.isfinite(v):
        raise SpecError(f"{name} must be finite, got {v!r}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise SpecError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {v!r}")
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise SpecError(f"{name} must be {'<' if hi_open else '<='} {hi}, got {v!r}")
    object.__setattr__(obj, name, float(v))


def _bool(obj: Any, name: str) -> None:
    v = getattr(obj, name)
    if not isinstance(v, bool):
        raise SpecError(f"{name} must be true or false, got {v!r}")


def _choice(obj: Any, name: str, choices: tuple[str, ...]) -> None:
    v = getattr(obj, name)
    if v not in choices:
        raise SpecError(f"{name} must be one of {', '.join(choices)}; got {v!r}")


def _str(obj: Any, name: str) -> None:
    v = getattr(obj, name)
    if not isinstance(v, str) or not v:
        raise SpecError(f"{name} must be a non-empty string, got {v!r}")


# ---------------------------------------------------------------- layers

ACTIVATIONS = ("relu", "relu6", "leaky_relu", "gelu", "silu", "elu", "tanh")


@dataclass(frozen=True)
class Conv:
    """A 2-D convolution; ``groups`` > 1 gives a grouped (``groups == in`` a depthwise) one."""

    kind: ClassVar[str] = "conv"
    shown: ClassVar[tuple[str, ...]] = ("out", "k", "pad")
    out: int
    k: int = 3
    stride: int = 1
    pad: int = 0
    bias: bool = True
    groups: int = 1

    def __post_init__(self) -> None:
        _int(self, "out", 1)
        _int(self, "k", 1)
        _int(self, "stride", 1)
        _int(self, "pad", 0)
        _bool(self, "bias")
        _int(self, "groups", 1)
        if self.out % self.groups:
            raise SpecError(f"out must be divisible by groups ({self.groups}), got {self.out}")


@dataclass(frozen=True)
class SepConv:
    """Depthwise-separable convolution: a k x k depthwise conv (no bias), then a 1x1 pointwise conv."""

    kind: ClassVar[str] = "sepconv"
    shown: ClassVar[tuple[str, ...]] = ("out", "k", "pad")
    out: int
    k: int = 3
    stride: int = 1
    pad: int = 0
    bias: bool = True

    def __post_init__(self) -> None:
        _int(self, "out", 1)
        _int(self, "k", 1)
        _int(self, "stride", 1)
        _int(self, "pad", 0)
        _bool(self, "bias")


@dataclass(frozen=True)
class BatchNorm:
    """Batch normalisation (2-D on feature maps, 1-D on flat features), with affine weights."""

    kind: ClassVar[str] = "bn"

    def __post_init__(self) -> None:
        pass


@dataclass(frozen=True)
class Act:
    kind: ClassVar[str] = "act"
    shown: ClassVar[tuple[str, ...]] = ("fn",)
    fn: str = "relu"

    def __post_init__(self) -> None:
        _choice(self, "fn", ACTIVATIONS)


@dataclass(frozen=True)
class MaxPool:
    kind: ClassVar[str] = "maxpool"
    shown: ClassVar[tuple[str, ...]] = ("k",)
    k: int = 2
    stride: int = 0  # 0: same as k
    pad: int = 0

    def __post_init__(self) -> None:
        _int(self, "k", 1)
        _int(self, "stride", 0)
        _int(self, "pad", 0)
        if self.pad * 2 > self.k:
            raise SpecError(f"pad must be at most half of k ({self.k}), got {self.pad}")

    @property
    def s(self) -> int:
        return self.stride or self.k


@dataclass(frozen=True)
class Dropout:
    kind: ClassVar[str] = "dropout"
    shown: ClassVar[tuple[str, ...]] = ("p",)
    p: float = 0.1

    def __post_init__(self) -> None:
        _float(self, "p", 0.0, 1.0, hi_open=True)


@dataclass(frozen=True)
class Dropout2d:
    """Channel dropout: zeroes whole feature maps."""

    kind: ClassVar[str] = "dropout2d"
    shown: ClassVar[tuple[str, ...]] = ("p",)
    p: float = 0.1

    def __post_init__(self) -> None:
        _float(self, "p", 0.0, 1.0, hi_open=True)


@dataclass(frozen=True)
class GAP:
    """Global average pooling to C x 1 x 1."""

    kind: ClassVar[str] = "gap"

    def __post_init__(self) -> None:
        pass


@dataclass(frozen=True)
class Flatten:
    kind: ClassVar[str] = "flatten"

    def __post_init__(self) -> None:
        pass


@dataclass(frozen=True)
class Linear:
    """A fully connected layer on flat features (after ``flatten``, or on C x 1 x 1 after ``gap``)."""

    kind: ClassVar[str] = "linear"
    out: int
    bias: bool = True

    def __post_init__(self) -> None:
        _int(self, "out", 1)
        _bool(self, "bias")


@dataclass(frozen=True)
class Residual:
    """``x + f(x)`` where ``f`` is the group of layers; the group must keep the shape."""

    kind: ClassVar[str] = "residual"
    layers: tuple[Layer, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.layers, list):
            object.__setattr__(self, "layers", tuple(self.layers))
        if not isinstance(self.layers, tuple) or not self.layers:
            raise SpecError(f"layers must be a non-empty list of layers, got {self.layers!r}")
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, _LAYER_TYPES):
                raise SpecError(f"layers[{i}] is not a layer: {layer!r}")


Layer = Union[Conv, SepConv, BatchNorm, Act, MaxPool, Dropout, Dropout2d, GAP, Flatten, Linear, Residual]
_LAYER_TYPES = (Conv, SepConv, BatchNorm, Act, MaxPool, Dropout, Dropout2d, GAP, Flatten, Linear, Residual)
LAYER_KINDS: dict[str, type] = {cls.kind: cls for cls in _LAYER_TYPES}


# ---------------------------------------------------------------- recipe

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("none", "step", "onecycle", "cosine")
INTERPOLATIONS = ("bilinear", "nearest")  # augment.interp


@dataclass(frozen=True)
class Augment:
    """Batched augmentation strengths; 0 switches each one off.

    rotate: max |angle| in degrees; translate: max shift as a fraction of the
    image side; scale: max relative zoom (0.2 gives 0.8..1.2); shear: max
    |angle| in degrees; crop_p: probability of the reference documents'
    centre-crop (``crop_size`` pixels) resized back to full size; erase_p:
    probability of random erasing; interp: how rotation, translation, scale and
    shear read pixels, ``bilinear`` (smooth) or ``nearest`` (sharp edges kept,
    as torchvision's ``RandomRotation`` does by default); the crop is always
    resized bilinearly, as the reference's ``Resize``.
    """

    rotate: float = 0.0
    translate: float = 0.0
    scale: float = 0.0
    shear: float = 0.0
    crop_p: float = 0.0
    crop_size: int = 22
    erase_p: float = 0.0
    interp: str = "bilinear"

    def __post_init__(self) -> None:
        _float(self, "rotate", 0.0, 180.0)
        _float(self, "translate", 0.0, 0.5)
        _float(self, "scale", 0.0, 0.9)
        _float(self, "shear", 0.0, 60.0)
        _float(self, "crop_p", 0.0, 1.0)
        _int(self, "crop_size", 1)
        _float(self, "erase_p", 0.0, 1.0)
        _choice(self, "interp", INTERPOLATIONS)

    @property
    def off(self) -> bool:
        return not (self.rotate or self.translate or self.scale or self.shear or self.crop_p or self.erase_p)


@dataclass(frozen=True)
class Recipe:
    """How to train a network: everything the trainer reads from a spec."""

    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9          # SGD only
    nesterov: bool = False         # SGD only
    weight_decay: float = 0.0
    scheduler: str = "none"
    step_size: int = 10            # step: epochs between decays
    gamma: float = 0.1             # step: decay factor
    max_lr: float | None = None    # onecycle: peak rate (default 10 x lr)
    pct_start: float = 0.3         # onecycle: fraction of steps spent warming up
    batch_size: int = 128
    epochs: int = 20
    label_smoothing: float = 0.0
    grad_clip: float = 0.0         # max gradient norm, 0 = off
    seed: int = 0
    augment: Augment = field(default_factory=Augment)

    def __post_init__(self) -> None:
        _choice(self, "optimizer", OPTIMIZERS)
        _float(self, "lr", 0.0, lo_open=True)
        _float(self, "momentum", 0.0, 1.0, hi_open=True)
        _bool(self, "nesterov")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise SpecError("nesterov needs optimizer sgd with momentum > 0")
        _float(self, "weight_decay", 0.0)
        _choice(self, "scheduler", SCHEDULERS)
        _int(self, "step_size", 1)
        _float(self, "gamma", 0.0, 1.0, lo_open=True)
        _float(self, "max_lr", 0.0, lo_open=True, optional=True)
        _float(self, "pct_start", 0.0, 1.0, lo_open=True, hi_open=True)
        _int(self, "batch_size", 1)
        _int(self, "epochs", 1)
        _float(self, "label_smoothing", 0.0, 1.0, hi_open=True)
        _float(self, "grad_clip", 0.0)
        _int(self, "seed", 0)
        if not isinstance(self.augment, Augment):
            raise SpecError(f"augment must be a mapping of augmentation strengths, got {self.augment!r}")


# ---------------------------------------------------------------- the network


@dataclass(frozen=True)
class NetSpec:
    """A network (input shape, classes, layers) with its training recipe.

    ``info`` carries what is recorded about the spec but does not change it:
    metrics, provenance, notes, test results.  It is kept through a round trip
    and ignored by equality.
    """

    layers: tuple[Layer, ...]
    input: tuple[int, int, int] = (1, 28, 28)
    classes: int = 10
    name: str = "net"
    recipe: Recipe = field(default_factory=Recipe)
    info: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        _str(self, "name")
        if isinstance(self.input, list):
            object.__setattr__(self, "input", tuple(self.input))
        if (not isinstance(self.input, tuple) or len(self.input) != 3
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in self.input)):
            raise SpecError(f"input must be three positive integers [C, H, W], got {self.input!r}")
        _int(self, "classes", 2)
        if isinstance(self.layers, list):
            object.__setattr__(self, "layers", tuple(self.layers))
        if not isinstance(self.layers, tuple) or not self.layers:
            raise SpecError(f"layers must be a non-empty list of layers, got {self.layers!r}")
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, _LAYER_TYPES):
                raise SpecError(f"not a layer: {layer!r}", f"layers[{i}]")
        if not isinstance(self.recipe, Recipe):
            raise SpecError(f"recipe must be a mapping, got {self.recipe!r}")
        if not isinstance(self.info, dict):
            raise SpecError(f"info must be a mapping, got {self.info!r}")
        from space.analysis import analyze  # shapes: a pure function of the spec

        out = analyze(self).out_shape
        if out != (self.classes,) and out != (self.classes, 1, 1):
            raise SpecError(f"the network ends with shape {_shape(out)} but must give {self.classes} classes "
                            f"(end with linear out: {self.classes}, or a conv to {self.classes} channels then gap)",
                            "layers")


def _shape(s: tuple[int, ...]) -> str:
    return "x".join(str(v) for v in s)


# ---------------------------------------------------------------- dicts

_INFO_KEYS = ("notes", "source", "metrics", "provenance", "test", "search")
_TOP_KEYS = ("name", "input", "classes", "layers", "recipe") + _INFO_KEYS


def _check_keys(d: Any, cls: type, what: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise SpecError(f"{what} must be a mapping, got {d!r}")
    names = [f.name for f in dataclasses.fields(cls)]
    for key in d:
        if key not in names and key not in skip:
            raise SpecError(f"unknown key {key!r} in {what} (known: {', '.join(names)})")
    return {k: v for k, v in d.items() if k not in skip}


def layer_from_dict(d: Any, where: str = "layer") -> Layer:
    if not isinstance(d, dict):
        raise SpecError(f"a layer must be a mapping with a 'kind', got {d!r}", where)
    kind = d.get("kind")
    if not isinstance(kind, str) or kind not in LAYER_KINDS:  # a list or mapping is unhashable
        raise SpecError(f"unknown layer kind {kind!r} (known: {', '.join(LAYER_KINDS)})", where)
    cls = LAYER_KINDS[kind]
    try:
        kw = _check_keys(d, cls, f"layer {kind!r}", skip=("kind",))
        if cls is Residual:
            inner = kw.get("layers")
            if not isinstance(inner, list) or not inner:
                raise SpecError(f"layers must be a non-empty list of layers, got {inner!r}")
            kw["layers"] = tuple(layer_from_dict(x, f"layers[{i}]") for i, x in enumerate(inner))
        return cls(**kw)
    except SpecError as e:
        raise e.at(where) from None
    except TypeError as e:  # a required field is missing
        missing = str(e).split("argument:")[-1].strip() if "argument" in str(e) else str(e)
        raise SpecError(f"layer {kind!r} is missing {missing}", where) from None


def recipe_from_dict(d: Any) -> Recipe:
    if d is None:
        return Recipe()
    kw = _check_keys(d, Recipe, "recipe")
    if "augment" in kw:
        try:
            kw["augment"] = Augment(**_check_keys(kw["augment"], Augment, "augment"))
        except SpecError as e:
            raise e.at("augment") from None
    return Recipe(**kw)


def from_dict(d: Any) -> NetSpec:
    """A strict reader: unknown keys, wrong types and bad shapes raise :class:`SpecError`."""
    if not isinstance(d, dict):
        raise SpecError(f"a spec must be a mapping with 'layers', got {type(d).__name__}")
    for key in d:
        if key not in _TOP_KEYS:
            raise SpecError(f"unknown key {key!r} (known: {', '.join(_TOP_KEYS)})")
    if "layers" not in d:
        raise SpecError("missing key 'layers'")
    raw = d["layers"]
    if not isinstance(raw, list) or not raw:
        raise SpecError(f"layers must be a non-empty list, got {raw!r}", "layers")
    layers = tuple(layer_from_dict(x, f"layers[{i}]") for i, x in enumerate(raw))
    try:
        recipe = recipe_from_dict(d.get("recipe"))
    except SpecError as e:
        raise e.at("recipe") from None
    kw: dict[str, Any] = {"layers": layers, "recipe": recipe,
                          "info": {k: d[k] for k in _INFO_KEYS if k in d}}
    for key in ("name", "input", "classes"):
        if key in d:
            kw[key] = d[key]
    return NetSpec(**kw)


def layer_to_dict(layer: Layer) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": layer.kind}
    for f in dataclasses.fields(layer):
        v = getattr(layer, f.name)
        if f.name == "layers":
            out["layers"] = [layer_to_dict(x) for x in v]
        elif f.default is dataclasses.MISSING or v != f.default or f.name in getattr(layer, "shown", ()):
            out[f.name] = v
    return out


def _recipe_dict(r: Recipe) -> dict[str, Any]:
    """Every recipe field; of the augmentation, only what is switched on."""
    out: dict[str, Any] = {f.name: getattr(r, f.name) for f in dataclasses.fields(r) if f.name != "augment"}
    aug = {f.name: getattr(r.augment, f.name) for f in dataclasses.fields(r.augment)
           if getattr(r.augment, f.name) != f.default}
    if aug:
        out["augment"] = aug
    return out


def to_dict(spec: NetSpec) -> dict[str, Any]:
    """Plain data for YAML; ``from_dict(to_dict(s)) == s``."""
    d: dict[str, Any] = {
        "name": spec.name,
        "input": list(spec.input),
        "classes": spec.classes,
        "layers": [layer_to_dict(x) for x in spec.layers],
        "recipe": _recipe_dict(spec.recipe),
    }
    for key in _INFO_KEYS:
        if key in spec.info:
            d[key] = spec.info[key]
    return d
