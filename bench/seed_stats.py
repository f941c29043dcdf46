"""Test accuracies of many seeds, pooled: ours (``trainer.train`` result files) against the reference's records.

    python bench/seed_stats.py --ours RESULT.json ... --reference SEED.json|RUNS.jsonl ... [--target 99.4]

``--ours``: files written by ``python -m trainer.train`` (every run in each).
``--reference``: files written by the reference pipeline's ``--json`` (one
seed each), or JSON lines of ``{"seed": s, "run": <such a file>}``.  Printed
per group: seeds, mean ± sample standard deviation, standard error, range and
how many seeds reach ``--target``; then the difference of the means and
Welch's t.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path


def ours(path: Path) -> list[float]:
    return [100 * r["test_acc"] for r in json.loads(path.read_text())["runs"] if r.get("test_acc") is not None]


def reference(path: Path) -> list[float]:
    text = path.read_text()
    records = [json.loads(line)["run"] for line in text.splitlines() if line.strip()] if path.suffix == ".jsonl" \
        else [json.loads(text)]
    return [100 * r["epochs"][-1]["test_accuracy"] for r in records]


def _line(name: str, acc: list[float], target: float) -> str:
    mean, sd = statistics.mean(acc), statistics.stdev(acc)
    return (f"{name:<10} {len(acc):>3} seeds  {mean:.3f}% ± {sd:.3f}  (s.e. {sd / math.sqrt(len(acc)):.3f})  "
            f"range {min(acc):.2f}..{max(acc):.2f}  >= {target:g}: {sum(a >= target - 1e-9 for a in acc)}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ours", type=Path, nargs="+", required=True)
    p.add_argument("--reference", type=Path, nargs="+", required=True)
    p.add_argument("--target", type=float, default=99.4, help="test accuracy in percent (default 99.4)")
    a = p.parse_args(argv)
    try:
        a_ours = [x for f in a.ours for x in ours(f)]
        a_ref = [x for f in a.reference for x in reference(f)]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        print(f"seed_stats: cannot read the records: {e}", file=sys.stderr)
        return 2
    if len(a_ours) < 2 or len(a_ref) < 2:
        print("seed_stats: need at least two seeds on each side", file=sys.stderr)
        return 2
    print(_line("ours", a_ours, a.target))
    print(_line("reference", a_ref, a.target))
    v_o, v_r = statistics.variance(a_ours) / len(a_ours), statistics.variance(a_ref) / len(a_ref)
    diff = statistics.mean(a_ours) - statistics.mean(a_ref)
    print(f"ours - reference: {diff:+.3f} points, Welch t = {diff / math.sqrt(v_o + v_r):+.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
