"""``python -m space.describe FILE [FILE...]``: per-layer shapes, receptive field, parameters and MACs."""

from __future__ import annotations

import argparse
import sys

from space.analysis import format_table
from space.io import load
from space.spec import SpecError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m space.describe", description=__doc__.split(":", 1)[1].strip())
    p.add_argument("files", nargs="+", metavar="FILE", help="spec YAML files")
    args = p.parse_args(argv)
    for i, path in enumerate(args.files):
        try:
            spec = load(path)
        except SpecError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if i:
            print()
        print(f"== {path} ({spec.name})")
        print(format_table(spec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
