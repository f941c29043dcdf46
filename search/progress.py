"""What the search prints while it runs: a line per epoch with the study's ETA, a line per finished trial.

:func:`eta_seconds` is a pure function of the plan, the trials and the clock: the planned cost of
the work left, scaled by how the work done since this run started compares with its plan.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from optuna.trial import FrozenTrial, TrialState

from search.export import pct
from search.plan import Rung, format_seconds
from search.schedule import rung_closed
from search.study import best, counted_finished, counts, finished, rung

__all__ = ["eta_seconds", "EpochLine", "Printer"]


def _epoch_cost(rg: Rung) -> float:
    return rg.seconds / max(1, rg.trials) / max(1, rg.epochs)


def eta_seconds(rungs: Sequence[Rung], trials: Sequence[FrozenTrial], started: float, now: float,
                closed: Callable[[int], bool] | None = None, end: float | None = None) -> float | None:
    """Seconds until the plan is done: the planned seconds of the epochs still to train, times the ratio
    of the time this run has taken to the planned seconds of the epochs it trained (None before any).
    A rung that ``closed(r)`` says is closed, or that has been promoted from, trains no more trials than
    it has.  ``end``: when the rungs fill their times (:func:`search.schedule.decide`), the time the last
    rung is to be done by; until the last rung begins, the work goes on at least until then."""
    left = done = 0.0
    shut = rung_closed(len(rungs), trials, closed)
    for r, rg in enumerate(rungs):
        mine = [t for t in trials if rung(t) == r and counts(t)]
        target = rg.trials if r == 0 else (len(mine) or rg.trials)
        if shut(r):
            target = len(mine)
        cost = _epoch_cost(rg)
        left += max(0, target - len(mine)) * rg.epochs * cost
        for t in mine:
            trained = len(t.intermediate_values)
            if not finished(t):
                left += max(0, rg.epochs - trained) * cost
            if t.datetime_start is not None and t.datetime_start.timestamp() >= started:
                done += trained * cost
    if done <= 0:
        return None
    begun = any(rung(t) == len(rungs) - 1 for t in trials)  # the last rung
    return max(left * (now - started) / done, end - now if end is not None and not begun else 0.0)


class EpochLine:
    """``trial 12  rung 1  epoch 3/4  val 98.12%  4.1s  | 14/90 trials done, ETA 31m``, after each epoch."""

    def __init__(self, rungs: Sequence[Rung], started: float, out: TextIO | None = None,
                 closed: Callable[[int], bool] | None = None, end: float | None = None) -> None:
        self.rungs, self.started, self.out, self.closed, self.end = rungs, started, out, closed, end

    def __call__(self, trial: Any, epoch: int, epochs: int, m: dict[str, Any]) -> None:
        trials = trial.study.get_trials(deepcopy=False)
        done = len(counted_finished(trials))
        total = sum(r.trials for r in self.rungs)
        eta = eta_seconds(self.rungs, trials, self.started, time.time(), self.closed, self.end)
        r = int(trial.user_attrs.get("rung", 0))
        where = f"  rung {r}" if len(self.rungs) > 1 else ""
        count = f"{done}/{total} trials done" if done <= total else f"{done} trials done ({total} planned)"
        print(f"  trial {trial.number:>3}{where}  epoch {epoch}/{epochs}  val {pct(float(m['val_acc'])):>7}  "
              f"{float(m['seconds']):5.1f}s  | {count}" + (f", ETA {format_seconds(eta)}" if eta is not None else ""),
              file=self.out or sys.stdout, flush=True)


class Printer:
    """One line per finished trial, with a progress counter; prints each trial once."""

    def __init__(self, n_trials: int, budget: int, quiet: bool = False, rungs: int = 1) -> None:
        self.n, self.budget, self.quiet, self.rungs = n_trials, budget, quiet, rungs
        self.seen: set[int] = set()

    def __call__(self, study: Any, *_: Any) -> None:
        trials = study.get_trials(deepcopy=False)
        done = len(counted_finished(trials))
        top = best(trials)
        for t in sorted(trials, key=lambda t: t.number):
            if not finished(t) or t.number in self.seen:
                continue
            self.seen.add(t.number)
            if self.quiet:
                continue
            secs = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_start else 0.0
            p = t.user_attrs.get("params")
            acc = t.value if t.value is not None else (max(t.intermediate_values.values())
                                                       if t.intermediate_values else None)
            why = t.user_attrs.get("fail_reason", "")
            zoo = f" zoo:{t.user_attrs['zoo']}" if "zoo" in t.user_attrs else ""
            zoo += f" from:{t.user_attrs['warm']}" if "warm" in t.user_attrs else ""
            r = f" r{rung(t)}" if self.rungs > 1 else ""
            print(f"{_bar(done, self.n)} trial {t.number:>3}{r}  params {p if p is not None else '-':>7}"
                  f"{f' ({p / self.budget:.0%})' if p else '':>7}  val {pct(acc):>7}  {t.state.name:<8} "
                  f"{secs:6.1f}s{zoo}{('  ' + why) if why and t.state != TrialState.COMPLETE else ''}"
                  f"{f'  best {pct(top.value)} (#{top.number})' if top else ''}", flush=True)


def _bar(done: int, n: int, width: int = 20) -> str:
    """``[#####...............]  12/48``; past the planned count (rungs filling their times), ``50 of 48 planned``."""
    k = min(width, round(width * done / max(n, 1)))
    return f"[{'#' * k}{'.' * (width - k)}] " + (f"{done:>3}/{n}" if done <= n else f"{done:>3} of {n} planned")
