"""trainer.data: reading real copies of the IDX files, the checks that catch damaged ones, and the split."""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import pytest
import torch

from trainer import data as D
from trainer.data import DataError, Split, Splits, load_splits, load_test, load_train, split, split_indices

RAW = Path(__file__).resolve().parent.parent / "data" / "MNIST" / "raw"
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]   # /work/shared/data/README.md
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _copy(dst: Path, names: tuple[str, ...] = D.FILES, gz: bool = True, layout: bool = True) -> Path:
    """Copies of the project's files under ``dst`` (MNIST/raw/ or flat), gzipped or not."""
    folder = dst / "MNIST" / "raw" if layout else dst
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        if gz:
            shutil.copyfile(RAW / f"{name}.gz", folder / f"{name}.gz")
        else:
            with gzip.open(RAW / f"{name}.gz", "rb") as fin, open(folder / name, "wb") as fout:
                shutil.copyfileobj(fin, fout)
    return folder


@pytest.fixture(scope="module")
def mnist() -> Split:
    return load_train(RAW.parent.parent)


def test_the_project_copy_loads_with_the_published_label_counts(mnist):
    test = load_test(RAW.parent.parent)
    assert mnist.x.shape == (60000, 1, 28, 28) and mnist.x.dtype == torch.uint8
    assert mnist.y.shape == (60000,) and mnist.y.dtype == torch.int64
    assert torch.bincount(mnist.y).tolist() == TRAIN_COUNTS
    assert torch.bincount(test.y).tolist() == TEST_COUNTS
    assert abs(mnist.x.float().mean().item() / 255 - D.MEAN) < 1e-4
    assert abs((mnist.x.float() / 255).std().item() - D.STD) < 1e-4


@pytest.mark.parametrize("gz,layout", [(True, True), (False, True), (False, False)],
                         ids=["gz-in-MNIST/raw", "raw-in-MNIST/raw", "raw-flat"])
def test_gzipped_and_uncompressed_copies_in_either_layout_read_the_same(tmp_path, mnist, gz, layout):
    _copy(tmp_path, ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), gz=gz, layout=layout)
    got = load_train(tmp_path)
    assert torch.equal(got.x, mnist.x) and torch.equal(got.y, mnist.y)


def test_the_data_dir_comes_from_the_argument_then_the_environment_then_the_project(tmp_path, monkeypatch):
    monkeypatch.delenv(D.ENV_VAR, raising=False)
    assert D.resolve_data_dir() == D.PROJECT_DATA
    monkeypatch.setenv(D.ENV_VAR, str(tmp_path))
    assert D.resolve_data_dir() == tmp_path
    assert D.resolve_data_dir("elsewhere") == Path("elsewhere")
    with pytest.raises(DataError, match=str(tmp_path)):  # the environment's folder is empty: no fall-back
        load_train()


def test_a_missing_file_names_itself_and_the_fix(tmp_path):
    _copy(tmp_path, ("train-images-idx3-ubyte",))
    with pytest.raises(DataError) as e:
        load_train(tmp_path)
    msg = str(e.value)
    assert "train-labels-idx1-ubyte" in msg and "missing" in msg and "--data-dir" in msg
    assert "\n" not in msg


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_a_truncated_file_is_a_data_error_naming_it(tmp_path, gz):
    folder = _copy(tmp_path, ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), gz=gz)
    victim = folder / ("train-images-idx3-ubyte.gz" if gz else "train-images-idx3-ubyte")
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated") as e:
        load_train(tmp_path)
    assert str(victim) in str(e.value) and "\n" not in str(e.value)


def test_one_corrupt_byte_fails_the_md5_check(tmp_path):
    folder = _copy(tmp_path, ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), gz=False)
    victim = folder / "train-labels-idx1-ubyte"
    raw = bytearray(victim.read_bytes())
    raw[1000] = (raw[1000] + 1) % 10  # still a valid label: only the checksum can tell
    victim.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="MD5") as e:
        load_train(tmp_path)
    assert str(victim) in str(e.value)


def test_one_corrupt_byte_in_a_gzip_file_is_caught(tmp_path):
    folder = _copy(tmp_path, ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"))
    victim = folder / "train-labels-idx1-ubyte.gz"
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    victim.write_bytes(bytes(raw))
    with pytest.raises(DataError) as e:  # a gzip CRC / stream error or, if it inflates, the MD5
        load_train(tmp_path)
    assert str(victim) in str(e.value)


def test_a_file_that_is_not_idx_is_refused(tmp_path):
    folder = _copy(tmp_path, ("train-images-idx3-ubyte",))
    (folder / "train-labels-idx1-ubyte").write_bytes(b"<html>not found</html>" * 100)
    with pytest.raises(DataError, match="not an IDX label file"):
        load_train(tmp_path)


def test_the_search_path_never_needs_the_test_files(tmp_path):
    _copy(tmp_path, ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"))  # no t10k files at all
    s = load_splits(tmp_path)
    assert s.test is None and (len(s.train), len(s.val)) == (55000, 5000)
    with pytest.raises(DataError, match="t10k-images"):
        load_splits(tmp_path, test=True)


def test_a_split_is_a_deterministic_partition():
    tr, va = split_indices(60000, 5000, seed=0)
    assert (len(tr), len(va)) == (55000, 5000)
    assert torch.equal(torch.cat([tr, va]).sort().values, torch.arange(60000))  # disjoint, and covers all
    tr2, va2 = split_indices(60000, 5000, seed=0)
    assert torch.equal(tr, tr2) and torch.equal(va, va2)
    assert not torch.equal(split_indices(60000, 5000, seed=1)[1], va)
    # pinned: a search and its later verification (another process, another machine) agree on the split
    assert va[:5].tolist() == [1, 3, 47, 49, 80] and tr[:5].tolist() == [0, 2, 4, 5, 6]


def test_split_and_limit_select_the_right_images(mnist):
    train, val = split(mnist, val=5000, seed=3)
    tr_idx, va_idx = split_indices(60000, 5000, seed=3)
    assert torch.equal(val.x, mnist.x[va_idx]) and torch.equal(train.y, mnist.y[tr_idx])
    s = load_splits(RAW.parent.parent, val=1000, seed=3, limit=500)
    assert isinstance(s, Splits) and (len(s.train), len(s.val)) == (500, 1000)
    tr_idx, va_idx = split_indices(60000, 1000, seed=3)
    assert torch.equal(s.train.x, mnist.x[tr_idx[:500]]) and torch.equal(s.val.y, mnist.y[va_idx])
    with pytest.raises(ValueError, match="val"):
        split(mnist, val=60000)
    with pytest.raises(ValueError, match="limit"):
        load_splits(RAW.parent.parent, limit=0)


def test_a_split_checks_its_tensors():
    with pytest.raises(ValueError, match="uint8"):
        Split(torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="int64"):
        Split(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), torch.zeros(3, dtype=torch.long))


def _idx(path: Path, images: bool, n: int, gz: bool) -> None:
    head = struct.pack(">4I", 2051, n, 28, 28) if images else struct.pack(">2I", 2049, n)
    body = bytes(n * 784) if images else bytes(i % 10 for i in range(n))
    path.write_bytes(gzip.compress(head + body, mtime=0) if gz else head + body)


def test_idx_files_without_published_sums_get_header_and_size_checks(tmp_path):
    _idx(tmp_path / "train-images-idx3-ubyte", True, 600, gz=False)
    _idx(tmp_path / "train-labels-idx1-ubyte", False, 600, gz=False)
    got = load_train(tmp_path, dataset="idx")
    assert got.x.shape == (600, 1, 28, 28) and got.y[:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    _idx(tmp_path / "train-labels-idx1-ubyte", False, 599, gz=False)
    with pytest.raises(DataError, match="599 labels for the 600 images"):
        load_train(tmp_path, dataset="idx")


def test_fashion_mnist_is_checked_by_the_sums_of_its_contents(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    _idx(raw / "train-images-idx3-ubyte.gz", True, 60000, gz=True)  # well formed, but not the real images
    _idx(raw / "train-labels-idx1-ubyte.gz", False, 60000, gz=True)
    with pytest.raises(DataError, match="SHA256 of the contents .* expected c59f468a"):
        load_train(tmp_path, dataset="fashion")
    with pytest.raises(ValueError, match="dataset must be one of mnist, fashion, idx, folder"):
        load_train(tmp_path, dataset="cifar")
