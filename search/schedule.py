"""What a worker does next, decided from the study's trials and the fidelity plan.

A pure function of the trial list: :func:`decide` says whether to ask for a trial (and at which
rung), to promote the best of a finished rung to the next one, to drop queued trials of a rung
whose time is up, to wait for running trials, or that the study is done.  The worker loop
(:mod:`search.worker`) carries the decision out under the study's claim lock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from optuna.pruners import BasePruner, MedianPruner
from optuna.trial import FrozenTrial, TrialState

from search.plan import HALVING, Rung
from search.study import counts, rung

__all__ = ["Decision", "decide", "reserve", "rung_closed", "affordable", "fresh_attrs", "promoted_attrs", "RungPruner"]

LAST_RUNG_SHARE = 0.9   # of its time the last rung plans on: a margin for its trials' estimated cost


@dataclass(frozen=True)
class Decision:
    kind: str                  # "ask" | "promote" | "drop" | "wait" | "done"
    rung: int
    trials: list[FrozenTrial] = field(default_factory=list)   # to promote, or to drop


def _target(r: int, rg: Rung, mine: Sequence[FrozenTrial]) -> int:
    """Rung 0: the plan's count; above: the trials promoted to it, less those dropped unstarted."""
    if r == 0:
        return rg.trials
    dropped = {t.number for t in mine if t.state == TrialState.FAIL
               and str(t.user_attrs.get("fail_reason", "")).startswith("surplus")}
    return len({t.user_attrs["promoted_from"] for t in mine if "promoted_from" in t.user_attrs
                and t.number not in dropped})


def decide(rungs: Sequence[Rung], trials: Sequence[FrozenTrial], closed: Callable[[int], bool],
           fill: bool = False, left: Callable[[int], float | None] | None = None) -> Decision:
    """The next step.  ``closed(r)``: whether rung ``r``'s time is up (it starts no more trials; never
    asked of the last rung).  A rung above 0 starts once the one below has finished, with the best
    ``trials`` of it by validation accuracy (ties: fewer parameters) as its own trials; a rung that has
    been promoted from is closed too (a study resumed after its rungs closed at their times goes on
    where it stopped, not back to fill them).

    ``fill``: the plan's counts are what its measured speed expected, and the closing times rule: rung 0
    goes on sampling until its time is up, however many trials that is, and a rung above is offered the
    better half of the trials finished below (rounded up; at least its planned count: successive halving
    at its least selective), which the worker trims to what the rung's time affords at their measured
    speed (:func:`affordable`), so every rung spends its share of the time, the last one included.
    Without it (a plan given as data, or a resumed study whose closing times are gone) the counts are
    the plan's.

    ``left(r)``: the seconds until rung ``r`` should be done.  With ``fill``, the last rung starts no
    more of its queued trials once what is left is shorter than its finished trials took (the estimate
    that promoted them was made one rung below): ``--time`` ends on time rather than a trial late.  And a
    rung below the last closes early once what is left until the end is shorter than the rungs above
    need at least (:func:`reserve`): a plan made on a few batches of random networks can be slow by half,
    and a rung cannot shrink below one trial."""
    last = len(rungs) - 1
    shut = rung_closed(len(rungs), trials, closed)
    for r, rg in enumerate(rungs):
        mine = [t for t in trials if rung(t) == r]
        if r > 0 and not mine:
            below = [t for t in trials if rung(t) == r - 1 and t.state == TrialState.COMPLETE and t.value is not None]
            top = sorted(below, key=lambda t: (-(t.value or 0.0), t.user_attrs.get("params", 0), t.number))
            if not top:
                return Decision("done", r)
            n = max(rg.trials, -(-len(top) // HALVING)) if fill else rg.trials
            return Decision("promote", r, top[:n])
        waiting = [t for t in mine if t.state == TrialState.WAITING]
        running = [t for t in mine if t.state == TrialState.RUNNING]
        late = fill and left is not None and (_too_late(mine, left(r)) if r == last
                                              else _short(rungs, r, mine, left(last)))
        if shut(r) or late:
            if waiting:
                return Decision("drop", r, waiting)
            if running:
                return Decision("wait", r)
            continue
        if (fill and r == 0 < last) or sum(1 for t in mine if counts(t)) < _target(r, rg, mine) or waiting:
            return Decision("ask", r)
        if running:
            return Decision("wait", r)
    return Decision("done", last)


def _too_late(mine: Sequence[FrozenTrial], seconds_left: float | None) -> bool:
    """Whether a trial started now would end after ``seconds_left``, at the mean wall time of the rung's
    finished trials (never before one has finished)."""
    took = [(t.datetime_complete - t.datetime_start).total_seconds() for t in mine
            if t.state == TrialState.COMPLETE and t.datetime_start and t.datetime_complete]
    return bool(took) and seconds_left is not None and seconds_left < sum(took) / len(took)


def _short(rungs: Sequence[Rung], r: int, mine: Sequence[FrozenTrial], seconds_left: float | None) -> bool:
    need = reserve(rungs, r, mine)
    return need is not None and seconds_left is not None and seconds_left < need


def reserve(rungs: Sequence[Rung], r: int, mine: Sequence[FrozenTrial]) -> float | None:
    """Seconds the rungs above ``r`` need at least: each its planned share of the time, or one trial, whichever
    is longer.  A rung above trims its trials to what its share affords at their measured speed
    (:func:`affordable`), so a slower network than planned costs it trials, not time; what it cannot shrink
    below is one trial.  That trial's cost is estimated from rung ``r``'s best finished trials (the ones to be
    promoted): their training time per image (last epoch's images/s) scaled to the rung's images and epochs,
    and their validation time per epoch as it is; the last rung's trial is divided by ``LAST_RUNG_SHARE``,
    as :func:`affordable` plans it.  None until as many trials of rung ``r`` have finished as the rung above
    plans to take: one slow network sampled first would otherwise speak for all.

    (Reserving the rungs' planned counts at the measured speed instead closed rung 0 of a 5,000 search after
    7.7 of its 17 minutes, when its networks ran at half the plan's speed; the rungs above then trimmed
    their trials all the same, and the search ended 8 minutes early.)"""
    done = sorted((t for t in mine if t.state == TrialState.COMPLETE and t.value is not None
                   and t.user_attrs.get("epoch_seconds") and t.user_attrs.get("images_per_second")),
                  key=lambda t: (-(t.value or 0.0), t.number))
    want = max(1, rungs[r + 1].trials) if r + 1 < len(rungs) else 0
    if not want or len(done) < want:
        return None
    top = done[:want]
    train = val = 0.0   # seconds per training image, and per validation pass
    for t in top:
        secs = t.user_attrs["epoch_seconds"]
        per = 1.0 / float(t.user_attrs["images_per_second"])
        epoch = sum(secs) / len(secs)
        train += per
        val += max(0.0, epoch - per * rungs[r].images)
    train, val = train / len(top), val / len(top)
    need = 0.0
    for q in range(r + 1, len(rungs)):
        rg = rungs[q]
        one = rg.epochs * (rg.images * train + val)
        need += max(rg.seconds, one / LAST_RUNG_SHARE if q == len(rungs) - 1 else one)
    return need


def rung_closed(n_rungs: int, trials: Sequence[FrozenTrial],
                closed: Callable[[int], bool] | None = None) -> Callable[[int], bool]:
    """Whether rung ``r`` takes no more trials: never the last one; one whose time is up (``closed(r)``),
    or one that has been promoted from (more trials there would count for nothing)."""
    highest = max((rung(t) for t in trials), default=0)
    return lambda r: r < n_rungs - 1 and (r < highest or (closed is not None and closed(r)))


def affordable(rungs: Sequence[Rung], r: int, sources: Sequence[FrozenTrial], seconds_left: float,
               jobs: int = 1) -> int:
    """How many of the ``sources`` promoted to rung ``r`` it can train in ``seconds_left`` (at least one).

    A trial's cost at rung ``r`` is estimated from what it measured one rung below: its mean epoch time
    (training and validation) scaled by the images and epochs of rung ``r``; the plan's own estimate came
    from a few random networks, and the networks promoted are often the slower ones. The last rung counts
    on ``LAST_RUNG_SHARE`` of its time only: no later rung absorbs an estimate that was low."""
    if r == 0 or not sources:
        return len(sources)
    below, here = rungs[r - 1], rungs[r]
    costs = []
    for t in sources:
        secs = t.user_attrs.get("epoch_seconds") or []
        if secs:
            costs.append(sum(secs) / len(secs) * here.images / max(1, below.images) * here.epochs)
    if not costs:
        return len(sources)
    cost = sum(costs) / len(costs)
    if r == len(rungs) - 1:
        seconds_left *= LAST_RUNG_SHARE
    n = int(max(0.0, seconds_left) * max(1, jobs) // cost) if cost > 0 else len(sources)
    return max(1, min(len(sources), n))


def fresh_attrs(r: int, rg: Rung) -> dict[str, Any]:
    """The user attributes of a new trial at rung ``r``: its rung and fidelity."""
    return {"rung": r, "train_limit": rg.images, "epochs": rg.epochs}


def promoted_attrs(src: FrozenTrial, r: int, rg: Rung) -> dict[str, Any]:
    keep = {k: v for k, v in src.user_attrs.items() if k in ("zoo", "spec", "warm")}
    return keep | fresh_attrs(r, rg) | {"promoted_from": src.number}


class _RungView:
    """A study seen through one rung: ``get_trials`` returns only that rung's trials."""

    def __init__(self, study: Any, r: int) -> None:
        self._study, self._rung = study, r

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
        return [t for t in self._study.get_trials(deepcopy=deepcopy, states=states) if rung(t) == self._rung]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


class RungPruner(BasePruner):
    """Optuna's median pruner, applied within rung 0: a trial is compared only with trials of rung 0, trained
    at its fidelity, after a warm-up of a fifth of its epochs.  Rung 0 samples until its time is up, so
    what a pruned trial leaves goes to the next sample.  The rungs above are never pruned: their trials
    are the best of the rung below, already chosen by successive halving, and their count is fixed when
    they are promoted, so a trial stopped there frees time no trial uses (and is judged after one epoch
    against the best few of the rung).  Rung and epochs are the trial's own (its user attributes;
    ``epochs`` for a trial without them), so the pruner is right however early it was made: before a new
    study's plan exists, in a worker, on a resumed study."""

    def __init__(self, epochs: int, n_startup_trials: int = 5) -> None:
        self._epochs, self._n_startup = epochs, n_startup_trials
        self._inner: dict[int, MedianPruner] = {}

    def prune(self, study: Any, trial: FrozenTrial) -> bool:
        if rung(trial) != 0:
            return False
        e = int(trial.user_attrs.get("epochs") or self._epochs)
        if e not in self._inner:
            self._inner[e] = MedianPruner(n_startup_trials=self._n_startup, n_warmup_steps=max(1, e // 5))
        return self._inner[e].prune(_RungView(study, 0), trial)  # type: ignore[arg-type]
