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

The layer kinds (``conv``, ``bn``, ...) live in :mod:`space.layers`, registered
under their YAML names, and are re-exported here.  Every class validates itself
in ``__post_init__`` and raises :class:`SpecError` naming the field and the
value; :func:`from_dict` adds the location (``layers[3]``).  Shape checks
(kernels larger than their input, mismatched residuals, ...) run when a
:class:`NetSpec` is made, through each kind's shape rule.  This module does not
import torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from space.checks import SpecError, check_bool, check_choice, check_float, check_int, check_str
from space.layers import (
    ACTIVATIONS,
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
    walk,
)

__all__ = [
    "SpecError", "Conv", "SepConv", "BatchNorm", "Act", "MaxPool", "Dropout", "Dropout2d",
    "GAP", "Flatten", "Linear", "Residual", "Layer", "LAYER_KINDS", "Augment", "Recipe",
    "NetSpec", "ACTIVATIONS", "OPTIMIZERS", "SCHEDULERS", "INTERPOLATIONS", "ANNEALS", "INITS", "from_dict",
    "to_dict",
]

LAYER_KINDS = KINDS  # YAML name -> layer class: the registry of space.layers


# ---------------------------------------------------------------- recipe

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("none", "step", "onecycle", "cosine", "multistep", "plateau")
INTERPOLATIONS = ("bilinear", "nearest")  # augment.interp
ANNEALS = ("cos", "linear")               # onecycle's annealing
INITS = ("default", "kaiming", "xavier")  # recipe.init: torch's layer defaults, or nn.init's schemes
# recipe fields written out only when they differ from their default, so that specs made before them dump as before
_QUIET = ("milestones", "factor", "patience", "div_factor", "final_div_factor", "three_phase", "anneal",
          "cycle_momentum", "init", "ema")


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
    resized bilinearly, as the reference's ``Resize``; fill: the pixel value
    (0..255) that rotation, translation, scale and shear bring in from outside
    the image (torchvision's ``fill``); resized_crop: probability of
    torchvision's ``RandomResizedCrop``, a crop of a random share
    ``crop_scale`` of the area with aspect ratio (width / height) in
    ``crop_ratio`` (log-uniform), resized back bilinearly.
    """

    rotate: float = 0.0
    translate: float = 0.0
    scale: float = 0.0
    shear: float = 0.0
    crop_p: float = 0.0
    crop_size: int = 22
    erase_p: float = 0.0
    interp: str = "bilinear"
    fill: float = 0.0
    resized_crop: float = 0.0
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __post_init__(self) -> None:
        check_float(self, "rotate", 0.0, 180.0)
        check_float(self, "translate", 0.0, 0.5)
        check_float(self, "scale", 0.0, 0.9)
        check_float(self, "shear", 0.0, 60.0)
        check_float(self, "crop_p", 0.0, 1.0)
        check_int(self, "crop_size", 1)
        check_float(self, "erase_p", 0.0, 1.0)
        check_choice(self, "interp", INTERPOLATIONS)
        check_float(self, "fill", 0.0, 255.0)
        check_float(self, "resized_crop", 0.0, 1.0)
        _check_range(self, "crop_scale", 0.0, 1.0)
        _check_range(self, "crop_ratio", 0.0, None)

    @property
    def off(self) -> bool:
        return not (self.rotate or self.translate or self.scale or self.shear or self.crop_p or self.erase_p
                    or self.resized_crop)


def _check_range(obj: Any, name: str, lo: float, hi: float | None) -> None:
    """A pair (low, high) with lo < low <= high (<= hi), stored back as a tuple of floats."""
    v = getattr(obj, name)
    ok = isinstance(v, list | tuple) and len(v) == 2 and all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in v)
    if not ok or not lo < v[0] <= v[1] or (hi is not None and v[1] > hi):
        top = f" <= {hi}" if hi is not None else ""
        raise SpecError(f"{name} must be a pair [low, high] with {lo} < low <= high{top}, got {v!r}")
    object.__setattr__(obj, name, (float(v[0]), float(v[1])))


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
    div_factor: float = 25.0       # onecycle: initial lr = max_lr / div_factor
    final_div_factor: float = 1e4  # onecycle: final lr = initial lr / final_div_factor
    three_phase: bool = False      # onecycle: a third phase down to the final lr (torch's three_phase)
    anneal: str = "cos"            # onecycle: cos or linear annealing
    cycle_momentum: bool = False   # onecycle: momentum (SGD) / beta1 (Adam) cycled 0.95 -> 0.85 -> 0.95
    milestones: tuple[int, ...] = ()  # multistep: epochs after which lr *= gamma (none: the lr stays)
    factor: float = 0.1            # plateau: lr *= factor when the monitored metric stalls
    patience: int = 10             # plateau: epochs without improvement before the lr is cut
    init: str = "default"          # weight init of conv and linear layers: default (torch's), kaiming, xavier
    batch_size: int = 128
    epochs: int = 20
    label_smoothing: float = 0.0
    grad_clip: float = 0.0         # max gradient norm, 0 = off
    ema: float = 0.0               # decay per step of a moving average of the weights, evaluated and kept; 0 = off
    seed: int = 0
    augment: Augment = field(default_factory=Augment)

    def __post_init__(self) -> None:
        check_choice(self, "optimizer", OPTIMIZERS)
        check_float(self, "lr", 0.0, lo_open=True)
        check_float(self, "momentum", 0.0, 1.0, hi_open=True)
        check_bool(self, "nesterov")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise SpecError("nesterov needs optimizer sgd with momentum > 0")
        check_float(self, "weight_decay", 0.0)
        check_choice(self, "scheduler", SCHEDULERS)
        check_int(self, "step_size", 1)
        check_float(self, "gamma", 0.0, 1.0, lo_open=True)
        check_float(self, "max_lr", 0.0, lo_open=True, optional=True)
        check_float(self, "pct_start", 0.0, 1.0, lo_open=True, hi_open=True)
        check_float(self, "div_factor", 0.0, lo_open=True)
        check_float(self, "final_div_factor", 0.0, lo_open=True)
        check_bool(self, "three_phase")
        check_choice(self, "anneal", ANNEALS)
        check_bool(self, "cycle_momentum")
        if self.cycle_momentum and self.optimizer == "sgd" and self.momentum == 0:
            raise SpecError("cycle_momentum needs momentum > 0 with optimizer sgd")
        ms = self.milestones
        if not isinstance(ms, list | tuple) or any(isinstance(m, bool) or not isinstance(m, int) or m < 1
                                                   for m in ms) or list(ms) != sorted(set(ms)):
            raise SpecError(f"milestones must be increasing epochs >= 1, got {ms!r}")
        object.__setattr__(self, "milestones", tuple(ms))
        check_float(self, "factor", 0.0, 1.0, lo_open=True, hi_open=True)
        check_int(self, "patience", 0)
        check_choice(self, "init", INITS)
        check_int(self, "batch_size", 1)
        check_int(self, "epochs", 1)
        check_float(self, "label_smoothing", 0.0, 1.0, hi_open=True)
        check_float(self, "grad_clip", 0.0)
        check_float(self, "ema", 0.0, 1.0, hi_open=True)
        check_int(self, "seed", 0)
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
        check_str(self, "name")
        if isinstance(self.input, list):
            object.__setattr__(self, "input", tuple(self.input))
        if (not isinstance(self.input, tuple) or len(self.input) != 3
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in self.input)):
            raise SpecError(f"input must be three positive integers [C, H, W], got {self.input!r}")
        check_int(self, "classes", 2)
        if isinstance(self.layers, list):
            object.__setattr__(self, "layers", tuple(self.layers))
        if not isinstance(self.layers, tuple) or not self.layers:
            raise SpecError(f"layers must be a non-empty list of layers, got {self.layers!r}")
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise SpecError(f"not a layer: {layer!r}", f"layers[{i}]")
        if not isinstance(self.recipe, Recipe):
            raise SpecError(f"recipe must be a mapping, got {self.recipe!r}")
        if not isinstance(self.info, dict):
            raise SpecError(f"info must be a mapping, got {self.info!r}")
        out = walk(self.layers, Shape.of(self.input)).dims  # shape errors name the layer
        if out != (self.classes,) and out != (self.classes, 1, 1):
            raise SpecError(f"the network ends with shape {_shape(out)} but must give {self.classes} classes "
                            f"(end with linear out: {self.classes}, or a conv to {self.classes} channels then gap)",
                            "layers")


def _shape(s: tuple[int, ...]) -> str:
    return "x".join(str(v) for v in s)


# ---------------------------------------------------------------- dicts

_GROUP = "layers"  # a layer's field of this name holds a group of layers (residual)
_INFO_KEYS = ("notes", "source", "metrics", "provenance", "test", "search", "dataset")
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
        if any(f.name == _GROUP for f in dataclasses.fields(cls)):
            inner = kw.get(_GROUP)
            if not isinstance(inner, list) or not inner:
                raise SpecError(f"layers must be a non-empty list of layers, got {inner!r}")
            kw[_GROUP] = tuple(layer_from_dict(x, f"layers[{i}]") for i, x in enumerate(inner))
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
        if f.name == _GROUP:
            out[_GROUP] = [layer_to_dict(x) for x in v]
        elif f.default is dataclasses.MISSING or v != f.default or f.name in getattr(layer, "shown", ()):
            out[f.name] = v
    return out


def _recipe_dict(r: Recipe) -> dict[str, Any]:
    """Every recipe field; of the augmentation, only what is switched on."""
    out: dict[str, Any] = {f.name: getattr(r, f.name) for f in dataclasses.fields(r) if f.name != "augment"
                           and (f.name not in _QUIET or getattr(r, f.name) != f.default)}
    if "milestones" in out:
        out["milestones"] = list(out["milestones"])
    aug = {f.name: getattr(r.augment, f.name) for f in dataclasses.fields(r.augment)
           if getattr(r.augment, f.name) != f.default}
    for key in ("crop_scale", "crop_ratio"):
        if key in aug:
            aug[key] = list(aug[key])
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
