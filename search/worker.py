"""The worker loop: claim the next trial of the plan under the study's lock, train it, tell the study.

Ctrl-C (and SIGTERM) may come at any moment.  The handler installed by :func:`interruptible`
raises :class:`space.cli.Interrupted` (a ``KeyboardInterrupt``) at once while a network trains, but never
inside a storage call or a ``tell``: those run as critical sections (:func:`critical`, and every
method of the storage through :func:`guard_storage`), and the interrupt is raised when the section
ends.  So a trial is never left half-told, and the one that was training is failed as
``interrupted`` and queued again with its checkpoint, to go on from its last epoch.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from search.plan import Rung, format_seconds
from search.schedule import Decision, affordable, decide, fresh_attrs, promoted_attrs
from search.storage import claim_lock, heartbeat, is_rdb
from search.study import fail_dead_local, requeue_attrs
from space.cli import Interrupted

__all__ = ["interruptible", "critical", "guard_storage", "Work", "worker_loop", "run_one",
           "spawn_workers", "watch_parent"]

_depth = 0
_pending = False


def _on_signal(signum: int, frame: Any) -> None:
    global _pending
    if _depth:
        _pending = True
        return
    raise Interrupted(f"signal {signum}")


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Interrupted` outside critical sections (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def critical() -> Iterator[None]:
    """A section that an interrupt does not cut: a signal that arrives inside it is raised at its end."""
    global _depth, _pending
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if not _depth and _pending:
            _pending = False
            raise Interrupted("interrupted")


def guard_storage(storage: Any) -> Any:
    """Run every public method of ``storage`` as a critical section (the instance is changed in place)."""
    for name in dir(type(storage)):
        if name.startswith("_"):
            continue
        attr = getattr(storage, name, None)
        if not callable(attr):
            continue

        def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(fn)
            def guarded(*a: Any, **k: Any) -> Any:
                with critical():
                    return fn(*a, **k)
            return guarded

        setattr(storage, name, wrap(attr))
    return storage


@dataclass
class Work:
    """What a worker runs: the plan's rungs, when each lower rung closes (absolute times, or None), the hard
    deadline (``--timeout``), and the host name that identifies this host's workers."""

    rungs: Sequence[Rung]
    closes: Sequence[float] | None = None
    deadline: float | None = None
    host: str = ""
    storage_url: str = ""
    jobs: int = 1

    def seconds_left(self, r: int) -> float | None:
        """Seconds until rung ``r`` should be done (None: no time budget)."""
        if not self.closes:
            return None
        return self.closes[min(r, len(self.closes) - 1)] - time.time()

    def closed(self, r: int) -> bool:
        return self.closes is not None and r < len(self.closes) and time.time() >= self.closes[r]

    def decide(self, trials: Sequence[Any], closed: Callable[[int], bool] | None = None) -> Decision:
        """The next step (:func:`search.schedule.decide`) at this work's rungs, times and workers;
        ``closed`` in place of the closing times (the completion check closes every rung below the last)."""
        return decide(self.rungs, trials, closed or self.closed, self.fill, self.seconds_left)

    @property
    def fill(self) -> bool:
        """Whether the rungs fill their times (closing times known) rather than stop at the plan's counts."""
        return self.closes is not None


def worker_loop(study: Any, work: Work, objective: Any, printer: Callable[[Any], None] | None = None,
                stop: threading.Event | None = None) -> None:
    """Run trials until the plan is done, the deadline passes, or ``stop`` is set.

    Deciding and creating the next trial happen under one lock shared by every worker of the study
    (a PostgreSQL advisory lock, or a file lock beside the journal), so concurrent workers never
    start more trials than the plan holds.
    """
    from search.objective import TrialFailed

    rdb = is_rdb(work.storage_url)
    # we run Optuna's heartbeats ourselves (storage.heartbeat), around ask/tell rather than Study.optimize
    warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used", UserWarning)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    while True:
        if (work.deadline and time.time() >= work.deadline) or (stop is not None and stop.is_set()):
            return
        trial = None
        try:
            with claim_lock(study, work.storage_url), critical():
                trial = _claim(study, work, rdb)
        except KeyboardInterrupt:
            if trial is not None and trial is not _DONE and trial is not _AGAIN:  # asked for, then interrupted
                with critical():
                    _requeue_interrupted(study, trial)
            raise
        if trial is _DONE:
            return
        if trial is _AGAIN:
            continue
        if trial is None:
            time.sleep(1.0)  # the others' trials are running; wait in case one dies and comes back
            continue
        run_one(study, trial, objective, TrialFailed)
        if printer:
            printer(study)


_DONE, _AGAIN = object(), object()


def _claim(study: Any, work: Work, rdb: bool) -> Any:
    """Under the claim lock: carry out the next decision; a new trial, None (wait), _AGAIN or _DONE."""
    if rdb:
        optuna.storages.fail_stale_trials(study)
    else:
        fail_dead_local(study, work.host)
    d = work.decide(study.get_trials(deepcopy=False))
    if d.kind == "done":
        return _DONE
    if d.kind == "promote":
        left = work.seconds_left(d.rung)
        keep = len(d.trials) if left is None else affordable(work.rungs, d.rung, d.trials, left, work.jobs)
        for t in d.trials[:keep]:
            study.enqueue_trial(t.params, user_attrs=promoted_attrs(t, d.rung, work.rungs[d.rung]),
                                skip_if_exists=False)
        why = f", what its {format_seconds(left)} afford" if left is not None and keep < len(d.trials) else ""
        print(f"rung {d.rung}: {keep} promoted, the best of {len(d.trials)} offered from rung {d.rung - 1}{why}",
              flush=True)
        return _AGAIN
    if d.kind == "drop":
        for _ in d.trials:
            t = study.ask()
            t.set_user_attr("fail_reason", f"surplus: rung {d.rung} closed at its time")  # or too late to start
            study.tell(t, state=TrialState.FAIL)
        return _AGAIN
    if d.kind == "wait":
        return None
    trial = study.ask()
    if "rung" not in trial.user_attrs:
        for k, v in fresh_attrs(d.rung, work.rungs[d.rung]).items():
            trial.set_user_attr(k, v)
    return trial


def run_one(study: Any, trial: Any, objective: Any, failed: type[Exception]) -> None:
    """Train one trial and tell the study how it ended."""
    try:
        with heartbeat(study, trial):
            try:
                value = objective(trial)
            except optuna.TrialPruned:
                with critical():
                    study.tell(trial, state=TrialState.PRUNED)
                return
            except failed:
                with critical():
                    study.tell(trial, state=TrialState.FAIL)
                return
            except KeyboardInterrupt:
                raise
            except Exception as e:  # a crash in one trial is recorded; the study goes on
                first = str(e).splitlines()[0] if str(e) else ""
                with critical():
                    trial.set_user_attr("fail_reason", f"error: {e.__class__.__name__}: {first}"[:500])
                    study.tell(trial, state=TrialState.FAIL)
                return
        with critical():
            study.tell(trial, value)
    except KeyboardInterrupt:
        with critical():
            _requeue_interrupted(study, trial)
        raise


def _requeue_interrupted(study: Any, trial: Any) -> None:
    frozen = study._storage.get_trial(trial._trial_id)
    if frozen.state != TrialState.RUNNING:  # told already: nothing was lost
        return
    trial.set_user_attr("fail_reason", "interrupted")
    study.enqueue_trial(frozen.params, user_attrs=requeue_attrs(frozen), skip_if_exists=False)
    study.tell(trial, state=TrialState.FAIL)


def watch_parent(stop: Callable[[], None], every: float = 1.0) -> threading.Thread:
    """A worker of ``--jobs N``: when the process that started it dies, call ``stop`` (within ``every`` s)."""
    parent = os.getppid()

    def run() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        stop()

    t = threading.Thread(target=run, name="watch-parent", daemon=True)
    t.start()
    return t


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def spawn_workers(cmd: Sequence[str], jobs: int, study: Any, printer: Callable[[Any], None], work: Work) -> int:
    """``--jobs N``: N worker processes on the same study; this process prints their progress.

    A worker that dies is reported in one line and replaced while the plan still needs trials (its
    trial is failed as stale and redone by the next claim).  Returns how many workers died, or -1 when
    a worker stopped on a one-line error of its own (exit status 2: a full disk, the database gone):
    then the others are stopped too.
    """
    env = dict(os.environ)
    if "CNNSEARCH_THREADS" not in env:  # share the cores: busy-waiting OpenMP threads of N workers thrash
        env["CNNSEARCH_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    procs: list[Any] = [subprocess.Popen(list(cmd), env=env) for _ in range(jobs)]
    died = 0
    try:
        while True:
            running = any(p.poll() is None for p in procs)  # poll before looking at the exit codes: none is missed
            for i, p in enumerate(procs):
                if p.returncode in (None, 0):
                    continue
                if p.returncode == 2:
                    _stop(procs)
                    return -1
                died += 1
                more = work.decide(study.get_trials(deepcopy=False)).kind != "done"
                print(f"worker {i + 1} (pid {p.pid}) died ({_exit_text(p.returncode)}); its trial is redone"
                      + ("; starting another worker" if more else ""), file=sys.stderr, flush=True)
                procs[i] = subprocess.Popen(list(cmd), env=env) if more else _Done()
                running = running or more
            printer(study)
            if not running:
                return died
            time.sleep(1.0)
    except KeyboardInterrupt:
        _stop(procs)
        raise


def _stop(procs: Sequence[Any]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in procs:
        p.wait()


class _Done:
    """A finished worker slot (what replaces a dead worker that needs no replacement)."""

    returncode = 0
    pid = 0

    def poll(self) -> int:
        return 0

    def wait(self) -> int:
        return 0

    def send_signal(self, sig: int) -> None:  # pragma: no cover - never running
        pass
