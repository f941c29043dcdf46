"""``python -m results.export --out best.yaml``: a trial of a study as a complete, re-trainable spec.

Writes the best completed trial (or ``--trial N``, or the best one with at most ``--max-params P``
parameters) as YAML: architecture, recipe, validation metrics, the search settings and provenance
(study, trial, date, package versions), under a comment header with the per-layer table.  ``--verify``
then rebuilds the network, checks its parameter count against the recorded one, and re-trains it for
its epochs to check that the validation accuracy is reproduced within noise (exit 1 if not).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from results._common import (
    Parser,
    UsageError,
    choose_trial,
    open_study,
    pct,
    positive_int,
    render,
    run_main,
    write_text,
)
from space.cli import dataset_arg
from space.spec import NetSpec

__all__ = ["export", "main"]


def export(study: Any, trial: Any, out: str | Path, storage_url: str | None = None) -> NetSpec:
    """Write ``trial`` of ``study`` to ``out`` (atomically) and return the spec written."""
    from search.export import trial_spec

    spec = trial_spec(study, trial, storage_url)
    write_text(out, render(spec))
    return spec


def _trial_number(s: str) -> int:
    import argparse

    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a trial number, got {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a trial number >= 0, got {s!r}")
    return v


def build_parser() -> Parser:
    p = Parser(prog="python -m results.export", description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("--storage", metavar="URL", help="journal file or database URL (default runs/cnnsearch.log)")
    p.add_argument("--study", metavar="NAME", help="study name (default: the only study in the storage)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--trial", type=_trial_number, metavar="N", help="export trial N instead of the best")
    which.add_argument("--max-params", type=positive_int, metavar="P",
                       help="export the best trial with at most P parameters")
    p.add_argument("--out", metavar="FILE", required=True, help="the YAML file to write")
    p.add_argument("--verify", action="store_true",
                   help="rebuild and re-train the exported spec; exit 1 if it does not reproduce the record")
    p.add_argument("--tolerance", type=float, metavar="T", help="with --verify: allowed accuracy difference")
    p.add_argument("--data-dir", metavar="DIR", help="with --verify: data folder (default: data/)")
    dataset_arg(p, None)
    p.add_argument("--device", help="with --verify: cuda or cpu (default: cuda when available)")
    return p


def _body(argv: Sequence[str] | None) -> int:
    from results.verify import verify

    args = build_parser().parse_args(argv)
    out = Path(args.out)
    if out.is_dir():
        raise UsageError(f"--out {out} is a directory; give a file name")
    if args.verify and args.device:
        from results._common import device

        device(args.device)  # an unusable --device is refused before anything is written
    study, url = open_study(args.storage, args.study)
    trial = choose_trial(study, args.trial, args.max_params)
    spec = export(study, trial, out, url)
    m = spec.info.get("metrics", {})
    print(f"exported trial {trial.number} of study {study.study_name!r} ({m.get('params', 0):,} params, "
          f"val acc {pct(m.get('val_acc'))}) to {out}")
    if not args.verify:
        return 0
    v = verify(spec, data_dir=args.data_dir, device=args.device, tolerance=args.tolerance, dataset=args.dataset,
               download=args.download)
    for line in v.lines():
        print(line)
    if v.ok and v.val_reproduced is not None:  # record the reproduction beside the original figures
        rep = {"val_acc": round(v.val_reproduced, 5), "diff": round(v.diff or 0.0, 5),
               "tolerance": round(v.tolerance or 0.0, 5), "device": v.device, "seconds": round(v.seconds, 1)}
        info = dict(spec.info) | {"metrics": dict(m) | {"reproduced": rep}}
        write_text(out, render(dataclasses.replace(spec, info=info)))
    return 0 if v.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_body, argv)


if __name__ == "__main__":
    sys.exit(main())
