"""YAML in and out: round trips of the zoo, the header, and fuzzed text that must give SpecError or a spec."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from space.analysis import count_params
from space.io import dump, dumps, load, loads
from space.spec import NetSpec, SpecError, to_dict

ZOO = Path(__file__).resolve().parents[1] / "space" / "zoo"
ZOO_FILES = sorted(ZOO.glob("*.yaml"))


@pytest.mark.parametrize("path", ZOO_FILES, ids=[p.stem for p in ZOO_FILES])
def test_zoo_spec_survives_dumps_loads(path: Path) -> None:
    spec = load(path)
    back = loads(dumps(spec))
    assert back == spec
    assert back.info == spec.info
    assert back.info["source"] == spec.info["source"]
    assert back.info["notes"] == spec.info["notes"]
    assert back.recipe == spec.recipe


@pytest.mark.parametrize("path", ZOO_FILES, ids=[p.stem for p in ZOO_FILES])
def test_dumps_starts_with_comment_header_holding_param_count(path: Path) -> None:
    spec = load(path)
    text = dumps(spec)
    n = count_params(spec)
    assert text.splitlines()[0] == f"# cnnsearch spec {spec.name!r}: {n:,} parameters"
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert f"# params: {n}" in header
    assert yaml.safe_load(text) == to_dict(spec)  # the header is only comments


def test_dumps_without_header_is_plain_yaml() -> None:
    spec = load(ZOO / "seed000_19642.yaml")
    text = dumps(spec, header=False)
    assert not text.startswith("#")
    assert loads(text) == spec


def test_dump_then_load_through_a_file(tmp_path: Path) -> None:
    spec = load(ZOO / "seed003_14768.yaml")
    dump(spec, tmp_path / "s.yaml")
    assert load(tmp_path / "s.yaml") == spec
    assert [p.name for p in tmp_path.iterdir()] == ["s.yaml"]  # no temporary file left behind


@pytest.mark.parametrize("name", ["a\nb: 1", "x\x00y", "tab\there", "quote ' and \"", "line\u2028sep", "ünï"])
def test_round_trip_keeps_odd_names_out_of_the_header(name: str) -> None:
    spec = dataclasses.replace(load(ZOO / "seed000_19642.yaml"), name=name)
    back = loads(dumps(spec))
    assert back.name == name
    assert back == spec


def test_info_is_ignored_by_equality_but_kept() -> None:
    spec = load(ZOO / "seed002_19146.yaml")
    other = dataclasses.replace(spec, info={"notes": "different"})
    assert other == spec
    assert loads(dumps(other)).info == {"notes": "different"}


def test_unsafe_python_tag_is_rejected_and_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    text = f'!!python/object/apply:os.system ["touch {marker}"]\n'
    with pytest.raises(SpecError, match="malformed YAML"):
        loads(text)
    nested = f'layers:\n- !!python/object/apply:os.system ["touch {marker}"]\n'
    with pytest.raises(SpecError, match="malformed YAML"):
        loads(nested)
    assert not marker.exists()


def test_echo_hi_python_tag_is_rejected(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SpecError):
        loads('!!python/object/apply:os.system ["echo hi"]')
    assert "hi" not in capfd.readouterr().out


def test_loads_prefixes_errors_with_source() -> None:
    with pytest.raises(SpecError, match=r"^my.yaml: layers\[0\]: unknown layer kind 'nope'"):
        loads("layers: [{kind: nope}]", source="my.yaml")


def test_load_of_missing_file_is_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        load(tmp_path / "absent.yaml")


def test_load_of_non_utf8_file_is_spec_error(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(SpecError, match="cannot read"):
        load(p)


# ---------------------------------------------------------------- fuzz: only SpecError, or a valid spec

KEYS = ["name", "input", "classes", "layers", "recipe", "notes", "source", "kind", "out", "k", "stride", "pad",
        "bias", "groups", "fn", "p", "optimizer", "lr", "scheduler", "augment", "rotate", "crop_size", "max_lr",
        "momentum", "nesterov", "epochs"]
KINDS = ["conv", "sepconv", "bn", "act", "maxpool", "dropout", "dropout2d", "gap", "flatten", "linear", "residual"]

scalars = (st.none() | st.booleans() | st.integers(-3, 40) | st.integers() | st.floats()
           | st.sampled_from(KINDS + ["relu", "sgd", "adam", "step", "nope", ""]) | st.text(max_size=8))
keys = st.sampled_from(KEYS) | st.text(max_size=5) | st.integers(-2, 2)
nested = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=6),
    max_leaves=40,
)
layer_dicts = st.fixed_dictionaries({"kind": st.sampled_from(KINDS) | scalars | nested},
                                    optional={k: scalars | nested for k in KEYS[8:16] + ["layers"]})
spec_dicts = st.fixed_dictionaries(
    {"layers": st.lists(layer_dicts, max_size=6) | nested},
    optional={"input": st.lists(st.integers(-1, 30), max_size=4) | nested, "classes": scalars,
              "name": scalars, "recipe": nested, "notes": nested},
)


def _loads_gives_spec_or_spec_error(text: str) -> None:
    try:
        spec = loads(text)
    except SpecError:
        return
    assert isinstance(spec, NetSpec)


def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])


TOKENS = list("{}[]:,-#&*!|>'\"%@`?\n\t ") + ["kind", "layers", "conv", "residual", "out", "0", "1.5", "!!",
                                                "!!python/name:os.system", "\x00", "é", "\ufeff", "\r\n"]
yamlish = st.lists(st.sampled_from(TOKENS), max_size=40).map("".join)


@fuzz(300)
@given(yamlish)
def test_fuzz_yamlish_text_gives_spec_error_only(text: str) -> None:
    _loads_gives_spec_or_spec_error(text)


@fuzz(200)
@given(st.text(max_size=80))
def test_fuzz_arbitrary_text_gives_spec_error_only(text: str) -> None:
    _loads_gives_spec_or_spec_error(text)


@fuzz(300)
@given(nested)
def test_fuzz_nested_data_gives_spec_error_only(data: Any) -> None:
    _loads_gives_spec_or_spec_error(yaml.safe_dump(data))


@fuzz(200)
@given(spec_dicts)
def test_fuzz_spec_shaped_dicts_give_spec_error_only(data: dict[str, Any]) -> None:
    _loads_gives_spec_or_spec_error(yaml.safe_dump(data))


@pytest.mark.parametrize("text", [
    "layers: [{kind: [1, 2]}]",                # unhashable kind
    "layers: [{kind: {a: 1}}]",
    "? [a, b]\n: 1\n",                         # unhashable key
    "layers: &a [*a]",                         # self-referencing alias
    "a: " + "[" * 600 + "]" * 600,             # deep nesting
    "layers: [" + "{kind: residual, layers: [" * 300 + "{kind: bn}" + "]}" * 300 + "]",
    "input: [1, 28, 28]\nlayers: [{kind: conv, out: 99999999999999999999, k: 3}]",
    "layers: [{kind: flatten}, {kind: linear, out: 10}]\nrecipe: {lr: .nan}",
    "layers: [{kind: flatten}, {kind: linear, out: 10}]\nrecipe: {augment: [1]}",
    "layers: [{kind: flatten}, {kind: linear, out: 10}]\nname: 2020-01-01",
    "\ufeff",
    "",
    "--- a\n--- b\n",
])
def test_awkward_yaml_gives_spec_error(text: str) -> None:
    with pytest.raises(SpecError):
        loads(text)
