"""Datasets as uint8 tensors: read once, verified, split, held on the training device.

The kinds (``mnist``, ``fashion``, ``idx``, ``folder``) and how each is found
and checked are in :mod:`trainer.datasets`.  The data directory is, in order
of precedence: the ``data_dir`` argument (``--data-dir``), the
``CNNSEARCH_DATA`` environment variable, the project's own ``data/``.  The
first one given is the only one looked in (only ``fashion`` falls back to
Debian's copy when it holds none of its files): a missing or damaged file
there is a :class:`DataError`, never a silent fall-back to other data.  Only
``download=True`` fetches missing files (through torchvision); tests never do.

Every split carries the per-channel mean and standard deviation of its
dataset's training images (all of them, validation included; rounded to four
decimals, which gives MNIST's published 0.1307 and 0.3081), and
:func:`dataset_info` says what the data are: name, input shape, classes,
those statistics and the SHA-256 of the decoded training images and labels,
the hash recorded in studies, exported specs and result files.

The search path never opens the test files: :func:`load_splits` reads them only
when ``test=True``, and :func:`load_test` is the one other way in.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trainer.datasets import ENV_VAR, FILES, KINDS, DataError, get_kind

__all__ = [
    "DataError", "Split", "Splits", "DATASETS", "FILES", "MEAN", "STD", "ENV_VAR", "Info",
    "resolve_data_dir", "load_train", "load_test", "split_indices", "split", "load_splits", "dataset_info",
    "dataset_shape", "resolve_dataset", "clear_cache",
]

MEAN, STD = 0.1307, 0.3081  # MNIST training-set pixel statistics, on the 0..1 scale (a bare Split's default)
PROJECT_DATA = Path(__file__).resolve().parent.parent / "data"
DATASETS = KINDS  # name -> kind (trainer.datasets)


# ---------------------------------------------------------------- splits


@dataclass(frozen=True)
class Split:
    """Images and labels: ``x`` uint8 (N, C, H, W), ``y`` int64 (N,), on one device.

    ``mean`` / ``std``: per-channel (or one for all channels) statistics of the dataset's training images on
    the 0..1 scale, by which a batch is normalised (default: MNIST's).
    """

    x: torch.Tensor
    y: torch.Tensor
    mean: tuple[float, ...] = (MEAN,)
    std: tuple[float, ...] = (STD,)

    def __post_init__(self) -> None:
        if self.x.dtype != torch.uint8 or self.x.dim() != 4:
            raise ValueError(f"x must be uint8 (N, C, H, W), got {self.x.dtype} {tuple(self.x.shape)}")
        if self.y.dtype != torch.int64 or self.y.shape != (self.x.shape[0],):
            raise ValueError(f"y must be int64 ({self.x.shape[0]},), got {self.y.dtype} {tuple(self.y.shape)}")
        if self.x.device != self.y.device:
            raise ValueError(f"x and y must be on one device, got {self.x.device} and {self.y.device}")
        if len(self.mean) not in (1, self.x.shape[1]) or len(self.std) != len(self.mean) or min(self.std) <= 0:
            raise ValueError(f"mean and std must give 1 or {self.x.shape[1]} channels (std > 0), "
                             f"got {self.mean} and {self.std}")

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def device(self) -> torch.device:
        return self.x.device

    def to(self, device: str | torch.device) -> Split:
        return Split(self.x.to(device), self.y.to(device), self.mean, self.std)

    def head(self, n: int | None) -> Split:
        """The first ``n`` examples (all of them when ``n`` is None or larger than the split)."""
        if n is None or n >= len(self):
            return self
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        return Split(self.x[:n], self.y[:n], self.mean, self.std)

    def take(self, idx: torch.Tensor) -> Split:
        return Split(self.x[idx], self.y[idx], self.mean, self.std)

    @staticmethod
    def cat(*splits: Split) -> Split:
        return Split(torch.cat([s.x for s in splits]), torch.cat([s.y for s in splits]), splits[0].mean, splits[0].std)


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


@dataclass(frozen=True)
class Info:
    """What a dataset is: recorded in studies, exported specs and result files."""

    name: str
    input: tuple[int, int, int]   # (C, H, W)
    classes: int
    mean: tuple[float, ...]       # per channel, 0..1 scale, of the training images
    std: tuple[float, ...]
    sha256: str                   # of the decoded training images (N, C, H, W) and labels
    train_images: int

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "input": list(self.input), "classes": self.classes,
                "mean": list(self.mean), "std": list(self.std), "train_images": self.train_images}


# (name, id(x), id(y)) -> (x, y, Info): the tensors are held, so their ids cannot be reused by other data
_info_cache: dict[tuple[str, int, int], tuple[torch.Tensor, torch.Tensor, Info]] = {}


def _info(name: str, x: torch.Tensor, y: torch.Tensor) -> Info:
    key = (name, id(x), id(y))
    if key not in _info_cache or _info_cache[key][0] is not x or _info_cache[key][1] is not y:
        h = hashlib.sha256(f"{tuple(x.shape)}".encode())
        h.update(x.contiguous().numpy().tobytes())
        h.update(y.contiguous().numpy().tobytes())
        c = x.shape[1]
        s1 = torch.zeros(c, dtype=torch.float64)
        s2 = torch.zeros(c, dtype=torch.float64)
        for i in range(0, len(x), 4096):  # exact integer sums per chunk, in float64 across chunks
            chunk = x[i:i + 4096].long()  # (b, C, H, W)
            s1 += chunk.sum(dim=(0, 2, 3)).double()
            s2 += (chunk * chunk).sum(dim=(0, 2, 3)).double()
        n = max(1, len(x) * x.shape[2] * x.shape[3])
        mean = s1 / n
        std = (s2 / n - mean * mean).clamp_min(0).sqrt()
        mean_t = tuple(round(float(v) / 255, 4) for v in mean)
        std_t = tuple(max(round(float(v) / 255, 4), 1e-4) for v in std)
        if c > 1 and len(set(mean_t)) == 1 and len(set(std_t)) == 1:
            mean_t, std_t = mean_t[:1], std_t[:1]
        _info_cache[key] = (x, y, Info(name, (c, x.shape[2], x.shape[3]), int(y.max()) + 1 if len(y) else 0,
                                       mean_t, std_t, h.hexdigest(), len(x)))
    return _info_cache[key][2]


def _train_arrays(data_dir: str | os.PathLike[str] | None, dataset: str,
                  download: bool) -> tuple[torch.Tensor, torch.Tensor, Info]:
    kind = get_kind(dataset)
    x, y = kind.read(resolve_data_dir(data_dir), "train", download)
    info = _info(dataset, x, y)
    if kind.fixed_classes:
        info = Info(**{**info.__dict__, "classes": kind.fixed_classes})
    return x, y, info


def dataset_info(data_dir: str | os.PathLike[str] | None = None, *, dataset: str = "mnist",
                 download: bool = False) -> Info:
    """Name, shape, classes, statistics and hash of a dataset's training images (never its test files)."""
    return _train_arrays(data_dir, dataset, download)[2]


def dataset_shape(data_dir: str | os.PathLike[str] | None = None, *, dataset: str = "mnist",
                  download: bool = False) -> tuple[tuple[int, int, int], int]:
    """(input (C, H, W), classes), from headers where the kind can: before the data are decoded."""
    return get_kind(dataset).shape(resolve_data_dir(data_dir), download)


def resolve_dataset(dataset: str | None, recorded: Any, data_dir: str | os.PathLike[str] | None, *,
                    input: tuple[int, ...] | None = None, classes: int | None = None,
                    download: bool = False) -> Info:
    """The dataset a command trains or evaluates on: ``dataset`` (``--dataset``), else the one ``recorded``
    (a spec's ``info["dataset"]``, an ``Info.record()``), else MNIST.

    Refused with a one-line :class:`DataError` when the name is unknown, when the data of the recorded kind
    have another content hash than the recorded one (another data dir, other files), or when the spec's
    ``input`` / ``classes`` do not fit the data.
    """
    rec = recorded if isinstance(recorded, dict) else {}
    name = dataset or rec.get("name") or "mnist"
    try:
        get_kind(name)
    except ValueError as e:
        raise DataError(f"--dataset: {e}") from None
    info = dataset_info(data_dir, dataset=name, download=download)
    if rec.get("sha256") and rec.get("name") == name and rec["sha256"] != info.sha256:
        raise DataError(f"--data-dir: {resolve_data_dir(data_dir)} holds {name} data with SHA-256 "
                        f"{info.sha256[:12]}..., not the {rec['sha256'][:12]}... the spec was trained on; "
                        "give the data dir it was trained on")
    if input is not None and (tuple(input) != info.input or classes != info.classes):
        raise DataError(f"--dataset: the spec takes {'x'.join(map(str, input))} inputs and {classes} classes, but "
                        f"the {name} data in {resolve_data_dir(data_dir)} are "
                        f"{'x'.join(map(str, info.input))} with {info.classes} classes")
    return info


def clear_cache() -> None:
    """Forget every decoded file and computed :class:`Info` of this process (the next load reads the files)."""
    from trainer import datasets

    datasets._idx_cache.clear()
    datasets._folder_cache.clear()
    _info_cache.clear()


def _load(part: str, data_dir: str | os.PathLike[str] | None, dataset: str, download: bool) -> Split:
    x, y, info = _train_arrays(data_dir, dataset, download)
    if part == "test":
        tx, ty = get_kind(dataset).read(resolve_data_dir(data_dir), "test", download)
        if tx.shape[1:] != x.shape[1:]:
            raise DataError(f"{resolve_data_dir(data_dir)}: test images are {tuple(tx.shape[1:])}, "
                            f"training images {tuple(x.shape[1:])}")
        if len(ty) and int(ty.max()) >= info.classes:
            raise DataError(f"{resolve_data_dir(data_dir)}: test labels reach {int(ty.max())}, "
                            f"the training labels only {info.classes - 1}")
        x, y = tx, ty
    return Split(x, y, info.mean, info.std)


def load_train(data_dir: str | os.PathLike[str] | None = None, *, dataset: str = "mnist",
               download: bool = False) -> Split:
    """All training images (train + validation: MNIST's 60,000), on the CPU.

    The tensors are shared with an in-process cache: treat them as read-only.
    """
    return _load("train", data_dir, dataset, download)


def load_test(data_dir: str | os.PathLike[str] | None = None, *, dataset: str = "mnist",
              download: bool = False) -> Split:
    """The test images (MNIST's 10,000), on the CPU.  Only the final report reads them, never the search.

    They are normalised by the training images' statistics, so these are read too.
    """
    return _load("test", data_dir, dataset, download)


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
