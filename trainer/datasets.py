"""The datasets the trainer reads, one registry entry per kind: where the files are, how they are checked and decoded.

=========  ===================================================================
``mnist``  the four IDX files (``DIR/MNIST/raw/`` or ``DIR``); MD5 of each
           file's decompressed contents against the published sums
``fashion``  Fashion-MNIST (``DIR/FashionMNIST/raw/`` or ``DIR``, else
           Debian's ``/usr/share/datasets/fashion-mnist/``); SHA-256 of the
           decompressed contents (see ``_FASHION_SHA256``)
``idx``    any four IDX files in ``DIR`` (KMNIST, EMNIST, one's own):
           ``*train-images-idx3-ubyte[.gz]``, ``*train-labels-idx1-ubyte``,
           ``*t10k-``/``*test-images-idx3-ubyte``, ...; classes from the labels
``folder``  ``DIR/train/<class>/*.png|jpg`` and ``DIR/test/<class>/*``: any
           size and channel count (one for all images), classes sorted by name
=========  ===================================================================

Checksums are over decompressed contents, so a copy gzipped again (Debian's)
verifies; a dataset without known sums gets the header and size checks.  A
kind returns uint8 images (N, C, H, W) and int64 labels (N,) on the CPU; what
identifies the data (:class:`Info`: shape, classes, per-channel mean and std
of the training images, SHA-256 of the decoded training images and labels)
is computed by :mod:`trainer.data`.  A new kind is one class and one
:func:`register` call.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = ["DataError", "Kind", "IdxKind", "FolderKind", "KINDS", "register", "get_kind", "FILES", "ENV_VAR"]

ENV_VAR = "CNNSEARCH_DATA"
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
PARTS = ("train", "test")
_FIX = "delete it and put a fresh copy there"


class DataError(Exception):
    """A data file is missing, truncated or corrupt; the message is one line naming the file and the fix."""


Arrays = tuple[torch.Tensor, torch.Tensor]  # uint8 (N, C, H, W), int64 (N,)


class Kind:
    """One kind of dataset: ``shape`` is cheap (headers only), ``read`` decodes one part ("train" or "test")."""

    name: str = ""
    fixed_classes: int | None = None

    def shape(self, root: Path, download: bool = False) -> tuple[tuple[int, int, int], int]:
        """(input (C, H, W), classes) from headers and labels, without decoding the images where it can."""
        raise NotImplementedError

    def read(self, root: Path, part: str, download: bool = False) -> Arrays:
        raise NotImplementedError


KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    if not kind.name or kind.name in KINDS:
        raise ValueError(f"dataset kind {kind.name!r} is unnamed or registered twice")
    KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"dataset must be one of {', '.join(KINDS)}; got {name!r}") from None


# ---------------------------------------------------------------- IDX files

_IMAGES, _LABELS = 2051, 2049  # IDX magic numbers: unsigned bytes, 3 and 1 dimensions
_idx_cache: dict[tuple[str, int, int], torch.Tensor] = {}


def _decompressed(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror}); {_FIX}") from None
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as e:
            raise DataError(f"{path}: truncated or corrupt gzip data ({e}); {_FIX}") from None
    return raw


def read_idx(path: Path, images: bool, *, count: int | None = None, hw: tuple[int, int] | None = None,
             sums: dict[str, tuple[str, str]] | None = None) -> torch.Tensor:
    """One IDX file, checked, as uint8 (N, 1, H, W) images or int64 (N,) labels (cached by path, size, mtime).

    ``count`` / ``hw``: what the header must say; ``sums``: file name -> (algorithm, hex digest) of the
    decompressed contents.
    """
    try:
        st = path.stat()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror}); replace the file") from None
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _idx_cache:
        return _idx_cache[key]
    raw = _decompressed(path)
    what = "image" if images else "label"
    dims = 3 if images else 1
    head = struct.unpack(f">{1 + dims}I", raw[:4 * (1 + dims)]) if len(raw) >= 4 * (1 + dims) else ()
    magic_ok = bool(head) and head[0] == (_IMAGES if images else _LABELS)
    want = ((_IMAGES, count, *(hw or ())) if images else (_LABELS, count)) if count else ()
    if not magic_ok or (want and tuple(head[:len(want)]) != want):
        items = f"{hw[0]}x{hw[1]} images" if images and hw else f"{what}s"
        of = f" of {count} {items}" if count else ""
        raise DataError(f"{path}: not an IDX {what} file{of} (header {head}); {_FIX}")
    n = head[1]
    shape = (n, 1, head[2], head[3]) if images else (n,)
    size = 4 * (1 + dims) + n * (head[2] * head[3] if images else 1)
    if len(raw) != size:
        raise DataError(f"{path}: {'truncated' if len(raw) < size else 'too long'}: "
                        f"{len(raw)} bytes, expected {size}; {_FIX}")
    known = (sums or {}).get(path.name.removesuffix(".gz"))
    if known:
        algo, digest = known
        if (got := hashlib.new(algo, raw).hexdigest()) != digest:
            raise DataError(f"{path}: {algo.upper()} of the contents is {got}, expected {digest}: "
                            f"the file is corrupt; {_FIX}")
    body = torch.frombuffer(bytearray(raw), dtype=torch.uint8, offset=4 * (1 + dims))
    out = body.view(shape) if images else body.long()  # (N, 1, H, W) or (N,)
    _idx_cache[key] = out
    return out


@dataclass(frozen=True)
class IdxKind(Kind):
    """Four IDX files: ``folder`` (torchvision's name under the data dir, or "" for the data dir itself)."""

    name: str = ""
    folder: str = ""
    sums: dict[str, tuple[str, str]] | None = None  # file -> (algorithm, digest of the decompressed contents)
    counts: tuple[int, int] | None = None           # (train, test) image counts the headers must give
    hw: tuple[int, int] | None = None
    fixed_classes: int | None = None
    torchvision: str = ""                            # the torchvision dataset class that downloads it
    fallback: tuple[str, ...] = ()                   # folders looked in when the data dir has none of the files

    def _dirs(self, root: Path) -> list[Path]:
        return [root / self.folder / "raw", root] if self.folder else [root]

    def _candidates(self, root: Path, part: str, images: bool) -> list[Path]:
        what = "images-idx3" if images else "labels-idx1"
        prefixes = ("train",) if part == "train" else ("t10k", "test")
        found = []
        for d in self._dirs(root):
            if not d.is_dir():
                continue
            exact = [d / f"{p}-{what}-ubyte{z}" for p in prefixes for z in ("", ".gz")]
            hits = [p for p in exact if p.is_file()]
            if not hits and not self.folder:  # any IDX files: a prefix (emnist-balanced-) allowed
                hits = sorted(p for pre in prefixes for z in ("", ".gz") for p in d.glob(f"*-{pre}-{what}-ubyte{z}"))
            if hits:
                found.append(hits)
        if not found:
            return []
        hits = found[0]
        if len(hits) > 1 and not self.folder:
            raise DataError(f"{hits[0].parent}: several {part} {what.split('-')[0]} files "
                            f"({', '.join(p.name for p in hits)}); keep one")
        return hits[:1]

    def _base(self, root: Path) -> Path:
        """The data dir, or a fall-back folder when the data dir holds none of the files."""
        if not self.fallback or any(self._candidates(root, part, im) for part in PARTS for im in (True, False)):
            return root
        for alt in map(Path, self.fallback):
            if any(self._candidates(alt, part, im) for part in PARTS for im in (True, False)):
                return alt
        return root

    def _locate(self, root: Path, part: str, images: bool, download: bool) -> Path:
        base = self._base(root)
        hits = self._candidates(base, part, images)
        if not hits and download and self.torchvision:
            self._download(root)
            hits = self._candidates(root, part, images)
        if not hits:
            name = f"{'train' if part == 'train' else 't10k'}-{'images-idx3' if images else 'labels-idx1'}-ubyte"
            where = root / self.folder / "raw" if self.folder else root
            raise DataError(f"{where / name}[.gz]: missing; put the {self.name} IDX files there "
                            f"(or directly in the data dir), pass --data-dir or set {ENV_VAR}"
                            + (", or let torchvision download them (download=True)" if self.torchvision else ""))
        return hits[0]

    def _download(self, root: Path) -> None:
        from torchvision import datasets  # only here: reading never needs torchvision

        cls = getattr(datasets, self.torchvision)
        try:
            cls(str(root), train=True, download=True)
            cls(str(root), train=False, download=True)
        except Exception as e:  # network errors come in many classes
            msg = " ".join(str(e).split())
            raise DataError(f"{root}: download of {self.name} failed ({msg[:200]}); "
                            f"put the four IDX files under {root / self.folder / 'raw'}") from None

    def _count(self, part: str) -> int | None:
        return None if self.counts is None else self.counts[PARTS.index(part)]

    def read(self, root: Path, part: str, download: bool = False) -> Arrays:
        xp = self._locate(root, part, True, download)
        yp = self._locate(root, part, False, download)
        count = self._count(part)
        x = read_idx(xp, True, count=count, hw=self.hw, sums=self.sums)
        y = read_idx(yp, False, count=count, sums=self.sums)
        if len(x) != len(y):
            raise DataError(f"{yp}: {len(y)} labels for the {len(x)} images of {xp.name}; {_FIX}")
        if self.fixed_classes is not None and len(y) and int(y.max()) >= self.fixed_classes:
            raise DataError(f"{yp}: labels outside 0..{self.fixed_classes - 1}; {_FIX}")
        return x, y

    def shape(self, root: Path, download: bool = False) -> tuple[tuple[int, int, int], int]:
        if self.hw is not None and self.fixed_classes is not None:
            return (1, *self.hw), self.fixed_classes
        xp = self._locate(root, "train", True, download)
        x = read_idx(xp, True, count=self._count("train"), hw=self.hw, sums=self.sums)
        y = read_idx(self._locate(root, "train", False, download), False, count=self._count("train"),
                     sums=self.sums)
        return (1, x.shape[2], x.shape[3]), self.fixed_classes or int(y.max()) + 1


# Fashion-MNIST's published sums (torchvision.datasets.FashionMNIST.resources) are of the gzip archives
# (train-images 8d4fb7e6c68d591d4c3dfef9ec88bf0d, train-labels 25c81989df183df01b3e8a0aad5dffbe, t10k-images
# bef4ecab320f06d8554ea6380940ec79, t10k-labels bb300cfdad3c16e7a12a480ee83cd310): a copy gzipped again (Debian's
# dataset-fashion-mnist 0.0~git20200523.55506a9-1) has other ones.  No sums of the contents are published; these
# are of the contents of Debian's files, which pass the header and size checks and have 6,000 training and 1,000
# test images of each of the ten classes, the first training labels 9 0 0 3 0 as the dataset's paper shows.
_FASHION_SHA256 = {
    "train-images-idx3-ubyte": ("sha256", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    "train-labels-idx1-ubyte": ("sha256", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    "t10k-images-idx3-ubyte": ("sha256", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    "t10k-labels-idx1-ubyte": ("sha256", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}

register(IdxKind(
    name="mnist", folder="MNIST", counts=(60000, 10000), hw=(28, 28), fixed_classes=10, torchvision="MNIST",
    sums={  # published MD5s of the uncompressed files: they cover every copy, recompressed ones too
        "train-images-idx3-ubyte": ("md5", "6bbc9ace898e44ae57da46a324031adb"),
        "train-labels-idx1-ubyte": ("md5", "a25bea736e30d166cdddb491f175f624"),
        "t10k-images-idx3-ubyte": ("md5", "2646ac647ad5339dbf082846283269ea"),
        "t10k-labels-idx1-ubyte": ("md5", "27ae3e4e09519cfbb04c329615203637"),
    }))
register(IdxKind(name="fashion", folder="FashionMNIST", counts=(60000, 10000), hw=(28, 28), fixed_classes=10,
                 torchvision="FashionMNIST", sums=_FASHION_SHA256, fallback=("/usr/share/datasets/fashion-mnist",)))
register(IdxKind(name="idx"))


# ---------------------------------------------------------------- image folders

_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_folder_cache: dict[tuple[str, str], tuple[tuple[Any, ...], Arrays]] = {}


@dataclass(frozen=True)
class FolderKind(Kind):
    """``DIR/train/<class>/*`` and ``DIR/test/<class>/*``; decoded once by PIL into one uint8 tensor."""

    name: str = "folder"

    def _classes(self, root: Path) -> list[str]:
        top = root / "train"
        if not top.is_dir():
            raise DataError(f"{top}: missing; put the images in {root}/train/<class>/ and {root}/test/<class>/")
        classes = sorted(d.name for d in top.iterdir() if d.is_dir())
        if len(classes) < 2:
            raise DataError(f"{top}: needs a folder per class (at least 2), found {len(classes)}")
        return classes

    def _files(self, root: Path, part: str, classes: list[str]) -> list[tuple[Path, int]]:
        top = root / part
        if not top.is_dir():
            raise DataError(f"{top}: missing; put the images in {top}/<class>/")
        extra = sorted(d.name for d in top.iterdir() if d.is_dir() and d.name not in classes)
        if extra:
            raise DataError(f"{top}: class folders not in {root / 'train'}: {', '.join(extra)}")
        files = [(f, i) for i, c in enumerate(classes) if (top / c).is_dir()
                 for f in sorted((top / c).iterdir()) if f.suffix.lower() in _SUFFIXES]
        if not files:
            raise DataError(f"{top}: no .png or .jpg images in its class folders")
        return files

    @staticmethod
    def _decode(path: Path) -> torch.Tensor:
        import numpy as np
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                a = np.asarray(im.convert("RGB") if im.mode in ("P", "CMYK", "YCbCr") else im)
        except (OSError, UnidentifiedImageError) as e:
            raise DataError(f"{path}: cannot decode the image ({e}); {_FIX}") from None
        if a.dtype != np.uint8:
            raise DataError(f"{path}: {a.dtype} pixels; only 8-bit images are read")
        t = torch.from_numpy(a.copy())
        return t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1)  # (C, H, W)

    def read(self, root: Path, part: str, download: bool = False) -> Arrays:
        classes = self._classes(root)
        files = self._files(root, part, classes)
        sig = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f, _ in files)
        key = (str(root.resolve()), part)
        if key in _folder_cache and _folder_cache[key][0] == sig:
            return _folder_cache[key][1]
        first = self._decode(files[0][0])
        x = torch.empty((len(files), *first.shape), dtype=torch.uint8)  # (N, C, H, W)
        for i, (f, _) in enumerate(files):
            img = first if i == 0 else self._decode(f)
            if img.shape != first.shape:
                raise DataError(f"{f}: {tuple(img.shape)} (C, H, W), but {files[0][0]} is {tuple(first.shape)}: "
                                "all images of a dataset must have one size and channel count")
            x[i] = img
        y = torch.tensor([c for _, c in files], dtype=torch.long)  # (N,)
        _folder_cache[key] = (sig, (x, y))
        return x, y

    def shape(self, root: Path, download: bool = False) -> tuple[tuple[int, int, int], int]:
        classes = self._classes(root)
        first = self._decode(self._files(root, "train", classes)[0][0])
        c, h, w = first.shape
        return (int(c), int(h), int(w)), len(classes)


register(FolderKind())
