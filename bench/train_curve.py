"""Training-accuracy curves of our runs against the one a write-up reports, epoch by epoch.

    python bench/train_curve.py --doc ../shared/seeds/000_a3a04e655ccffd65.txt \
        --runs NAME=RESULT.json [NAME=RESULT.json ...]

``--doc``: a write-up holding a Markdown table with the columns ``Epoch`` and
``Train Accuracy`` (percent).  ``--runs``: files written by
``python -m trainer.train``, each given a name; several files under one name
are pooled.  Printed: per epoch, the write-up's training accuracy and the mean
over the seeds of each name; then, per name, the mean and largest absolute gap
to the write-up.  The training accuracy is measured on the augmented training
batches as they are trained on, so comparing curves tells which reading of a
write-up trains like its author's network without touching the test set.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path


def doc_curve(text: str) -> dict[int, float]:
    """Epoch -> training accuracy (percent) from the first Markdown table with both columns."""
    header: list[str] | None = None
    curve: dict[int, float] = {}
    for line in text.splitlines():
        cells = [c.strip().strip("*").strip() for c in line.strip().strip("|").split("|")]
        if not line.lstrip().startswith("|"):
            if curve:
                break
            header = None
            continue
        if header is None:
            if "Epoch" in cells and "Train Accuracy" in cells:
                header = cells
            continue
        if set("".join(cells)) <= set("-: "):
            continue
        epoch, acc = cells[header.index("Epoch")], cells[header.index("Train Accuracy")]
        m = re.fullmatch(r"([\d.]+)\s*%?", acc)
        if epoch.isdigit() and m:
            curve[int(epoch)] = float(m.group(1))
    if not curve:
        raise ValueError("no Markdown table with the columns 'Epoch' and 'Train Accuracy'")
    return curve


def run_curves(path: Path) -> list[dict[int, float]]:
    """One epoch -> training accuracy (percent) mapping per finished seed of a ``trainer.train`` result."""
    return [{e["epoch"]: 100 * e["train_acc"] for e in r["epochs"]}
            for r in json.loads(path.read_text())["runs"] if r.get("status", "ok") == "ok"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--doc", type=Path, required=True)
    p.add_argument("--runs", nargs="+", required=True, metavar="NAME=RESULT.json")
    a = p.parse_args(argv)
    groups: dict[str, list[dict[int, float]]] = {}
    try:
        doc = doc_curve(a.doc.read_text(encoding="utf-8"))
        for item in a.runs:
            name, sep, file = item.partition("=")
            if not sep or not name or not file:
                raise ValueError(f"{item!r} is not NAME=RESULT.json")
            groups.setdefault(name, []).extend(run_curves(Path(file)))
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"train_curve: {e}", file=sys.stderr)
        return 2
    for name, curves in groups.items():
        if not curves:
            print(f"train_curve: no finished seed under {name!r}", file=sys.stderr)
            return 2
    epochs = [e for e in sorted(doc) if all(e in c for cs in groups.values() for c in cs)]
    if not epochs:
        print("train_curve: the runs share no epoch with the write-up", file=sys.stderr)
        return 2
    mean = {name: {e: statistics.mean(c[e] for c in cs) for e in epochs} for name, cs in groups.items()}
    width = max(10, *(len(n) for n in groups))
    print("epoch  write-up  " + "  ".join(f"{n:>{width}}" for n in groups))
    for e in epochs:
        print(f"{e:>5}  {doc[e]:>7.2f}%  " + "  ".join(f"{mean[n][e]:>{width - 1}.2f}%" for n in groups))
    for name, cs in groups.items():
        gap = {e: mean[name][e] - doc[e] for e in epochs}
        worst = max(epochs, key=lambda e: abs(gap[e]))
        print(f"{name}: {len(cs)} seeds, mean gap {statistics.mean(gap.values()):+.2f} points, "
              f"largest {gap[worst]:+.2f} (epoch {worst})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
