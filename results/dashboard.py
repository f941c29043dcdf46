"""``python -m results.dashboard``: write the study note and upload the best trial's spec (and weights)
as Optuna artifacts, for ``optuna-dashboard`` (what ``python -m search.run`` does at the end of a search)::

    optuna-dashboard runs/cnnsearch.log --artifact-dir runs/artifacts
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from results._common import Parser, UsageError, open_study, run_main
from search.note import Annotation, annotate, default_artifact_dir, load_weights, study_note

__all__ = ["Annotation", "annotate", "study_note", "default_artifact_dir", "load_weights", "main"]


def _body(argv: Sequence[str] | None) -> int:
    p = Parser(prog="python -m results.dashboard",
               description="Write the study note and upload the best trial's spec (and weights) as artifacts.")
    p.add_argument("--storage", metavar="URL", help="journal file or database URL (default runs/cnnsearch.log)")
    p.add_argument("--study", metavar="NAME", help="study name (default: the only study in the storage)")
    p.add_argument("--artifact-dir", metavar="DIR", help="artifact folder (default: artifacts/ beside the journal)")
    p.add_argument("--weights", metavar="FILE.pt", help="the best trial's trained state_dict, to upload with it")
    args = p.parse_args(argv)
    study, url = open_study(args.storage, args.study)
    weights = None
    if args.weights:
        try:
            weights = load_weights(args.weights)
        except Exception as e:  # missing file, not a state_dict, refused by weights_only
            raise UsageError(f"cannot load weights {args.weights}: {e.__class__.__name__}: {e}") from None
    adir = Path(args.artifact_dir) if args.artifact_dir else default_artifact_dir(url)
    res = annotate(study, url, adir, weights=weights)
    for line in res.lines():
        print(line)
    print(f"view: optuna-dashboard {url} --artifact-dir {adir}")
    return 0 if res.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_body, argv)


if __name__ == "__main__":
    sys.exit(main())
