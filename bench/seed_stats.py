"""Test accuracies of many seeds, pooled: ours (``trainer.train`` result files) against the reference's records.

    python bench/seed_stats.py --ours RESULT.json ... --reference SEED.json|RUNS.jsonl ... [--target 99.4]
    python bench/seed_stats.py --group NAME FILE ... --group NAME FILE ... [--target 99.4] [--pairs]

Each file is either one written by ``python -m trainer.train`` (every run in
it) or ``python -m results.evaluate`` (every seed in it), or one written by the reference pipeline's
``--json`` (one seed), or JSON
lines of ``{"seed": s, "run": <such a file>}``.  ``--ours`` and
``--reference`` are the groups ``ours`` and ``reference``, first and in that
order; ``--group`` names others, after them.  Printed per group: seeds, mean ± sample standard deviation, standard
error, range and how many seeds reach ``--target``; then, for every later
group, the difference of the first group's mean from it and Welch's t; with ``--pairs``, of each
odd-numbered group's mean from the group after it instead (first from second, third from fourth, ...).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path


def accuracies(path: Path) -> list[float]:
    """Test accuracies (percent) of every finished seed in a result file of either kind."""
    text = path.read_text()
    if path.suffix == ".jsonl":
        records = [json.loads(line)["run"] for line in text.splitlines() if line.strip()]
    else:
        doc = json.loads(text)
        if "runs" in doc:  # python -m trainer.train
            return [100 * r["test_acc"] for r in doc["runs"] if r.get("test_acc") is not None]
        if "per_seed" in doc.get("test", {}):  # python -m results.evaluate
            return [100 * r["acc"] for r in doc["test"]["per_seed"]]
        records = [doc]
    return [100 * r["epochs"][-1]["test_accuracy"] for r in records]


def _line(name: str, acc: list[float], target: float, width: int) -> str:
    mean, sd = statistics.mean(acc), statistics.stdev(acc)
    return (f"{name:<{width}} {len(acc):>3} seeds  {mean:.3f}% ± {sd:.3f}  (s.e. {sd / math.sqrt(len(acc)):.3f})  "
            f"range {min(acc):.2f}..{max(acc):.2f}  >= {target:g}: {sum(a >= target - 1e-9 for a in acc)}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ours", type=Path, nargs="+", default=[])
    p.add_argument("--reference", type=Path, nargs="+", default=[])
    p.add_argument("--group", nargs="+", action="append", default=[], metavar=("NAME", "FILE"),
                   help="a named group of result files")
    p.add_argument("--target", type=float, default=99.4, help="test accuracy in percent (default 99.4)")
    p.add_argument("--pairs", action="store_true",
                   help="compare the groups two by two (1st with 2nd, 3rd with 4th, ...), not each with the first")
    a = p.parse_args(argv)
    files = {name: paths for name, paths in (("ours", a.ours), ("reference", a.reference)) if paths}
    for name, *paths in a.group:
        if not paths or name in files:
            p.error(f"--group {name}: " + ("names no file" if not paths else "is named twice"))
        files[name] = [Path(f) for f in paths]
    try:
        groups = {name: [x for f in paths for x in accuracies(f)] for name, paths in files.items()}
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        print(f"seed_stats: cannot read the records: {e}", file=sys.stderr)
        return 2
    if len(groups) < 2 or any(len(acc) < 2 for acc in groups.values()):
        print("seed_stats: need two groups or more, with at least two seeds each", file=sys.stderr)
        return 2
    if a.pairs and len(groups) % 2:
        print(f"seed_stats: --pairs needs an even number of groups, got {len(groups)}", file=sys.stderr)
        return 2
    width = max(10, *(len(n) + 1 for n in groups))
    for name, acc in groups.items():
        print(_line(name, acc, a.target, width))
    items = list(groups.items())
    pairs = zip(items[::2], items[1::2], strict=True) if a.pairs else ((items[0], other) for other in items[1:])
    for (first, a_first), (name, acc) in pairs:
        diff = statistics.mean(a_first) - statistics.mean(acc)
        se = math.sqrt(statistics.variance(a_first) / len(a_first) + statistics.variance(acc) / len(acc))
        print(f"{first} - {name}: {diff:+.3f} points, Welch t = {diff / se:+.2f}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
