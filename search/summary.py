"""The end of a study: its trials counted, its best and Pareto front printed, the best exported, the
dashboard's note written; and, for several budgets, the closing table across them."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from search.setup import DEFAULT_EPOCHS, Outcome, legacy

__all__ = ["summary", "closing"]


def summary(study: Any, args: argparse.Namespace, budget: int, out: Path, adir: Path,
             rungs: Sequence[Any]) -> tuple[Any, Path | None]:
    from search.export import export_best, pct
    from search.note import annotate
    from search.storage import mask_url
    from search.study import best as best_of
    from search.study import pareto_front, state_counts

    trials = study.get_trials(deepcopy=False)
    counts = ", ".join(f"{v} {k}" for k, v in state_counts(trials).items())
    print(f"\nstudy {study.study_name!r}: {len(trials)} trials ({counts})")
    best = best_of(trials)
    if best is None:
        print("no trial completed yet: nothing to export")
        return None, None
    p = int(best.user_attrs.get("params", 0))
    at = f" at rung {best.user_attrs.get('rung', 0)}" if len(rungs) > 1 else ""
    print(f"best: trial {best.number}{at}, {p:,} params ({p / budget:.0%} of {budget:,}), val acc {pct(best.value)}")
    front = pareto_front(trials)
    print(f"pareto front (val acc vs params{_at(front)}):")
    for t in front:
        print(f"  trial {t.number:>3}  params {t.user_attrs['params']:>7,}  val {pct(t.value)}")
    epochs = args.export_epochs or (args.epochs if legacy(args) else DEFAULT_EPOCHS)
    export_best(study, best, out, storage_url=args.storage, epochs=epochs)
    print(f"exported: {out}   (re-train: python -m trainer.train {out} --seeds 3)")
    done = annotate(study, args.storage, adir, weights=best.user_attrs.get("weights"))
    for line in done.lines():
        print(f"dashboard {line}")
    print(f"review: optuna-dashboard {shlex.quote(mask_url(args.storage))} --artifact-dir {shlex.quote(str(adir))}")
    return best, out


def closing(outcomes: Sequence[Outcome], storage: Any) -> None:
    """The table of all budgets and the Pareto front over all their trials."""
    import optuna

    from search.export import pct
    from search.study import pareto_across

    print("\nbudget   best val   params   study            export")
    for o in outcomes:
        p = o.best.user_attrs.get("params") if o.best is not None else None
        print(f"{o.budget:>6,}  {pct(o.best.value if o.best is not None else None):>9}  "
              f"{f'{p:,}' if p is not None else '-':>7}  {o.study:<15}  {o.out or '-'}")
    across = pareto_across(optuna.load_study(study_name=o.study, storage=storage) for o in outcomes)
    print(f"pareto front over all budgets (val acc vs params{_at([t for _, t in across])}):")
    for name, t in across:
        print(f"  {name:<15} trial {t.number:>3}  params {t.user_attrs['params']:>7,}  val {pct(t.value)}")


def _at(front: Sequence[Any]) -> str:
    """``, trials at 55,000 images x 15 epochs``: the one fidelity the front compares at (where it is known)."""
    from search.study import fidelity

    images, epochs = fidelity(front[0]) if front else (0, 0)
    if not images:
        return ""
    return f", trials at {images:,} images x {epochs} epoch{'s' if epochs != 1 else ''}"
