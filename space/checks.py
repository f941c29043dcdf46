""":class:`SpecError` and the field checks that the spec's dataclasses run in ``__post_init__``.

Each check reads one field of a (frozen) dataclass and raises :class:`SpecError`
naming the field and the value; the caller adds the place (``layers[3]``).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["SpecError", "check_int", "check_float", "check_bool", "check_choice", "check_str"]


class SpecError(ValueError):
    """Anything wrong with a spec, a recipe or a search space; the message says what and where."""

    def __init__(self, message: str, where: str = "") -> None:
        self.bare = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)

    def in_file(self, source: str) -> SpecError:
        """The same error, prefixed with the file it came from (``spec.yaml: layers[2]: ...``)."""
        err = SpecError(self.bare, self.where)
        err.args = (f"{source}: {self}",)
        return err

    def at(self, where: str) -> SpecError:
        """The same error, located one level further out (``layers[2]`` + ``.out``)."""
        if not where:
            return self
        inner = self.where
        if inner and not inner.startswith("["):
            inner = "." + inner
        return SpecError(self.bare, where + inner)


def check_int(obj: Any, name: str, lo: int | None = None) -> None:
    v = getattr(obj, name)
    if isinstance(v, bool) or not isinstance(v, int):
        raise SpecError(f"{name} must be an integer, got {v!r}")
    if lo is not None and v < lo:
        raise SpecError(f"{name} must be >= {lo}, got {v!r}")


def check_float(obj: Any, name: str, lo: float | None = None, hi: float | None = None,
                lo_open: bool = False, hi_open: bool = False, optional: bool = False) -> None:
    """A finite number within the bounds; an int is stored back as a float."""
    v = getattr(obj, name)
    if v is None and optional:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise SpecError(f"{name} must be a number, got {v!r}")
    if not math.isfinite(v):
        raise SpecError(f"{name} must be finite, got {v!r}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise SpecError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {v!r}")
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise SpecError(f"{name} must be {'<' if hi_open else '<='} {hi}, got {v!r}")
    object.__setattr__(obj, name, float(v))


def check_bool(obj: Any, name: str) -> None:
    v = getattr(obj, name)
    if not isinstance(v, bool):
        raise SpecError(f"{name} must be true or false, got {v!r}")


def check_choice(obj: Any, name: str, choices: tuple[str, ...]) -> None:
    v = getattr(obj, name)
    if v not in choices:
        raise SpecError(f"{name} must be one of {', '.join(choices)}; got {v!r}")


def check_str(obj: Any, name: str) -> None:
    v = getattr(obj, name)
    if not isinstance(v, str) or not v:
        raise SpecError(f"{name} must be a non-empty string, got {v!r}")
