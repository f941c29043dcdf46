"""Queries on a study's trials: which count, which is best, the Pareto front, the state tally.

A leaf module: the search and the results commands both ask these questions, and ask them here.
Trials trained at several fidelities (the rungs of a fidelity plan, ``user_attrs["rung"]``) are
compared rung first: a trial of a higher rung was trained on more data for longer.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from optuna.trial import FrozenTrial, TrialState

__all__ = ["UNCOUNTED", "counts", "finished", "rung", "best", "fidelity", "top_fidelity", "pareto_front",
           "pareto_across", "state_counts",
           "counted_finished", "requeue_attrs", "alive", "fail_dead_local"]

# fail reasons of trials that do not count towards --trials: a worker's crash, a kill, a surplus start
UNCOUNTED = ("surplus", "stale", "interrupted")


def counts(t: FrozenTrial) -> bool:
    """Whether a trial counts towards the study's trial count: anything but a trial that was redone."""
    if t.state != TrialState.FAIL:
        return True
    reason = str(t.user_attrs.get("fail_reason", ""))
    return bool(reason) and not reason.startswith(UNCOUNTED)


def finished(t: FrozenTrial) -> bool:
    return t.state.is_finished()


def counted_finished(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if finished(t) and counts(t)]


def rung(t: FrozenTrial) -> int:
    """The trial's rung of the fidelity plan (0 for a study without one)."""
    return int(t.user_attrs.get("rung", 0))


def _complete(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]


def best(trials: Sequence[FrozenTrial]) -> FrozenTrial | None:
    """The best completed trial: highest rung, then highest validation accuracy, then fewest parameters."""
    done = _complete(trials)
    return max(done, key=lambda t: (rung(t), t.value, -t.user_attrs.get("params", 0))) if done else None


def fidelity(t: FrozenTrial) -> tuple[int, int]:
    """The trial's training images (0: the whole split) and epochs, as its rung gave them."""
    return int(t.user_attrs.get("train_limit") or 0), int(t.user_attrs.get("epochs") or 0)


def top_fidelity(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The completed trials trained at the highest fidelity any of them reached (most images x epochs; the
    whole split counts as most): validation accuracies compare only at one fidelity."""
    def work(t: FrozenTrial) -> tuple[bool, int]:
        images, epochs = fidelity(t)
        return images == 0, images * epochs

    done = _complete(trials)
    high = max((work(t) for t in done), default=None)
    return [t for t in done if work(t) == high]


def pareto_front(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The completed trials at the highest fidelity reached (:func:`top_fidelity`) that no other of them
    beats on both validation accuracy (higher) and parameters (fewer)."""
    done = [t for t in top_fidelity(trials) if "params" in t.user_attrs]
    front: list[FrozenTrial] = []
    top = -1.0
    for t in sorted(done, key=lambda t: (t.user_attrs["params"], -(t.value or 0.0))):
        assert t.value is not None
        if t.value > top:
            front.append(t)
            top = t.value
    return front


def pareto_across(studies: Iterable[Any]) -> list[tuple[str, FrozenTrial]]:
    """The Pareto front over the trials of several studies, each trial with its study's name."""
    where: dict[int, str] = {}
    trials: list[FrozenTrial] = []
    for st in studies:
        for t in st.get_trials(deepcopy=False):
            trials.append(t)
            where[id(t)] = st.study_name
    return [(where[id(t)], t) for t in pareto_front(trials)]


def state_counts(trials: Iterable[FrozenTrial]) -> dict[str, int]:
    """``{"complete": 9, "pruned": 7, ...}`` in the order states first appear."""
    out: dict[str, int] = {}
    for t in trials:
        out[t.state.name.lower()] = out.get(t.state.name.lower(), 0) + 1
    return out


def requeue_attrs(t: FrozenTrial) -> dict[str, Any]:
    """The user attributes a re-queued copy of ``t`` starts with: what it is, where it stood, what it retries."""
    keep = {k: v for k, v in t.user_attrs.items() if k in ("zoo", "spec", "rung", "train_limit", "epochs", "warm")}
    return keep | {"retry_of": t.user_attrs.get("retry_of", t.number)}


def alive(pid: int) -> bool:
    """Whether process ``pid`` of this host is running (a zombie is not)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def fail_dead_local(study: Any, host: str) -> list[int]:
    """Journal storage has no heartbeats: fail RUNNING trials whose worker process on ``host`` is gone, and
    queue their parameters again.  Returns the numbers of the trials failed."""
    import optuna

    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = str(t.user_attrs.get("worker", ""))
        if not worker.startswith(host + ":"):
            continue
        if alive(int(worker.rsplit(":", 1)[1])):
            continue
        storage = study._storage
        try:
            storage.set_trial_user_attr(t._trial_id, "fail_reason", "stale: its worker died")
            if not storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                continue
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
            continue
        study.enqueue_trial(t.params, user_attrs=requeue_attrs(t), skip_if_exists=False)
        out.append(t.number)
    return out
