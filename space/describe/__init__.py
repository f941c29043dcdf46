"""``python -m space.describe FILE [FILE...]``: per-layer shapes, receptive field, parameters and MACs.

``describe(spec)`` gives the text the command prints for one spec (``from space import describe``);
``main(argv)`` is the command.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from space.analysis import format_table
from space.cli import Parser, run_main
from space.io import load
from space.spec import NetSpec

__all__ = ["describe", "main"]


def describe(spec: NetSpec | str | os.PathLike[str], source: str | None = None) -> str:
    """A heading (``== SOURCE (name)``) and the spec's per-layer table, as ``python -m space.describe`` prints it.

    ``spec`` is a :class:`NetSpec` or the path of a spec YAML file (loaded; the path is then the source).
    Without a source the heading is ``== name``.
    """
    if not isinstance(spec, NetSpec):
        source = os.fspath(spec) if source is None else source
        spec = load(spec)
    head = f"== {spec.name}" if source is None else f"== {source} ({spec.name})"
    return f"{head}\n{format_table(spec)}"


def _run(argv: Sequence[str] | None) -> int:
    p = Parser(prog="python -m space.describe", description=__doc__.splitlines()[0].split(":", 1)[1].strip())
    p.add_argument("files", nargs="+", metavar="FILE", help="spec YAML files")
    args = p.parse_args(argv)
    for i, path in enumerate(args.files):
        text = describe(load(path), path)  # a bad file: SpecError, one line, after the good ones before it
        if i:
            print()
        print(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_run, argv)
