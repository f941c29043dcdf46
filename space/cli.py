"""What every command shares: the one-line-error parser, the number types, the device check and
the wrapper that turns bad input into one ``error:`` line and exit status 2.

Every ``python -m ...`` command of the project (``space.describe``, ``trainer.train``,
``search.run``, ``results.*``) parses its flags with :class:`Parser` and runs its body under
:func:`run_main`.  Nothing here imports torch at module level.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from space.spec import SpecError

__all__ = ["UsageError", "Interrupted", "Parser", "positive_int", "positive_float", "duration", "device_name",
           "resolve_device", "run_main", "dataset_arg"]


class UsageError(Exception):
    """Bad input from the command line: printed as one ``error:`` line, exit status 2."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C as the commands raise it (``except KeyboardInterrupt`` catches it).

    Not KeyboardInterrupt itself: CPython marks a KeyboardInterrupt that leaves code run by ``exec()`` of a
    string (every dataclass being defined, every namedtuple) as unhandled, and ``python -m`` then dies of
    SIGINT once the interpreter ends, whatever the command returned.  It checks the exact type only.
    """


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(f"signal {signum}")


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line and exits 2."""

    def error(self, message: str) -> NoReturn:  # one line, exit 2
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def positive_int(s: str) -> int:
    """An argparse type: a positive integer (``20_000`` and ``20,000`` are read too)."""
    try:
        v = int(s.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def positive_float(s: str) -> float:
    """An argparse type: a positive number."""
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}") from None
    if not v > 0 or v != v or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}")
    return v


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(s|m|min|h)?\s*$")
_UNIT = {None: 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def duration(s: str) -> float:
    """An argparse type: a wall-clock time in seconds, from ``900``, ``900s``, ``45m`` or ``2h``."""
    m = _DURATION.match(s)
    if not m or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"expected a duration such as 900s, 45m or 2h, got {s!r}")
    return float(m.group(1)) * _UNIT[m.group(2)]


def device_name(s: str) -> str:
    """An argparse type: ``cpu``, ``cuda`` or ``cuda:N`` (checked as text; :func:`resolve_device` checks the
    machine)."""
    if s == "cpu" or re.fullmatch(r"cuda(:\d+)?", s):
        return s
    raise argparse.ArgumentTypeError(f"expected cpu or cuda, got {s!r}")


def resolve_device(name: str | None) -> Any:
    """``--device`` as a torch.device (None: CUDA when there is one); one that this machine lacks is a
    :class:`UsageError` naming the flag."""
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device_name(name)
    except argparse.ArgumentTypeError as e:
        raise UsageError(f"--device: {e}") from None
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device: CUDA is not available on this machine; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UsageError(f"--device: {name} asked for, but this machine has {torch.cuda.device_count()} CUDA devices")
    return dev


DATASET_HELP = ("mnist, fashion, idx (four IDX files in --data-dir) or folder (--data-dir/train/<class>/*.png and "
                "test/<class>/*)")


def dataset_arg(p: argparse.ArgumentParser, default: str | None) -> None:
    """``--dataset NAME``: a kind of ``trainer.datasets`` (checked when the data are read, so that parsing
    needs no torch)."""
    p.add_argument("--dataset", metavar="NAME", default=default,
                   help=f"{DATASET_HELP}; default: " + (default or "the spec's, else mnist"))
    p.add_argument("--download", action="store_true",
                   help="mnist, fashion: fetch missing files through torchvision into the data dir (needs a network)")


def _data_error(e: BaseException) -> bool:
    return e.__class__.__name__ == "DataError" and e.__class__.__module__ in ("trainer.data", "trainer.datasets")


def run_main(body: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None) -> int:
    """Run a command body; bad input is one line on stderr and exit 2, Ctrl-C is 130."""
    ours = (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    old = signal.signal(signal.SIGINT, _raise_interrupted) if ours else None
    try:
        return _run_body(body, argv)
    finally:
        if ours:
            signal.signal(signal.SIGINT, old)


def _run_body(body: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None) -> int:
    try:
        return int(body(argv))
    except SystemExit as e:  # argparse: --help (0) or a bad argument (2, its line already printed)
        return e.code if isinstance(e.code, int) else 2
    except (UsageError, SpecError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if _data_error(e):  # a missing or damaged data file
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise
