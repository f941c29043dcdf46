"""trainer.datasets: every kind on a small dataset the test writes; Debian-style re-gzipped files; the
dataset recorded in a study, an exported spec and result files, and a data dir that does not match refused."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from results.evaluate import main as evaluate_main
from search.run import main as search_main
from space.io import load
from trainer import datasets as K
from trainer.data import DataError, dataset_info, dataset_shape, load_splits, load_test, load_train
from trainer.step import norm_of, prepare
from trainer.train import main as train_main

RAW = Path(__file__).resolve().parent.parent / "data" / "MNIST" / "raw"


def _idx(path: Path, x: np.ndarray | None = None, y: np.ndarray | None = None) -> None:
    if x is not None:
        raw = struct.pack(">4I", 2051, *x.shape) + x.astype(np.uint8).tobytes()
    else:
        assert y is not None
        raw = struct.pack(">2I", 2049, len(y)) + y.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw, mtime=0) if path.suffix == ".gz" else raw)


def _idx_dataset(root: Path, n: int = 300, classes: int = 4, hw: tuple[int, int] = (12, 16),
                 prefix: str = "", test: str = "t10k") -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for part, m in (("train", n), (test, n // 3)):
        y = np.arange(m) % classes
        x = rng.integers(0, 60, size=(m, *hw)) + 40 * y[:, None, None]  # the class shows in the brightness
        _idx(root / f"{prefix}{part}-images-idx3-ubyte.gz", x=x)
        _idx(root / f"{prefix}{part}-labels-idx1-ubyte", y=y)
    return root


def _folder_dataset(root: Path, per_class: int = 12, classes: int = 3, shape: tuple[int, int, int] = (3, 32, 32)
                    ) -> Path:
    rng = np.random.default_rng(1)
    for part, n in (("train", per_class), ("test", per_class // 2)):
        for c in range(classes):
            d = root / part / f"class{c}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                a = rng.integers(0, 50, size=(shape[1], shape[2], shape[0]), dtype=np.uint8)
                a[..., c % shape[0]] += 150  # the class is the bright channel
                Image.fromarray(a.squeeze(-1) if shape[0] == 1 else a).save(d / f"{i:03d}.png")
    return root


# ---------------------------------------------------------------- each kind


def test_every_kind_is_registered_once_and_an_unknown_one_lists_them():
    assert list(K.KINDS) == ["mnist", "fashion", "idx", "folder"]
    with pytest.raises(ValueError, match="dataset must be one of mnist, fashion, idx, folder; got 'cifar'"):
        K.get_kind("cifar")
    with pytest.raises(ValueError, match="registered twice"):
        K.register(K.IdxKind(name="mnist"))


def test_idx_kind_reads_any_four_idx_files_with_classes_from_the_labels(tmp_path):
    root = _idx_dataset(tmp_path / "kmnist")
    assert dataset_shape(root, dataset="idx") == ((1, 12, 16), 4)
    train, test = load_train(root, dataset="idx"), load_test(root, dataset="idx")
    assert train.x.shape == (300, 1, 12, 16) and test.x.shape == (100, 1, 12, 16)
    assert torch.bincount(train.y).tolist() == [75] * 4
    info = dataset_info(root, dataset="idx")
    f = train.x.double() / 255
    assert info.classes == 4 and info.input == (1, 12, 16) and info.train_images == 300
    assert info.mean == (round(f.mean().item(), 4),) and info.std == (round(f.std(unbiased=False).item(), 4),)
    assert train.mean == test.mean == info.mean  # the test split is normalised by the training images' statistics
    x = prepare(train.x, None, None, False, norm_of(train))
    assert abs(x.mean().item()) < 1e-3 and abs(x.std().item() - 1) < 1e-3


def test_idx_kind_takes_a_prefix_and_test_for_t10k_as_emnist_names_them(tmp_path):
    root = _idx_dataset(tmp_path / "emnist", prefix="emnist-letters-", test="test")
    assert load_test(root, dataset="idx").x.shape == (100, 1, 12, 16)


def test_idx_kind_checks_headers_and_sizes(tmp_path):
    root = _idx_dataset(tmp_path / "d")
    victim = root / "train-labels-idx1-ubyte"
    victim.write_bytes(victim.read_bytes()[:-5])
    with pytest.raises(DataError, match="truncated") as e:
        load_train(root, dataset="idx")
    assert str(victim) in str(e.value) and "\n" not in str(e.value)


def test_folder_kind_decodes_pngs_of_any_size_and_channels_into_one_uint8_tensor(tmp_path):
    root = _folder_dataset(tmp_path / "pngs")
    assert dataset_shape(root, dataset="folder") == ((3, 32, 32), 3)
    s = load_splits(root, dataset="folder", val=6)
    assert s.train.x.dtype == torch.uint8 and s.train.x.shape == (30, 3, 32, 32) and len(s.val) == 6
    test = load_test(root, dataset="folder")
    assert test.x.shape == (18, 3, 32, 32) and torch.bincount(test.y).tolist() == [6, 6, 6]
    img = np.array(Image.open(root / "train" / "class1" / "000.png"))  # (H, W, C)
    train = load_train(root, dataset="folder")
    assert torch.equal(train.x[12], torch.from_numpy(img).permute(2, 0, 1))  # class1's first image
    info = dataset_info(root, dataset="folder")
    assert len(info.mean) == 3 and info.mean[1] > info.mean[0] - 0.2 and info.classes == 3
    x = prepare(train.x, None, None, False, norm_of(train))  # per-channel normalisation
    assert x.mean(dim=(0, 2, 3)).abs().max().item() < 1e-3


def test_folder_kind_refuses_mixed_sizes_in_one_line(tmp_path):
    root = _folder_dataset(tmp_path / "pngs", per_class=2)
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(root / "train" / "class0" / "999.png")
    with pytest.raises(DataError, match="one size and channel count") as e:
        load_train(root, dataset="folder")
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- checksums over the contents


def test_mnist_gzipped_again_with_another_header_verifies(tmp_path):
    folder = tmp_path / "MNIST" / "raw"
    folder.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        content = gzip.decompress((RAW / f"{name}.gz").read_bytes())
        again = gzip.compress(content, compresslevel=1, mtime=1234567890)  # another header, another archive
        assert again != (RAW / f"{name}.gz").read_bytes()
        (folder / f"{name}.gz").write_bytes(again)
    got, want = load_train(tmp_path), load_train(RAW.parent.parent)
    assert torch.equal(got.x, want.x) and torch.equal(got.y, want.y)
    assert dataset_info(tmp_path).sha256 == dataset_info(RAW.parent.parent).sha256
    assert got.mean == (0.1307,) and got.std == (0.3081,)  # the published constants: numbers as before


DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not (DEBIAN / "train-images-idx3-ubyte.gz").is_file(), reason="dataset-fashion-mnist not installed")
def test_debians_regzipped_fashion_mnist_verifies_and_is_found_when_the_data_dir_lacks_it(tmp_path):
    train = load_train(tmp_path, dataset="fashion")  # an empty data dir: Debian's copy
    assert train.x.shape == (60000, 1, 28, 28) and torch.bincount(train.y).tolist() == [6000] * 10
    assert train.mean == (0.286,) and train.std == (0.353,)


# ---------------------------------------------------------------- through the commands


def test_a_folder_dataset_goes_through_a_search_an_export_a_training_and_an_evaluation(tmp_path, capsys):
    root = _folder_dataset(tmp_path / "pngs")
    storage, out = tmp_path / "s.log", tmp_path / "best.yaml"
    rc = search_main(["--budget", "3000", "--trials", "1", "--epochs", "1", "--train-limit", "24", "--val", "6",
                      "--device", "cpu", "--dataset", "folder", "--data-dir", str(root), "--storage", str(storage),
                      "--out", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    spec = load(out)
    info = dataset_info(root, dataset="folder")
    assert spec.input == (3, 32, 32) and spec.classes == 3
    assert spec.info["dataset"]["name"] == "folder" and spec.info["dataset"]["sha256"] == info.sha256

    result = tmp_path / "r.json"
    assert train_main([str(out), "--data-dir", str(root), "--device", "cpu", "--out", str(result)]) == 0
    doc = json.loads(result.read_text())
    assert doc["dataset"]["name"] == "folder" and doc["dataset"]["sha256"] == info.sha256
    assert doc["test_images"] == 18

    assert evaluate_main([str(out), "--seeds", "1", "--data-dir", str(root), "--device", "cpu",
                          "--epochs", "1"]) == 0
    test = json.loads(out.with_name("best.test.json").read_text())["test"]
    assert test["dataset"]["sha256"] == info.sha256 and test["test_images"] == 18


def test_a_data_dir_that_does_not_match_an_exported_spec_is_refused_in_one_line(tmp_path, capsys):
    root = _folder_dataset(tmp_path / "pngs")
    storage, out = tmp_path / "s.log", tmp_path / "best.yaml"
    assert search_main(["--budget", "3000", "--trials", "1", "--epochs", "1", "--train-limit", "24", "--val", "6",
                        "--device", "cpu", "--dataset", "folder", "--data-dir", str(root), "--storage", str(storage),
                        "--out", str(out), "--quiet"]) == 0
    other = _folder_dataset(tmp_path / "other", per_class=10)
    capsys.readouterr()
    for cmd in (train_main, evaluate_main):
        assert cmd([str(out), "--data-dir", str(other), "--device", "cpu", "--epochs", "1"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--data-dir: " in err and "SHA-256" in err, err
    from results.verify import main as verify_main

    assert verify_main([str(out), "--data-dir", str(other), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --data-dir: ") and err.count("\n") == 1
    # MNIST data for a 3x32x32 spec: another kind, told so, but it does not fit
    assert train_main([str(out), "--dataset", "mnist", "--device", "cpu"]) == 2
    assert "inputs and 3 classes" in capsys.readouterr().err


def test_a_study_resumed_on_other_data_is_refused_in_one_line(tmp_path, capsys):
    a = _idx_dataset(tmp_path / "a", n=120)
    b = _idx_dataset(tmp_path / "b", n=150)
    args = ["--budget", "3000", "--epochs", "1", "--train-limit", "60", "--val", "20", "--device", "cpu",
            "--dataset", "idx", "--storage", str(tmp_path / "s.log"), "--out", str(tmp_path / "best.yaml"), "--quiet"]
    assert search_main([*args, "--trials", "1", "--data-dir", str(a)]) == 0
    spec = load(tmp_path / "best.yaml")
    assert spec.input == (1, 12, 16) and spec.classes == 4 and spec.info["dataset"]["name"] == "idx"
    capsys.readouterr()
    assert search_main([*args, "--trials", "2", "--data-dir", str(b)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --data-dir: study 'budget-3000' was run on idx data") and err.count("\n") == 1
    assert search_main([*args, "--trials", "1", "--dataset", "cifar", "--data-dir", str(a)]) == 2
    assert "--dataset: dataset must be one of mnist, fashion, idx, folder" in capsys.readouterr().err


def test_an_exported_specs_header_names_its_data(tmp_path):
    root = _idx_dataset(tmp_path / "d", n=120)
    out = tmp_path / "best.yaml"
    assert search_main(["--budget", "3000", "--trials", "1", "--epochs", "1", "--train-limit", "60", "--val", "20",
                        "--device", "cpu", "--dataset", "idx", "--data-dir", str(root), "--storage",
                        str(tmp_path / "s.log"), "--out", str(out), "--quiet"]) == 0
    sha = dataset_info(root, dataset="idx").sha256
    assert f"# data: idx, 1x12x16 inputs, 4 classes, SHA-256 {sha[:16]}..." in out.read_text()


def test_download_fetches_missing_files_through_torchvision_into_the_data_dir(tmp_path, monkeypatch):
    """No network here: torchvision's MNIST class is replaced by one that 'downloads' the project's copy."""
    import shutil

    import torchvision.datasets

    calls = []

    class FakeMNIST:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            raw = Path(root) / "MNIST" / "raw"
            raw.mkdir(parents=True, exist_ok=True)
            for f in RAW.glob(f"{'train' if train else 't10k'}-*"):
                shutil.copy2(f, raw / f.name)

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    with pytest.raises(DataError, match="missing"):
        load_train(tmp_path)  # without download: never fetched
    assert not calls
    got = load_test(tmp_path, download=True)
    assert len(got) == 10000 and calls and all(c[2] for c in calls)


@pytest.mark.parametrize("shape", [(1, 20, 24), (4, 10, 10)], ids=["grey-20x24", "rgba-10x10"])
def test_folder_kind_reads_any_channel_count_and_size(tmp_path, shape):
    root = _folder_dataset(tmp_path / "imgs", per_class=4, classes=2, shape=shape)
    assert dataset_shape(root, dataset="folder") == (shape, 2)
    train = load_train(root, dataset="folder")
    assert train.x.shape == (8, *shape) and len(train.mean) in (1, shape[0])
