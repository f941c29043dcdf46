"""A study's rungs as run against its plan: for each rung, the trials planned and their expected minutes,
the trials run (by state) and when the rung's last trial finished, in minutes from the study's first.
A plan given with ``--plan FILE`` was not made for a time: its rungs have no expected minutes.
``--param NAME`` adds, under each rung, how many of its complete trials took each value of the sampled
parameter NAME (``train.batch_size``, ``opt.name``, ...); for a parameter sampled from a range of floats
(``arch.fill``, ``opt.lr``, ...) it gives their mean instead, and the correlation (Pearson's r) of the
parameter with the trials' validation accuracy at that rung.  NAME may also be a value each trial
records (``utilisation``: its share of the budget).  ``--family NAME,NAME,...`` adds, under each rung,
the combination of those parameters (``opt.name,sched.name,train.batch_size``: a recipe's family) that
most of its trials took, whatever their state: in how many, from which trial number on, and how many
combinations its trials took in all.  ``--agree`` adds, under each rung above 0, how well the rung below
foretold it: the rank correlation (Spearman's rho) of its complete promoted trials' validation accuracy with
that of the trials they were promoted from.

    python bench/rungs.py JOURNAL STUDY [--param NAME] [--family NAME,NAME,...] [--agree]

``JOURNAL`` is an Optuna journal file as ``search.run`` writes it (``runs/cnnsearch.log``), or its
gzipped copy under ``bench/records/``.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any


def lines(study: Any, param: str | None = None, family: list[str] | None = None, agree: bool = False) -> list[str]:
    from search.setup import stored_rungs
    from search.study import rung

    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    timed = float(study.user_attrs.get("plan_budget_seconds") or 0) > 0  # a plan made for a time, not given
    out = []
    for r, p in enumerate(stored_rungs(study)):
        mine = [t for t in trials if rung(t) == r]
        states = ", ".join(f"{n} {s.lower()}" for s, n in Counter(t.state.name for t in mine).items())
        ends = [t.datetime_complete for t in mine if t.datetime_complete is not None]
        at = f", done at {(max(ends) - min(starts)).total_seconds() / 60:.1f} min" if ends and starts else ""
        expected = f" ({p.seconds / 60:4.1f} min)" if timed else ""
        out.append(f"rung {r}: planned {p.trials:>3}{expected}, ran {len(mine):>3}"
                   f"{f' ({states})' if states else ''}{at}")
        if param is not None:
            out.append(f"  {param} of its complete trials: {_took(mine, param)}")
        if family:
            out.append(f"  {'/'.join(family)}: {_family(mine, family)}")
        if agree and r > 0:
            out.append(f"  against rung {r - 1}: {_agree(mine, by_number)}")
    return out


def _agree(trials: list[Any], by_number: dict[int, Any]) -> str:
    """Spearman's rho between the validation accuracy of ``trials`` (complete, promoted) and that of the trials
    they were promoted from."""
    pairs = [(parent.value, t.value) for t in trials if t.state.name == "COMPLETE"
             and (parent := by_number.get(t.user_attrs.get("promoted_from", -1))) is not None
             and parent.value is not None]
    if len(pairs) < 3:
        return f"{len(pairs)} promoted trial{'s' if len(pairs) != 1 else ''} complete, too few for a correlation"
    below, here = (_ranks(list(x)) for x in zip(*pairs, strict=True))
    if len(set(below)) == 1 or len(set(here)) == 1:
        return f"{len(pairs)} promoted trials complete, one value on a side: no correlation"
    return f"rank correlation {statistics.correlation(below, here):+.2f} over {len(pairs)} promoted trials"


def _ranks(xs: list[float]) -> list[float]:
    """Ranks from 1, ties sharing their mean rank."""
    order = sorted(range(len(xs)), key=xs.__getitem__)
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in order[i:j + 1]:
            ranks[k] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _family(trials: list[Any], names: list[str]) -> str:
    """The combination of ``names`` most of ``trials`` took: how many of them, the first trial with it, and how
    many combinations they took."""
    combos = [tuple(t.params.get(n) for n in names) for t in trials]
    if not combos:
        return "none"
    took = Counter(combos)
    top, n = took.most_common(1)[0]
    first = min(t.number for t, c in zip(trials, combos, strict=True) if c == top)
    return (f"{'/'.join(map(str, top))} in {n} of {len(combos)} ({n / len(combos):.0%}), first at trial {first}; "
            f"{len(took)} combination{'s' if len(took) != 1 else ''}")


def _took(trials: list[Any], param: str) -> str:
    """How many complete trials took each value of ``param``; for floats their mean and its r with the value."""
    done = [t for t in trials if t.state.name == "COMPLETE" and (param in t.params or param in t.user_attrs)]
    xs = [t.params[param] if param in t.params else t.user_attrs[param] for t in done]
    if xs and all(isinstance(x, float) for x in xs):
        vals = [t.value for t in done]
        r = (f", r with val acc {statistics.correlation(xs, vals):+.2f}"
             if len(xs) > 2 and len(set(xs)) > 1 and len(set(vals)) > 1 else "")
        return f"mean {statistics.fmean(xs):.3g} over {len(xs)}{r}"
    took = Counter(xs)
    return ", ".join(f"{v}: {took[v]}" for v in sorted(took, key=repr if not _numbers(took) else float)) or "none"


def _numbers(counts: Counter[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in counts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("journal", type=Path)
    ap.add_argument("study")
    ap.add_argument("--param", help="a sampled parameter (or a recorded value: utilisation): how many complete "
                                    "trials of each rung took each value")
    ap.add_argument("--family", type=lambda v: [n for n in v.split(",") if n],
                    help="comma-separated sampled parameters: the combination most trials of each rung took")
    ap.add_argument("--agree", action="store_true",
                    help="how well each rung's ranking by validation accuracy foretold the next rung's")
    args = ap.parse_args(argv)
    import optuna

    from search.storage import get_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        data = (gzip.decompress if args.journal.suffix == ".gz" else bytes)(args.journal.read_bytes())
    except (OSError, gzip.BadGzipFile) as e:
        print(f"error: {args.journal}: {e}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "journal.log"
        path.write_bytes(data)
        storage = get_storage(str(path))
        try:
            study = optuna.load_study(study_name=args.study, storage=storage)
        except KeyError:
            names = ", ".join(s.study_name for s in optuna.get_all_study_summaries(storage))
            print(f"error: {args.journal}: no study {args.study!r} (it has: {names or 'none'})", file=sys.stderr)
            return 2
        rows = lines(study, args.param, args.family, args.agree)
        if not rows:
            print(f"error: {args.journal}: study {args.study!r} was not run with a fidelity plan", file=sys.stderr)
            return 2
        print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
