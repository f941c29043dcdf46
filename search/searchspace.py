"""The search space: which networks and recipes the search may sample, as validated data.

Every entry is one of

* a fixed value (``kernel: 3``): no choice is made;
* a range ``{low: 0.001, high: 0.1, log: true}`` (ints when both ends are ints);
* a set of choices ``{choices: [sgd, adam, adamw]}``.

``--space FILE`` overrides entries of :data:`DEFAULT_SPACE`; unknown keys are refused.
``min_channels`` (the narrowest a layer may be) takes a fixed value only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from space.spec import ACTIVATIONS, ANNEALS, INITS, OPTIMIZERS, SCHEDULERS, SpecError

__all__ = ["Dim", "SearchSpace", "DEFAULT_SPACE", "load_space", "space_from_dict"]

# name: (default, allowed choice values or None for numbers, numeric bounds)
_ENTRIES: dict[str, tuple[Any, tuple[Any, ...] | None, tuple[float, float] | None]] = {
    # architecture
    "stages": ({"low": 2, "high": 3}, None, (1, 5)),
    "convs": ({"low": 1, "high": 3}, None, (1, 6)),             # convolutions per stage
    "kernel": ({"choices": [3]}, (1, 3, 5, 7), None),
    "conv_type": ({"choices": ["plain", "sep"]}, ("plain", "sep"), None),  # of the non-first convs
    "open_type": ("plain", ("plain", "sep"), None),            # of the conv opening stages 2, 3, ...
    "first_pad": ({"choices": [0, 1]}, (0, 1), None),          # padding of stage 1's convs
    "growth": ({"low": 1.0, "high": 2.0}, None, (0.25, 4.0)),   # channel ratio from one stage to the next
    "squeeze": ({"choices": [False, True]}, (False, True), None),  # 1x1 squeeze after each pool
    "residual": ({"choices": [False, True]}, (False, True), None),  # identity skip over a stage's later convs
    "dropout": ({"low": 0.0, "high": 0.15}, None, (0.0, 0.9)),
    "act": ("relu", ACTIVATIONS, None),
    "bn_order": ("bn_act", ("bn_act", "act_bn"), None),        # conv -> bn -> act, or conv -> act -> bn
    "conv_bias": (True, (False, True), None),                   # a bias on the convs BatchNorm follows (it cancels it)
    "head": ({"choices": ["gap_linear", "gap_conv", "conv_gap"]}, ("gap_linear", "gap_conv", "conv_gap"), None),
    "fill": ({"low": 0.7, "high": 1.0}, None, (0.05, 1.0)),     # target share of the budget
    "min_channels": (4, None, (1, 64)),
    "widen": (False, (False, True), None),                      # stages widened a channel at a time to the fill
    # recipe
    "optimizer": ({"choices": ["sgd", "adam", "adamw"]}, OPTIMIZERS, None),
    "lr": ({"low": 0.0005, "high": 0.2, "log": True}, None, (1e-6, 1e4)),  # peak rate; clipped per optimizer
    "momentum": ({"low": 0.8, "high": 0.95}, None, (0.0, 0.99)),
    "nesterov": ({"choices": [False, True]}, (False, True), None),
    "weight_decay": ({"low": 1e-6, "high": 1e-3, "log": True}, None, (0.0, 1.0)),
    "scheduler": ({"choices": ["onecycle", "step", "cosine"]}, SCHEDULERS, None),  # also multistep, plateau
    "pct_start": ({"low": 0.1, "high": 0.4}, None, (0.01, 0.99)),
    "step_gamma": ({"low": 0.1, "high": 0.5}, None, (0.01, 1.0)),
    "step_frac": ({"low": 0.3, "high": 0.7}, None, (0.05, 1.0)),  # step size as a share of the epochs
    "div_factor": (25.0, None, (1.0, 1e4)),                       # onecycle: initial lr = peak / div_factor
    "final_div_factor": (1e4, None, (1.0, 1e6)),                  # onecycle: final lr = initial / this
    "three_phase": (False, (False, True), None),                  # onecycle
    "anneal": ("cos", ANNEALS, None),                             # onecycle: cos or linear
    "cycle_momentum": (False, (False, True), None),               # onecycle (runs eagerly: no CUDA graph)
    "milestone1": ({"low": 0.3, "high": 0.6}, None, (0.01, 1.0)),  # multistep: milestones as shares of the
    "milestone2": ({"low": 0.6, "high": 0.9}, None, (0.01, 1.0)),  # epochs (decay: step_gamma)
    "plateau_factor": ({"low": 0.1, "high": 0.5}, None, (0.01, 0.99)),  # plateau: lr *= factor
    "plateau_patience": ({"low": 0, "high": 3}, None, (0, 100)),        # plateau: epochs without improvement
    "init": ("default", INITS, None),                             # weight init: default, kaiming, xavier
    "batch_size": ({"choices": [64, 128, 256]}, None, (1, 8192)),
    "label_smoothing": ({"low": 0.0, "high": 0.1}, None, (0.0, 0.5)),
    "grad_clip": (0.0, None, (0.0, 100.0)),
    "ema": (0.0, None, (0.0, 0.9999)),                            # decay per step of the weight average, 0 = off
    "rotate": ({"low": 0.0, "high": 15.0}, None, (0.0, 180.0)),
    "translate": ({"low": 0.0, "high": 0.1}, None, (0.0, 0.5)),
    "scale": ({"low": 0.0, "high": 0.15}, None, (0.0, 0.9)),
    "shear": ({"low": 0.0, "high": 10.0}, None, (0.0, 60.0)),
    "crop_p": ({"low": 0.0, "high": 0.3}, None, (0.0, 1.0)),
    "erase_p": (0.0, None, (0.0, 1.0)),
    "rotate_fill": (0.0, None, (0.0, 255.0)),                     # pixel value brought in by rotation & co.
    "resized_crop": (0.0, None, (0.0, 1.0)),                      # probability of RandomResizedCrop
    "crop_scale_min": (0.5, None, (0.01, 1.0)),                   # its smallest share of the area (up to 1)
}

_INTS = ("stages", "convs", "min_channels", "batch_size", "plateau_patience")
_FIXED_ONLY = ("min_channels",)  # a value, never a range or choices

DEFAULT_SPACE: dict[str, Any] = {k: v[0] for k, v in _ENTRIES.items()}


@dataclass(frozen=True)
class Dim:
    """One entry of the space: a fixed value, a numeric range, or a set of choices."""

    name: str
    value: Any = None                  # fixed
    low: float | None = None           # range
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None

    @property
    def fixed(self) -> bool:
        return self.low is None and self.choices is None

    @property
    def is_int(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)

    @property
    def values(self) -> tuple[Any, ...]:
        """The smallest and largest values it can take (for numbers), or all of its choices."""
        if self.fixed:
            return (self.value,)
        if self.choices is not None:
            return self.choices
        return (self.low, self.high)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _dim(name: str, raw: Any) -> Dim:
    _, allowed, bounds = _ENTRIES[name]

    def check(v: Any) -> None:
        if allowed is not None:
            if v not in allowed or (isinstance(v, bool) != any(isinstance(a, bool) for a in allowed)):
                raise SpecError(f"{v!r} is not allowed (allowed: {', '.join(map(str, allowed))})", name)
        else:
            if not _num(v):
                raise SpecError(f"must be a number, got {v!r}", name)
            if name in _INTS and not isinstance(v, int):
                raise SpecError(f"must be an integer, got {v!r}", name)
            lo, hi = bounds or (float("-inf"), float("inf"))
            if not lo <= v <= hi:
                raise SpecError(f"{v!r} is outside [{lo}, {hi}]", name)

    if name in _FIXED_ONLY and isinstance(raw, (dict, list)):
        got = ("a range" if isinstance(raw, dict) and {"low", "high"} & set(raw)
               else "choices" if isinstance(raw, dict) and "choices" in raw else repr(raw))
        raise SpecError(f"must be a fixed {'integer' if name in _INTS else 'value'}, got {got}", name)
    if isinstance(raw, dict):
        keys = set(raw)
        if keys == {"choices"}:
            ch = raw["choices"]
            if not isinstance(ch, list) or not ch:
                raise SpecError(f"choices must be a non-empty list, got {ch!r}", name)
            for v in ch:
                check(v)
            if len(set(map(repr, ch))) != len(ch):
                raise SpecError(f"choices repeat a value: {ch!r}", name)
            return Dim(name, choices=tuple(ch))
        if keys in ({"low", "high"}, {"low", "high", "log"}):
            if allowed is not None:
                raise SpecError("takes choices, not a range", name)
            lo, hi, log = raw["low"], raw["high"], raw.get("log", False)
            check(lo)
            check(hi)
            if lo > hi:
                raise SpecError(f"low {lo!r} is above high {hi!r}", name)
            if not isinstance(log, bool):
                raise SpecError(f"log must be true or false, got {log!r}", name)
            if log and lo <= 0:
                raise SpecError(f"a log range needs low > 0, got {lo!r}", name)
            return Dim(name, low=lo, high=hi, log=log)
        raise SpecError("must be a value, {low, high[, log]} or {choices: [...]}; "
                        f"got keys {', '.join(sorted(map(str, keys)))}", name)
    if isinstance(raw, list):
        raise SpecError(f"a list is ambiguous; write {{choices: {raw}}} or {{low: .., high: ..}}", name)
    check(raw)
    return Dim(name, value=raw)


@dataclass(frozen=True)
class SearchSpace:
    dims: tuple[Dim, ...]

    def __getitem__(self, name: str) -> Dim:
        for d in self.dims:
            if d.name == name:
                return d
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for d in self.dims:
            if d.fixed:
                out[d.name] = d.value
            elif d.choices is not None:
                out[d.name] = {"choices": list(d.choices)}
            else:
                out[d.name] = {"low": d.low, "high": d.high} | ({"log": True} if d.log else {})
        return out


def space_from_dict(overrides: Any = None) -> SearchSpace:
    """The default space with ``overrides`` applied; unknown keys and bad values raise :class:`SpecError`."""
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, dict):
        raise SpecError(f"a search space must be a mapping of entries, got {type(overrides).__name__}")
    for key in overrides:
        if key not in _ENTRIES:
            raise SpecError(f"unknown search-space entry {key!r} (known: {', '.join(_ENTRIES)})")
    merged = DEFAULT_SPACE | overrides
    return SearchSpace(tuple(_dim(name, merged[name]) for name in _ENTRIES))


def load_space(path: str | Path | None) -> SearchSpace:
    if path is None:
        return space_from_dict({})
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError("no such file").in_file(str(p)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"cannot read: {e}").in_file(str(p)) from None
    except yaml.YAMLError as e:
        raise SpecError(f"malformed YAML: {str(e).splitlines()[0]}").in_file(str(p)) from None
    except (ValueError, TypeError, RecursionError) as e:
        raise SpecError(f"malformed YAML: {e}").in_file(str(p)) from None
    try:
        return space_from_dict(data)
    except SpecError as e:
        raise e.in_file(str(p)) from None
