"""Every kind of invalid spec is a SpecError that says where (layer index) and what (field)."""

from __future__ import annotations

import re
import textwrap

import pytest

from space.io import loads
from space.spec import Conv, NetSpec, Recipe, Residual, SpecError

HEAD = "- {kind: flatten}\n- {kind: linear, out: 10}\n"


def _spec(layers: str, extra: str = "", input_: str = "[1, 28, 28]") -> str:
    return f"input: {input_}\nlayers:\n{textwrap.dedent(layers)}{extra}"


# (id, YAML text, pieces the message must contain)
INVALID = [
    ("unknown layer kind",
     _spec("- {kind: conv, out: 4}\n- {kind: pool2d}\n" + HEAD),
     ["layers[1]", "unknown layer kind 'pool2d'", "known: conv"]),
    ("kind missing",
     _spec("- {out: 4}\n" + HEAD),
     ["layers[0]", "unknown layer kind None"]),
    ("unknown key",
     _spec("- {kind: conv, out: 4, kernel: 3}\n" + HEAD),
     ["layers[0]", "unknown key 'kernel'", "known: out, k"]),
    ("unknown top-level key",
     _spec(HEAD, "optimizer: sgd\n"),
     ["unknown key 'optimizer'"]),
    ("required field missing",
     _spec("- {kind: conv, k: 3}\n" + HEAD),
     ["layers[0]", "missing", "out"]),
    ("zero channels",
     _spec("- {kind: conv, out: 0}\n" + HEAD),
     ["layers[0]", "out must be >= 1, got 0"]),
    ("negative channels",
     _spec("- {kind: sepconv, out: -3}\n" + HEAD),
     ["layers[0]", "out must be >= 1, got -3"]),
    ("zero linear features",
     _spec("- {kind: flatten}\n- {kind: linear, out: 0}\n- {kind: linear, out: 10}\n"),
     ["layers[1]", "out must be >= 1"]),
    ("float channels",
     _spec("- {kind: conv, out: 4.5}\n" + HEAD),
     ["layers[0]", "out must be an integer, got 4.5"]),
    ("bool kernel",
     _spec("- {kind: conv, out: 4, k: true}\n" + HEAD),
     ["layers[0]", "k must be an integer, got True"]),
    ("kernel larger than input",
     _spec("- {kind: conv, out: 4, k: 5}\n" + HEAD, input_="[1, 4, 4]"),
     ["layers[0]", "kernel 5 is larger than its input 4x4"]),
    ("pool kernel larger than maps",
     _spec("- {kind: conv, out: 4, k: 3}\n- {kind: maxpool, k: 2}\n- {kind: maxpool, k: 2}\n"
           "- {kind: maxpool, k: 2}\n" + HEAD, input_="[1, 8, 8]"),
     ["layers[3]", "kernel 2 is larger than its input 1x1"]),
    ("maxpool pad over half the kernel",
     _spec("- {kind: maxpool, k: 2, pad: 2}\n" + HEAD),
     ["layers[0]", "pad must be at most half of k"]),
    ("linear on 2-D maps",
     _spec("- {kind: conv, out: 4, k: 3}\n- {kind: linear, out: 10}\n"),
     ["layers[1]", "linear needs flat features", "4x26x26"]),
    ("dropout2d after flatten",
     _spec("- {kind: conv, out: 4, k: 3}\n- {kind: flatten}\n- {kind: dropout2d, p: 0.1}\n"
           "- {kind: linear, out: 10}\n"),
     ["layers[2]", "dropout2d needs feature maps"]),
    ("conv after flatten",
     _spec("- {kind: flatten}\n- {kind: conv, out: 4}\n" + HEAD),
     ["layers[1]", "conv needs feature maps"]),
    ("gap after linear",
     _spec("- {kind: flatten}\n- {kind: linear, out: 10}\n- {kind: gap}\n"),
     ["layers[2]", "gap needs feature maps"]),
    ("residual changes channels",
     _spec("- {kind: conv, out: 4, k: 3, pad: 1}\n- kind: residual\n  layers:\n"
           "  - {kind: conv, out: 8, k: 3, pad: 1}\n" + HEAD),
     ["layers[1]", "residual group maps 4x28x28 to 8x28x28"]),
    ("residual changes size",
     _spec("- kind: residual\n  layers:\n  - {kind: conv, out: 1, k: 3}\n" + HEAD),
     ["layers[0]", "1x28x28 to 1x26x26"]),
    ("residual empty",
     _spec("- {kind: residual, layers: []}\n" + HEAD),
     ["layers[0]", "layers must be a non-empty list"]),
    ("error inside a residual",
     _spec("- kind: residual\n  layers:\n  - {kind: bn}\n  - {kind: conv, out: 0}\n" + HEAD),
     ["layers[0].layers[1]", "out must be >= 1"]),
    ("shape error inside a residual",
     _spec("- {kind: flatten}\n- kind: residual\n  layers:\n  - {kind: dropout2d}\n- {kind: linear, out: 10}\n"),
     ["layers[1].layers[0]", "dropout2d needs feature maps"]),
    ("groups do not divide out",
     _spec("- {kind: conv, out: 6, k: 3}\n- {kind: conv, out: 5, k: 3, groups: 2}\n" + HEAD),
     ["layers[1]", "out must be divisible by groups (2), got 5"]),
    ("groups do not divide input channels",
     _spec("- {kind: conv, out: 3, k: 3}\n- {kind: conv, out: 4, k: 3, groups: 2}\n" + HEAD),
     ["layers[1]", "input channels 3 not divisible by groups 2"]),
    ("zero groups",
     _spec("- {kind: conv, out: 4, groups: 0}\n" + HEAD),
     ["layers[0]", "groups must be >= 1"]),
    ("unknown activation",
     _spec("- {kind: act, fn: swish}\n" + HEAD),
     ["layers[0]", "fn must be one of relu", "'swish'"]),
    ("dropout p of 1",
     _spec("- {kind: dropout, p: 1.0}\n" + HEAD),
     ["layers[0]", "p must be < 1.0"]),
    ("wrong number of outputs",
     _spec("- {kind: flatten}\n- {kind: linear, out: 7}\n"),
     ["layers", "ends with shape 7", "10 classes"]),
    ("bad recipe optimizer",
     _spec(HEAD, "recipe: {optimizer: rmsprop}\n"),
     ["recipe", "optimizer must be one of sgd, adam, adamw", "'rmsprop'"]),
    ("bad recipe scheduler",
     _spec(HEAD, "recipe: {scheduler: cyclic}\n"),
     ["recipe", "scheduler must be one of none, step, onecycle, cosine, multistep, plateau", "'cyclic'"]),
    ("unknown recipe key",
     _spec(HEAD, "recipe: {lr: 0.1, warmup: 3}\n"),
     ["recipe", "unknown key 'warmup'"]),
    ("non-positive learning rate",
     _spec(HEAD, "recipe: {lr: 0}\n"),
     ["recipe", "lr must be > 0.0"]),
    ("nesterov with adam",
     _spec(HEAD, "recipe: {optimizer: adam, nesterov: true}\n"),
     ["recipe", "nesterov needs optimizer sgd"]),
    ("bad augmentation",
     _spec(HEAD, "recipe: {augment: {rotate: 200}}\n"),
     ["recipe.augment", "rotate must be <= 180.0"]),
    ("bad augmentation interpolation",
     _spec(HEAD, "recipe: {augment: {rotate: 15, interp: bicubic}}\n"),
     ["recipe.augment", "interp must be one of bilinear, nearest", "'bicubic'"]),
    ("unknown augmentation key",
     _spec(HEAD, "recipe: {augment: {flip: 0.5}}\n"),
     ["recipe.augment", "unknown key 'flip'"]),
    ("bad input shape",
     _spec(HEAD, input_="[28, 28]"),
     ["input must be three positive integers"]),
    ("one class",
     _spec("- {kind: flatten}\n- {kind: linear, out: 1}\n", "classes: 1\n"),
     ["classes must be >= 2"]),
    ("layers not a list",
     "layers: {kind: conv}\n",
     ["layers", "must be a non-empty list"]),
    ("layer not a mapping",
     _spec("- conv\n" + HEAD),
     ["layers[0]", "a layer must be a mapping"]),
    ("spec not a mapping",
     "- {kind: conv}\n",
     ["a spec must be a mapping"]),
    ("malformed YAML: unclosed flow mapping",
     "layers:\n- {kind: conv, out: 4\n- {kind: gap}\n",
     ["malformed YAML", "line"]),
    ("malformed YAML: bad indentation",
     "layers:\n  - {kind: flatten}\n - {kind: linear, out: 10}\n",
     ["malformed YAML", "line 3"]),
    ("malformed YAML: tab indentation",
     "layers:\n\t- {kind: flatten}\n",
     ["malformed YAML"]),
    ("code under the unsafe loader",
     '!!python/object/apply:os.system ["echo hi"]\n',
     ["malformed YAML", "python/object/apply:os.system"]),
]


@pytest.mark.parametrize("text,pieces", [case[1:] for case in INVALID], ids=[case[0] for case in INVALID])
def test_invalid_spec_gives_spec_error_naming_place_and_field(text: str, pieces: list[str]) -> None:
    with pytest.raises(SpecError) as info:
        loads(text, source="bad.yaml")
    msg = str(info.value)
    assert msg.startswith("bad.yaml: ")
    assert "\n" not in msg
    for piece in pieces:
        assert piece in msg, f"{piece!r} not in {msg!r}"


def test_location_prefix_is_the_layer_path() -> None:
    text = _spec("- {kind: conv, out: 4, k: 3, pad: 1}\n- kind: residual\n  layers:\n  - {kind: bn}\n"
                 "  - kind: residual\n    layers:\n    - {kind: conv, out: 4, k: 3, stride: 0}\n" + HEAD)
    with pytest.raises(SpecError) as info:
        loads(text)
    assert re.match(r"<string>: layers\[1\]\.layers\[1\]\.layers\[0\]: stride must be >= 1, got 0$", str(info.value))
    assert info.value.where == "layers[1].layers[1].layers[0]"


def test_spec_error_is_a_value_error() -> None:
    assert issubclass(SpecError, ValueError)


@pytest.mark.parametrize("make,piece", [
    (lambda: Conv(out=0), "out must be >= 1"),
    (lambda: Conv(out=4, groups=3), "divisible by groups"),
    (lambda: Residual(layers=()), "non-empty"),
    (lambda: Recipe(optimizer="lbfgs"), "optimizer must be one of"),
    (lambda: NetSpec(layers=(Conv(out=4),)), "must give 10 classes"),
    (lambda: NetSpec(layers=("conv",)), "layers[0]: not a layer"),  # type: ignore[arg-type]
])
def test_dataclasses_validate_themselves(make, piece: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SpecError) as info:
        make()
    assert piece in str(info.value)
