"""The reference zoo: each network's parameter count, receptive fields, and a training step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from space.analysis import analyze, count_params
from space.build import build
from space.io import load

ZOO = Path(__file__).resolve().parents[1] / "space" / "zoo"
ZOO_FILES = sorted(ZOO.glob("*.yaml"))
SEED_FILES = sorted(ZOO.glob("seed*.yaml"))  # from the reference documents; the others were found by the search

# The counts the reference documents report for the networks whose layers they give.
DOC_PARAMS = {
    "seed000_19642.yaml": 19642,
    "seed000_actbn_19642.yaml": 19642,  # the same network, ReLU before BatchNorm
    "seed001_v1_420614.yaml": 420614,
    "seed001_v2_99746.yaml": 99746,
    "seed001_v3_18594.yaml": 18594,
    "seed002_19146.yaml": 19146,
    "seed003_14768.yaml": 14768,
    "seed004_12534.yaml": 12534,
}


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def test_zoo_holds_every_documented_network() -> None:
    assert sorted(p.name for p in SEED_FILES) == sorted(DOC_PARAMS)


@pytest.mark.parametrize("name,expected", sorted(DOC_PARAMS.items()))
def test_zoo_count_matches_document(name: str, expected: int) -> None:
    assert count_params(load(ZOO / name)) == expected


@pytest.mark.parametrize("path", ZOO_FILES, ids=_ids(ZOO_FILES))
def test_zoo_count_matches_file_name(path: Path) -> None:
    m = re.search(r"_(\d+)$", path.stem)
    assert m, f"{path.name} does not end with its parameter count"
    assert count_params(load(path)) == int(m.group(1))


@pytest.mark.parametrize("path", ZOO_FILES, ids=_ids(ZOO_FILES))
def test_zoo_analytic_count_equals_built_module(path: Path) -> None:
    spec = load(path)
    assert count_params(spec) == sum(p.numel() for p in build(spec).parameters())


@pytest.mark.parametrize("path", SEED_FILES, ids=_ids(SEED_FILES))
def test_zoo_file_names_its_source_document_and_notes(path: Path) -> None:
    spec = load(path)
    assert spec.name == path.stem
    assert re.fullmatch(r"00\d_[0-9a-f]{16}\.txt", spec.info["source"])
    assert spec.name.startswith("seed" + spec.info["source"][:3])
    assert isinstance(spec.info["notes"], str) and spec.info["notes"]


@pytest.mark.parametrize("path", ZOO_FILES, ids=_ids(ZOO_FILES))
def test_zoo_forward_backward_gives_every_parameter_a_finite_gradient(path: Path) -> None:
    spec = load(path)
    torch.manual_seed(0)
    net = build(spec).train()
    x = torch.randn(4, *spec.input)  # (B, C, H, W)
    y = torch.arange(4) % spec.classes
    out = net(x)  # (B, classes)
    assert out.shape == (4, spec.classes)
    F.cross_entropy(out, y).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name


# Receptive fields by hand: r_out = r_in + (k - 1) * j_in, j_out = j_in * s; GAP and linear: global (None).
SEED000_RF = [
    # where, rf, jump
    ("layers[0]", 3, 1),    # conv 3x3
    ("layers[1]", 3, 1),    # bn
    ("layers[2]", 3, 1),    # relu
    ("layers[3]", 5, 1),    # conv 3x3: 3 + 2 * 1
    ("layers[4]", 5, 1),
    ("layers[5]", 5, 1),
    ("layers[6]", 6, 2),    # maxpool 2: 5 + 1 * 1, jump 2
    ("layers[7]", 6, 2),    # dropout2d
    ("layers[8]", 10, 2),   # conv 3x3: 6 + 2 * 2
    ("layers[9]", 10, 2),
    ("layers[10]", 10, 2),
    ("layers[11]", 14, 2),  # conv 3x3: 10 + 2 * 2
    ("layers[12]", 14, 2),
    ("layers[13]", 14, 2),
    ("layers[14]", 16, 4),  # maxpool 2: 14 + 1 * 2, jump 4
    ("layers[15]", 16, 4),
    ("layers[16]", 16, 4),  # conv 1x1
    ("layers[17]", 16, 4),
    ("layers[18]", 16, 4),
    ("layers[19]", 24, 4),  # conv 3x3: 16 + 2 * 4
    ("layers[20]", 24, 4),
    ("layers[21]", 24, 4),
    ("layers[22]", None, 4),  # gap
    ("layers[23]", None, 4),  # linear
]

SEED003_RF = [
    ("layers[0]", 3, 1),              # conv 3x3
    ("layers[1]", 3, 1),
    ("layers[2]", 3, 1),
    ("layers[3]", 5, 1),              # residual: the longest path, through its body
    ("layers[3].layers[0]", 5, 1),    # conv 3x3: 3 + 2 * 1
    ("layers[3].layers[1]", 5, 1),    # bn
    ("layers[3].add", 5, 1),
    ("layers[4]", 5, 1),              # relu after the add
    ("layers[5]", 7, 1),              # conv 3x3
    ("layers[6]", 7, 1),
    ("layers[7]", 7, 1),
    ("layers[8]", 7, 1),              # conv 1x1
    ("layers[9]", 7, 1),
    ("layers[10]", 7, 1),
    ("layers[11]", 8, 2),             # maxpool 2
    ("layers[12]", 8, 2),             # dropout
    ("layers[13]", 12, 2),            # conv 3x3: 8 + 2 * 2
    ("layers[14]", 12, 2),
    ("layers[15]", 12, 2),
    ("layers[16]", 16, 2),            # conv 3x3
    ("layers[17]", 16, 2),
    ("layers[18]", 16, 2),
    ("layers[19]", 18, 4),            # maxpool 2: 16 + 1 * 2
    ("layers[20]", 18, 4),
    ("layers[21]", 18, 4),            # conv 1x1
    ("layers[22]", 18, 4),
    ("layers[23]", 18, 4),
    ("layers[24]", None, 4),          # gap
    ("layers[25]", None, 4),          # dropout
    ("layers[26]", None, 4),          # linear
]


@pytest.mark.parametrize("name,expected,rf", [
    ("seed000_19642.yaml", SEED000_RF, 24),
    ("seed003_14768.yaml", SEED003_RF, 18),
])
def test_zoo_receptive_field_layer_by_layer(name: str, expected: list[tuple[str, int | None, int]], rf: int) -> None:
    a = analyze(load(ZOO / name))
    assert [(r.where, r.rf, r.jump) for r in a.layers] == expected
    assert a.rf == rf
    assert a.final_rf is None


REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "seed_baseline.py"


@pytest.mark.skipif(not REFERENCE.is_file(), reason=f"the reference pipeline is not at {REFERENCE}")
def test_seed000_is_the_reference_pipelines_network_weight_for_weight() -> None:
    """Built from its spec under the same seed, seed000 is the reference's Net: the same initial weights, the
    same outputs, and the same losses over SGD steps with the reference's optimizer (dropout drawn alike)."""
    import importlib.util

    loader = importlib.util.spec_from_file_location("seed_baseline", REFERENCE)
    assert loader is not None and loader.loader is not None
    reference = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(reference)

    spec = load(ZOO / "seed000_19642.yaml")
    torch.manual_seed(0)
    ours = build(spec)
    torch.manual_seed(0)
    theirs = reference.Net()
    pairs = list(zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True))
    assert len(pairs) == 44 and all(torch.equal(a, b) for a, b in pairs)

    r = spec.recipe
    opts = [torch.optim.SGD(m.parameters(), lr=r.lr, momentum=r.momentum, weight_decay=r.weight_decay)
            for m in (ours, theirs)]
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 1, 28, 28, generator=gen), torch.randint(0, 10, (32,), generator=gen)
    for step in range(3):
        losses = []
        for model, opt, loss_fn in ((ours, opts[0], F.cross_entropy), (theirs, opts[1], F.nll_loss)):
            torch.manual_seed(step)  # the same Dropout2d masks
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[0] == pytest.approx(losses[1], rel=1e-6, abs=1e-6)
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        assert torch.allclose(F.log_softmax(ours(x), 1), theirs(x), atol=1e-5)


def test_seed000_actbn_is_seed000_with_relu_before_each_batch_norm() -> None:
    ours, other = load(ZOO / "seed000_19642.yaml"), load(ZOO / "seed000_actbn_19642.yaml")
    kinds = [layer.kind for layer in ours.layers]
    swapped = list(ours.layers)
    for i in range(len(kinds) - 1):
        if kinds[i:i + 2] == ["bn", "act"]:
            swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
    assert tuple(swapped) == other.layers != ours.layers
    assert other.recipe == ours.recipe and other.info["source"] == ours.info["source"]
    assert analyze(other).rf == analyze(ours).rf == 24
