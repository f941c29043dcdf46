"""MNIST and Fashion-MNIST as uint8 tensors: read once, verified, split, held on the training device.

Files are the four IDX files torchvision uses, gzipped or not, found under a
data directory in torchvision's layout (``DIR/MNIST/raw/<file>``,
``DIR/FashionMNIST/raw/<file>``) or directly in ``DIR``.  The directory is, in
order of precedence: the ``data_dir`` argument (``--data-dir``), the
``CNNSEARCH_DATA`` environment variable, the project's own ``data/``.  The
first one given is the only one looked in: a missing or damaged file there is
a :class:`DataError`, never a silent fall-back to other data.  Only
``download=True`` fetches missing files (through torchvision); tests never do.

Checks, on first read in a process (the decoded tensors are then cached by
path, size and modification time, so later loads cost nothing):

* MNIST: the MD5 of each uncompressed file against the published sums.
* Fashion-MNIST: the MD5 of each ``.gz`` file against the sums torchvision
  records (the sums of the uncompressed files are not published); an
  uncompressed Fashion-MNIST file gets the header and size checks only.
* Every file: the IDX header (magic number, count, 28 x 28) and the exact size,
  and labels in 0..9.

The search path never opens the test files: :func:`load_splits` reads them only
when ``test=True``, and :func:`load_test` is the one other way in.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = [
    "DataError", "Split", "Splits", "DATASETS", "FILES", "MEAN", "STD", "ENV_VAR",
    "resolve_data_dir", "load_train", "load_test", "split_indices", "split", "load_splits",
]

MEAN, STD = 0.1307, 0.3081  # MNIST training-set pixel statistics, on the 0..1 scale
ENV_VAR = "CNNSEARCH_DATA"
PROJECT_DATA = Path(__file__).resolve().parent.parent / "data"


class DataError(Exception):
    """A data file is missing, truncated or corrupt; the message is one line naming the file and the fix."""


@dataclass(frozen=True)
class _Dataset:
    folder: str                    # torchvision's folder name under the data dir
    md5: dict[str, str]            # uncompressed file -> MD5 of its contents
    gz_md5: dict[str, str]         # file.gz -> MD5 of the archive


FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

DATASETS: dict[str, _Dataset] = {
    "mnist": _Dataset(
        folder="MNIST",
        md5={
            "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
            "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
            "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
            "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
        },
        gz_md5={},  # the content sums above cover every copy, recompressed ones too
    ),
    "fashion": _Dataset(
        folder="FashionMNIST",
        md5={},
        gz_md5={  # torchvision.datasets.FashionMNIST.resources
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
}


# ---------------------------------------------------------------- splits


@dataclass(frozen=True)
class Split:
    """Images and labels: ``x`` uint8 (N, 1, 28, 28), ``y`` int64 (N,), on one device."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.dtype != torch.uint8 or self.x.dim() != 4:
            raise ValueError(f"x must be uint8 (N, C, H, W), got {self.x.dtype} {tuple(self.x.shape)}")
        if self.y.dtype != torch.int64 or self.y.shape != (self.x.shape[0],):
            raise ValueError(f"y must be int64 ({self.x.shape[0]},), got {self.y.dtype} {tuple(self.y.shape)}")
        if self.x.device != self.y.device:
            raise ValueError(f"x and y must be on one device, got {self.x.device} and {self.y.device}")

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def device(self) -> torch.device:
        return self.x.device

    def to(self, device: str | torch.device) -> Split:
        return Split(self.x.to(device), self.y.to(device))

    def head(self, n: int | None) -> Split:
        """The first ``n`` examples (all of them when ``n`` is None or larger than the split)."""
        if n is None or n >= len(self):
            return self
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        return Split(self.x[:n], self.y[:n])

    def take(self, idx: torch.Tensor) -> Split:
        return Split(self.x[idx], self.y[idx])

    @staticmethod
    def cat(*splits: Split) -> Split:
        return Split(torch.cat([s.x for s in splits]), torch.cat([s.y for s in splits]))


@dataclass(frozen=True)
class Splits:
    """Train and validation from the 60,000 training images; ``test`` only when asked for."""

    train: Split
    val: Split
    test: Split | None = None

    def to(self, device: str | torch.device) -> Splits:
        return Splits(self.train.to(device), self.val.to(device), None if self.test is None else self.test.to(device))


# ---------------------------------------------------------------- files


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data directory: ``data_dir``, else ``$CNNSEARCH_DATA``, else the project's ``data/``."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir)
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return PROJECT_DATA


def _dataset(name: str) -> _Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {name!r}") from None


def _find(root: Path, ds: _Dataset, name: str) -> Path | None:
    for folder in (root / ds.folder / "raw", root):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _download(root: Path, dataset: str) -> None:
    from torchvision import datasets  # only here: reading never needs torchvision

    cls = datasets.MNIST if dataset == "mnist" else datasets.FashionMNIST
    try:
        cls(str(root), train=True, download=True)
        cls(str(root), train=False, download=True)
    except Exception as e:  # network errors come in many classes
        msg = " ".join(str(e).split())
        raise DataError(f"{root}: download of {dataset} failed ({msg[:200]}); "
                        f"put the four IDX files under {root / _dataset(dataset).folder / 'raw'}") from None


def _locate(root: Path, dataset: str, name: str, download: bool) -> Path:
    ds = _dataset(dataset)
    path = _find(root, ds, name)
    if path is None and download:
        _download(root, dataset)
        path = _find(root, ds, name)
    if path is None:
        raise DataError(f"{root / ds.folder / 'raw' / name}[.gz]: missing; put the {dataset} IDX files there "
                        f"(or directly in the data dir), pass --data-dir or set {ENV_VAR}, "
                        "or let torchvision download them (download=True)")
    return path


_IMAGES, _LABELS = 2051, 2049  # IDX magic numbers: unsigned bytes, 3 and 1 dimensions
_COUNTS = {"train": 60000, "t10k": 10000}
_cache: dict[tuple[str, int, int], torch.Tensor] = {}


def _read(path: Path, ds: _Dataset) -> torch.Tensor:
    """One IDX file, checked, as a uint8 tensor (images (N, 1, 28, 28)) or an int64 one (labels (N,))."""
    try:
        st = path.stat()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror}); replace the file") from None
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _cache:
        return _cache[key]
    name = path.name.removesuffix(".gz")
    fix = "delete it and put a fresh copy there"
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror}); {fix}") from None
    if path.suffix == ".gz":
        want_gz = ds.gz_md5.get(path.name)
        if want_gz and hashlib.md5(raw).hexdigest() != want_gz:
            raise DataError(f"{path}: MD5 is {hashlib.md5(raw).hexdigest()}, expected {want_gz}: "
                            f"the archive is corrupt or truncated; {fix}")
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as e:
            raise DataError(f"{path}: truncated or corrupt gzip data ({e}); {fix}") from None

    images = "images" in name
    count = _COUNTS[name.split("-")[0]]
    size = 16 + count * 28 * 28 if images else 8 + count
    head = struct.unpack(">4I", raw[:16]) if len(raw) >= 16 else ()
    want_head = (_IMAGES, count, 28, 28) if images else (_LABELS, count)
    if tuple(head[: len(want_head)]) != want_head:
        raise DataError(f"{path}: not an IDX {'image' if images else 'label'} file of {count} "
                        f"{'28x28 images' if images else 'labels'} (header {head}); {fix}")
    if len(raw) != size:
        raise DataError(f"{path}: {'truncated' if len(raw) < size else 'too long'}: "
                        f"{len(raw)} bytes, expected {size}; {fix}")
    want = ds.md5.get(name)
    if want and (got := hashlib.md5(raw).hexdigest()) != want:
        raise DataError(f"{path}: MD5 of the contents is {got}, expected {want}: the file is corrupt; {fix}")

    body = torch.frombuffer(bytearray(raw), dtype=torch.uint8, offset=16 if images else 8)
    if images:
        out = body.view(count, 1, 28, 28)  # (N, 1, 28, 28)
    else:
        out = body.long()                  # (N,)
        if int(out.max()) > 9:
            raise DataError(f"{path}: labels outside 0..9; {fix}")
    _cache[key] = out
    return out


def _load(prefix: str, data_dir: str | os.PathLike[str] | None, dataset: str, download: bool) -> Split:
    root = resolve_data_dir(data_dir)
    ds = _dataset(dataset)
    x = _read(_locate(root, dataset, f"{prefix}-images-idx3-ubyte", download), ds)
    y = _read(_locate(root, dataset, f"{prefix}-labels-idx1-ubyte", download), ds)
    return Split(x, y)


def load_train(data_dir: str | os.PathLike[str] | None = None, *, dataset: str = "mnist",
               download: bool = False) -> Split:
    """All 60,000 training images (train + validation), on the CPU.

    The tensors are shared with an in-process cache: treat them as read-only.
    """
    return _load("train", data_dir, dataset, download)


def load_test(data_dir: str | os.PathLike[str] | None = None, *, dataset: str = "mnist",
              download: bool = False) -> Split:
    """The 10,000 test images, on the CPU.  Only the final report reads them, never the search."""
    return _load("t10k", data_dir, dataset, download)


def split_indices(n: int, val: int = 5000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted (train, val) indices partitioning ``range(n)``: a seeded permutation, the same on every machine."""
    if isinstance(val, bool) or not isinstance(val, int) or not 0 < val < n:
        raise ValueError(f"val must be an integer between 1 and {n - 1}, got {val!r}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))  # (n,)
    return perm[val:].sort().values, perm[:val].sort().values


def split(data: Split, val: int = 5000, seed: int = 0) -> tuple[Split, Split]:
    """A deterministic, seeded partition into (train, val); each keeps the original order of its images."""
    train_idx, val_idx = split_indices(len(data), val, seed)
    return data.take(train_idx.to(data.device)), data.take(val_idx.to(data.device))


def load_splits(data_dir: str | os.PathLike[str] | None = None, *, dataset: str = "mnist", val: int = 5000,
                seed: int = 0, limit: int | None = None, test: bool = False,
                device: str | torch.device = "cpu", download: bool = False) -> Splits:
    """Train / validation (default 55,000 / 5,000) on ``device``; the test split only with ``test=True``.

    ``limit`` keeps the first ``limit`` images of the train split (validation is untouched).
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    train, valid = split(load_train(data_dir, dataset=dataset, download=download), val=val, seed=seed)
    held = load_test(data_dir, dataset=dataset, download=download) if test else None
    return Splits(train.head(limit), valid, held).to(device)
