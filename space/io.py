"""YAML in and out, through ``yaml.safe_load`` / ``safe_dump`` only."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml

from space.analysis import format_table
from space.spec import NetSpec, SpecError, from_dict, to_dict

__all__ = ["load", "loads", "dump", "dumps", "write_atomic"]


def loads(text: str, source: str = "<string>") -> NetSpec:
    """A spec from YAML text; every problem is a :class:`SpecError` naming ``source`` and the place."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"malformed YAML: {problem}" + (f" at {where}" if where else "")).in_file(source) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as e:  # odd scalars safe_load chokes on
        raise SpecError(f"malformed YAML: {e}").in_file(source) from None
    try:
        return from_dict(data)
    except SpecError as e:
        raise e.in_file(source) from None
    except RecursionError:
        raise SpecError("the spec is nested too deeply").in_file(source) from None


def load(path: str | os.PathLike[str]) -> NetSpec:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("no such file").in_file(str(p)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"cannot read: {e.__class__.__name__}: {e}").in_file(str(p)) from None
    return loads(text, str(p))


def _header(spec: NetSpec) -> str:
    table = format_table(spec).splitlines()
    params = table[-1].split(":")[1].strip()
    # repr: a name with a line break or a control character must not break out of the comment
    lines = [f"cnnsearch spec {spec.name!r}: {int(params):,} parameters", ""] + table
    return "".join(f"# {line}".rstrip() + "\n" for line in lines)


def dumps(spec: NetSpec, header: bool = True) -> str:
    """YAML text: a comment header with the per-layer table, then the spec; ``loads(dumps(s)) == s``."""
    body = yaml.safe_dump(to_dict(spec), sort_keys=False, default_flow_style=None, width=120)
    return (_header(spec) if header else "") + body


def write_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write through a temporary file in the same folder and rename: a reader never sees half a file."""
    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 is not what a plain open() would give
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def dump(spec: NetSpec, path: str | os.PathLike[str]) -> None:
    write_atomic(path, dumps(spec))


