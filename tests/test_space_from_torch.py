"""``python -m space.from_torch``: a torch model read into a spec whose built network gives the model's outputs.

The oracle is the model itself: its weights copied into ``build(spec)``, both must agree within 1e-5 on a
random batch, in eval mode and in train mode under one seed.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from space.build import build
from space.from_torch import NotExpressible, compare, copy_weights, from_module, load_class, main
from space.io import dumps, load, loads
from space.layers import (
    GAP,
    KINDS,
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
)

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference" / "seed_baseline.py"
SEED000 = ROOT / "space" / "zoo" / "seed000_19642.yaml"


# ---------------------------------------------------------------- hand-written models


class Modules(nn.Module):
    """Module forms: every kind but residual, convs of every padding spelling, bn on maps and on features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.act1 = nn.ReLU6(inplace=True)
        self.conv2 = nn.Conv2d(8, 8, 3, padding="same", groups=2)
        self.act2 = nn.LeakyReLU()
        self.pool1 = nn.MaxPool2d(3, stride=2, padding=1)                       # 14x14
        self.drop1 = nn.Dropout2d(0.2)
        self.dw = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False)  # 7x7, with pw: sepconv
        self.pw = nn.Conv2d(8, 16, 1)
        self.act3 = nn.GELU()
        self.conv3 = nn.Conv2d(16, 16, (3, 3), padding="valid")                 # 5x5
        self.act4 = nn.SiLU()
        self.pool2 = nn.AvgPool2d(5)                                            # the whole map: gap
        self.flat = nn.Flatten()
        self.drop2 = nn.Dropout(0.3)
        self.fc1 = nn.Linear(16, 32)
        self.bn2 = nn.BatchNorm1d(32)
        self.act5 = nn.ELU()
        self.act6 = nn.Tanh()
        self.fc2 = nn.Linear(32, 10, bias=False)
        self.out = nn.LogSoftmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        x = self.drop1(self.pool1(x))
        x = self.act4(self.conv3(self.act3(self.pw(self.dw(x)))))
        x = self.drop2(self.flat(self.pool2(x)))
        x = self.act6(self.act5(self.bn2(self.fc1(x))))
        return self.out(self.fc2(x))


MODULES_LAYERS = (
    Conv(8, 3, 1, 1, bias=False), BatchNorm(), Act("relu6"), Conv(8, 3, 1, 1, groups=2), Act("leaky_relu"),
    MaxPool(3, 2, 1), Dropout2d(0.2), SepConv(16, 3, 2, 1), Act("gelu"), Conv(16, 3, 1, 0), Act("silu"),
    GAP(), Flatten(), Dropout(0.3), Linear(32), BatchNorm(), Act("elu"), Act("tanh"), Linear(10, bias=False),
)


class Functions(nn.Module):
    """Functional and tensor-method forms of activations, pooling, dropout and flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=(1, 1))
        self.conv2 = nn.Conv2d(8, 16, 5, padding=2)
        self.conv3 = nn.Conv2d(16, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)                     # 8x14x14
        x = F.dropout2d(torch.relu(x), 0.1, training=self.training)
        x = torch.max_pool2d(self.conv2(x).relu(), kernel_size=2)      # 16x7x7
        x = F.gelu(self.conv3(F.leaky_relu(x, 0.01)))
        x = F.relu6(torch.tanh(F.elu(F.silu(x))).tanh())
        x = x.view(x.size(0), -1)                                      # 196
        x = F.dropout(x, p=0.25, training=self.training)
        return F.log_softmax(self.fc(x), dim=1)


FUNCTIONS_LAYERS = (
    Conv(8, 3, 1, 1), Act("relu"), MaxPool(2), Act("relu"), Dropout2d(0.1), Conv(16, 5, 1, 2), Act("relu"),
    MaxPool(2), Act("leaky_relu"), Conv(4, 3, 1, 1), Act("gelu"), Act("silu"), Act("elu"), Act("tanh"),
    Act("tanh"), Act("relu6"), Flatten(), Dropout(0.25), Linear(10),
)


class Pooled(nn.Module):
    """conv -> global average pooling (in the spelling ``gap``) -> flat (in the spelling ``flat``) -> linear."""

    def __init__(self, gap: str = "adaptive", flat: str = "view_size") -> None:
        super().__init__()
        self.gap, self.flat = gap, flat
        self.conv = nn.Conv2d(1, 12, 3, stride=2)  # 12x13x13
        self.pool = nn.AdaptiveAvgPool2d((1, 1)) if gap == "adaptive" else nn.AvgPool2d(13)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(12, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = {
            "adaptive": lambda: self.pool(x),
            "avg_pool_module": lambda: self.pool(x),
            "adaptive_fn": lambda: F.adaptive_avg_pool2d(x, 1),
            "avg_pool_fn": lambda: F.avg_pool2d(x, 13),
            "avg_pool_fn_pair": lambda: F.avg_pool2d(x, (13, 13)),
            "mean_keepdim": lambda: x.mean((2, 3), keepdim=True),
            "torch_mean_keepdim": lambda: torch.mean(x, dim=[-2, -1], keepdim=True),
            "mean": lambda: x.mean((2, 3)),
            "torch_mean": lambda: torch.mean(x, (-1, -2)),
        }[self.gap]()
        x = {
            "view_size": lambda: x.view(x.size(0), -1),
            "view_minus1": lambda: x.view(-1, 12),
            "reshape_shape": lambda: x.reshape(x.shape[0], -1),
            "reshape_tuple": lambda: torch.reshape(x, (-1, 12)),
            "torch_flatten": lambda: torch.flatten(x, 1),
            "method_flatten": lambda: x.flatten(1),
            "module": lambda: self.flatten(x),
            "none": lambda: x,
        }[self.flat]()
        return self.fc(x)


GAPS = ["adaptive", "avg_pool_module", "adaptive_fn", "avg_pool_fn", "avg_pool_fn_pair", "mean_keepdim",
        "torch_mean_keepdim", "mean", "torch_mean"]
FLATS = ["view_size", "view_minus1", "reshape_shape", "reshape_tuple", "torch_flatten", "method_flatten", "module"]


class Residuals(nn.Module):
    """``x + f(x)`` in its spellings, a nested one, and a shortcut around a single layer."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.block1 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                    nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.bn2 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 8, 1)
        self.conv4 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv5 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.stem(x)))
        x = F.relu(x + self.block1(x))                      # x + f(x)
        x = torch.add(self.conv2(F.relu(self.bn2(x))), x)   # f(x) + x, torch.add
        out = self.conv3(x)
        out += x                                            # +=
        x = F.max_pool2d(out, 2)
        h = self.conv4(x)
        x = x + (h + self.conv5(F.silu(h)))                 # nested
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


RESIDUALS_LAYERS = (
    Conv(8, 3, 1, 1), BatchNorm(), Act("relu"),
    Residual((Conv(8, 3, 1, 1), BatchNorm(), Act("relu"), Conv(8, 3, 1, 1), BatchNorm())), Act("relu"),
    Residual((BatchNorm(), Act("relu"), Conv(8, 3, 1, 1))),
    Residual((Conv(8, 1),)),
    MaxPool(2),
    Residual((Conv(8, 3, 1, 1), Residual((Act("silu"), Conv(8, 3, 1, 1))))),
    GAP(), Linear(10),
)

class Classic(nn.Module):
    """The old PyTorch MNIST example, ``view(-1, 320)`` and an implicit ``log_softmax`` dimension included."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = F.relu(self.fc1(x.view(-1, 320)))
        x = F.dropout(x, training=self.training)
        return F.log_softmax(self.fc2(x))  # type: ignore[call-arg]


CLASSIC_LAYERS = (
    Conv(10, 5), MaxPool(2), Act("relu"), Conv(20, 5), Dropout2d(0.5), MaxPool(2), Act("relu"), Flatten(),
    Linear(50), Act("relu"), Dropout(0.5), Linear(10),
)

MODELS = {"modules": (Modules, MODULES_LAYERS), "classic": (Classic, CLASSIC_LAYERS),
          "functions": (Functions, FUNCTIONS_LAYERS),
          "residuals": (Residuals, RESIDUALS_LAYERS)}


def _round_trip(model: nn.Module, input: tuple[int, int, int] = (1, 28, 28)) -> tuple[tuple, list]:
    imported = from_module(model, input)
    torch.manual_seed(1)
    net = build(imported.spec)
    copy_weights(imported, net)
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in model.parameters())
    return imported.spec.layers, compare(model, imported, net)


# ---------------------------------------------------------------- the reference, and round trips


@pytest.mark.skipif(not REFERENCE.is_file(), reason=f"{REFERENCE} is absent")
def test_reference_net_comes_out_as_the_zoo_seed000_spec() -> None:
    model = load_class(f"{REFERENCE}:Net")()
    layers, checks = _round_trip(model)
    assert layers == load(SEED000).layers
    assert [c.what.split(" (")[0] for c in checks] == ["eval mode", "train mode, seed 0"]
    assert all(c.diff <= 1e-5 for c in checks), checks


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.filterwarnings("ignore:Implicit dimension choice")
def test_hand_written_model_gives_its_layers_and_its_outputs(name: str) -> None:
    cls, want = MODELS[name]
    torch.manual_seed(0)
    layers, checks = _round_trip(cls())
    assert layers == want
    assert len(checks) == 2 and all(c.diff <= 1e-5 for c in checks), checks  # train mode held with dropout on


@pytest.mark.parametrize("gap", GAPS)
def test_every_spelling_of_global_average_pooling_is_gap(gap: str) -> None:
    layers, checks = _round_trip(Pooled(gap=gap, flat="none" if gap in ("mean", "torch_mean") else "view_size"))
    assert layers == (Conv(12, 3, 2), GAP(), Linear(10))
    assert all(c.ok for c in checks), checks


@pytest.mark.parametrize("flat", FLATS)
def test_every_spelling_of_flatten_is_flatten(flat: str) -> None:
    layers, checks = _round_trip(Pooled(gap="adaptive", flat=flat))
    assert layers == (Conv(12, 3, 2), GAP(), Linear(10))  # before linear, gap's C x 1 x 1 needs no flatten
    assert all(c.ok for c in checks), checks


def test_imported_models_cover_every_registered_kind() -> None:
    def kinds(layers: tuple) -> set[str]:
        return {x.kind for x in layers} | {k for x in layers if isinstance(x, Residual) for k in kinds(x.layers)}

    assert set().union(*(kinds(want) for _, want in MODELS.values())) == set(KINDS)


def test_spec_survives_a_yaml_round_trip_and_rebuilds_the_outputs() -> None:
    torch.manual_seed(0)
    model = Residuals()
    imported = from_module(model)
    again = loads(dumps(imported.spec))
    assert again == imported.spec
    net = build(again)
    copy_weights(imported, net)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), net.eval()(x), atol=1e-5, rtol=0)


def test_train_mode_falls_back_to_dropout_off_when_masks_are_drawn_differently() -> None:
    class Noisy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(784, 10)
            self.drop = nn.Dropout(0.5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.drop(x.flatten(1)))

    model = Noisy()
    imported = from_module(model)
    net = build(imported.spec)
    copy_weights(imported, net)
    assert imported.spec.layers == (Flatten(), Dropout(0.5), Linear(10))
    checks = compare(model, imported, net)
    assert [c.what.split(" (")[0] for c in checks] == ["eval mode", "train mode, seed 0"] and all(c.ok for c in checks)
    net.layers[1].p = 0.4  # the built net's masks now differ from the model's: compared again with dropout off
    checks = compare(model, imported, net)
    assert [c.what.split(" (")[0] for c in checks] == ["eval mode", "train mode, seed 0", "train mode, dropout off"]
    assert checks[0].ok and not checks[1].ok and checks[2].ok
    assert net.layers[1].p == 0.4  # put back


# ---------------------------------------------------------------- the command


def test_command_writes_the_spec_and_prints_the_checks_and_table(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "models.py"
    src.write_text(_MODELS_SRC)
    out = tmp_path / "imported.yaml"
    assert main([f"{src}:Pooled", "--kwargs", json.dumps({"gap": "mean", "flat": "none"}), "--input", "1,28,28",
                 "--out", str(out)]) == 0
    stdout, stderr = capsys.readouterr()
    assert stderr == ""
    spec = load(out)
    assert spec.name == "imported" and spec.layers == (Conv(12, 3, 2), GAP(), Linear(10))
    assert spec.info["provenance"] == {"from_torch": f"{src}:Pooled", "kwargs": {"gap": "mean", "flat": "none"}}
    lines = stdout.splitlines()
    assert lines[0] == ("checked against Pooled on 8 random 1x28x28 images, its weights and batch-norm statistics "
                        "copied:")
    assert [line.split(" (")[0] for line in lines[1:3]] == ["check: eval mode", "check: train mode, seed 0"]
    assert all(line.endswith("(ok)") for line in lines[1:3])
    assert lines[3] == f"wrote {out}" and lines[-1] == "params: 250"


_MODELS_SRC = textwrap.dedent('''
    import torch
    import torch.nn as nn
    import torch.nn.functional as F


    class Pooled(nn.Module):
        def __init__(self, gap="mean", flat="none", c=12):
            super().__init__()
            self.conv = nn.Conv2d(1, c, 3, stride=2)
            self.fc = nn.Linear(c, 10)

        def forward(self, x):
            return self.fc(self.conv(x).mean((2, 3)))


    class Base(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 8, 3, padding=1)
            self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
            self.fc = nn.Linear(8, 10)

        def head(self, x):
            return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


    class AvgPool(Base):
        def __init__(self):
            super().__init__()
            self.pool = nn.AvgPool2d(3)

        def forward(self, x):
            return self.head(self.pool(self.conv(x)))


    class Sigmoid(Base):
        def forward(self, x):
            return self.head(torch.sigmoid(self.conv(x)))


    class Slope(Base):
        def forward(self, x):
            return self.head(F.leaky_relu(self.conv(x), 0.2))


    class Branches(Base):
        def forward(self, x):
            x = self.conv(x)
            return self.head(torch.cat([x[:, :4], x[:, 4:]], 1))


    class Projection(Base):
        def forward(self, x):
            return self.head(self.conv(x) + self.conv2(self.conv(x)))


    class Shared(Base):
        def forward(self, x):
            x = self.conv(x)
            return self.head(self.conv2(self.conv2(x)))


    class Dilated(Base):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 8, 3, padding=2, dilation=2)

        def forward(self, x):
            return self.head(self.conv(x))


    class MidSoftmax(Base):
        def forward(self, x):
            return self.head(F.softmax(self.conv(x), dim=1))


    class AlwaysDropout(Base):
        def forward(self, x):
            return self.head(F.dropout(self.conv(x), 0.5))


    class TwoOutputs(Base):
        def forward(self, x):
            x = self.conv(x)
            return self.head(x), x


    class NotAFlatten(Base):
        def forward(self, x):
            return self.fc(self.conv(x).view(-1, 8))


    class NotAModule:
        pass
''')

UNSUPPORTED = {
    "AvgPool": "error: node 'pool' (call_module AvgPool2d(kernel_size=3, stride=3, padding=0)): "
               "not expressible as a spec layer (average pooling over 3x3 of a 28x28 map; only over the whole map, "
               "as gap)",
    "Sigmoid": "error: node 'sigmoid' (call_function torch.sigmoid): not expressible as a spec layer",
    "Slope": "error: node 'leaky_relu' (call_function torch.nn.functional.leaky_relu): not expressible as a spec "
             "layer (negative_slope=0.2; act leaky_relu has negative_slope=0.01)",
    "Branches": "error: node 'cat' (call_function torch.cat): not expressible as a spec layer",
    "Projection": "error: node 'add' (call_function _operator.add): not expressible as a spec layer "
                  "(adds two branches; only x + f(x) is a residual)",
    "Shared": "error: node 'conv2_1' (call_module Conv2d(8, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))): "
              "not expressible as a spec layer (module 'conv2' is called a second time: its weights are shared, "
              "and a spec layer has its own)",
    "Dilated": "error: node 'conv' (call_module Conv2d(1, 8, kernel_size=(3, 3), stride=(1, 1), padding=(2, 2), "
               "dilation=(2, 2))): not expressible as a spec layer (dilation (2, 2))",
    "MidSoftmax": "error: node 'softmax' (call_function torch.nn.functional.softmax): not expressible as a spec "
                  "layer (softmax inside the network; only a final one is dropped)",
    "AlwaysDropout": "error: node 'dropout' (call_function torch.nn.functional.dropout): not expressible as a spec "
                     "layer (training=True in train mode, True in eval mode; a spec's dropout is on in train mode "
                     "only (pass training=self.training))",
    "TwoOutputs": "error: node 'output' (output output): not expressible as a spec layer (returns tuple, not one "
                  "tensor)",
    "NotAFlatten": "error: node 'view' (call_method view): not expressible as a spec layer (a view to (-1, 8) of "
                   "(8, 28, 28) per image; only to (B, -1), (-1, 6272) or (B, 6272) (flatten))",
}


def _one_line_exit_2(capsys: pytest.CaptureFixture[str], rc: int, tmp_path: Path, before: set[str]) -> str:
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert {p.name for p in tmp_path.iterdir()} == before  # nothing written
    return err.rstrip("\n")


@pytest.mark.parametrize("cls", sorted(UNSUPPORTED))
def test_an_op_no_layer_expresses_is_one_line_naming_the_node_and_exit_2(
        cls: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "models.py"
    src.write_text(_MODELS_SRC)
    before = {p.name for p in tmp_path.iterdir()}
    rc = main([f"{src}:{cls}", "--out", str(tmp_path / "out.yaml")])
    assert _one_line_exit_2(capsys, rc, tmp_path, before) == UNSUPPORTED[cls]


def test_not_expressible_is_an_exception_from_the_library() -> None:
    with pytest.raises(NotExpressible, match=r"^node '_1' \(call_module Sigmoid\(\)\): not expressible"):
        from_module(nn.Sequential(nn.Conv2d(1, 10, 28), nn.Sigmoid(), nn.Flatten()))


BAD_INPUT = {
    "no module": (["no_such_module_xyz:Net"], "error: cannot import no_such_module_xyz: no module named "
                                              "'no_such_module_xyz'"),
    "no file": (["{tmp}/absent.py:Net"], "error: no such file: {tmp}/absent.py"),
    "no class": (["{src}:Nope"], "error: {src} has no class 'Nope'"),
    "not a module class": (["{src}:NotAModule"], "error: {src}:NotAModule is not a torch.nn.Module class"),
    "no colon": (["{src}"], "error: expected MODULE:CLASS, got '{src}'"),
    "bad JSON": (["{src}:Pooled", "--kwargs", "{c: 3"], "error: --kwargs: not valid JSON: Expecting property name "
                                                        "enclosed in double quotes: line 1 column 2 (char 1)"),
    "JSON not an object": (["{src}:Pooled", "--kwargs", "[3]"], "error: --kwargs: expected a JSON object, got '[3]'"),
    "bad kwarg": (["{src}:Pooled", "--kwargs", '{"width": 3}'],
                  "error: cannot make Pooled(**{'width': 3}): TypeError: Pooled.__init__() got an unexpected "
                  "keyword argument 'width'"),
    "bad input shape": (["{src}:Pooled", "--input", "1,28"],
                        "error: argument --input: expected C,H,W such as 1,28,28, got '1,28'"),
    "wrong input": (["{src}:Pooled", "--input", "3,28,28"], "error: Pooled does not run on a batch of 2 x 3x28x28 "
                                                            "images: RuntimeError: "),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_one_line_and_exit_2(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "models.py"
    src.write_text(_MODELS_SRC)
    before = {p.name for p in tmp_path.iterdir()}
    args, want = BAD_INPUT[case]
    def fill(s: str) -> str:
        return s.replace("{tmp}", str(tmp_path)).replace("{src}", str(src))

    argv = [fill(a) for a in args] + ["--out", str(tmp_path / "out.yaml")]
    err = _one_line_exit_2(capsys, main(argv), tmp_path, before)
    assert err.startswith(fill(want))


def test_command_in_a_real_process_is_one_line_and_exit_2(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    src = tmp_path / "models.py"
    src.write_text(_MODELS_SRC)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    argv = [sys.executable, "-m", "space.from_torch", f"{src}:AvgPool", "--out", str(tmp_path / "o.yaml")]
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", UNSUPPORTED["AvgPool"] + "\n")
    assert not (tmp_path / "o.yaml").exists()
