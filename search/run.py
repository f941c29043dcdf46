"""``python -m search.run --budget 20000``: Optuna searches architectures and recipes under a parameter budget.

Before training, the search measures how fast this device trains networks of the budget and prints
its plan: many cheap trials on a subset of the training images for few epochs, the best of each rung
trained again on more images for more epochs, the last rung at the full fidelity of the exported
recipe, all within ``--time`` (default: 50 minutes on a CPU, 8 on a GPU).  Each trial reports
validation accuracy every epoch; the pruner stops poor trials of rung 0 (the rungs above train all
theirs).  Rerunning the same command resumes the study, and a trial that was interrupted goes on from
its last epoch.  At the end the best trial is exported as a spec that ``python -m trainer.train``
re-trains.

``--budget 20000,10000,5000`` runs one study per budget, each warm-started with the best recipes
found so far in the others, and closes with a table of all of them and their Pareto front.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from search.setup import (
    DEFAULT_EPOCHS,
    DEFAULT_TIME,
    DEFAULT_TRIALS,
    DataCache,
    Outcome,
    check_writable,
    enqueue_zoo,
    legacy,
    make_study,
    paths,
    plan_for,
    read_plan,
    record_dataset,
    stored_rungs,
    warm_start,
)
from search.summary import closing, summary
from space.cli import Parser, UsageError, dataset_arg, duration, positive_float, positive_int, resolve_device
from space.spec import SpecError

__all__ = ["main", "build_parser", "budgets"]

PRUNERS = ("median", "hyperband", "none")
SAMPLERS = ("tpe", "random")


def budgets(s: str) -> list[int]:
    """An argparse type: one budget or several, comma-separated (``20000,10000,5000``; ``20,000`` is one)."""
    parts = [p.strip() for p in s.split(",")]
    if len(parts) > 1 and 1 <= len(parts[0]) <= 3 and all(len(p) == 3 for p in parts[1:]):
        parts = [s]  # a thousands separator
    out = [positive_int(p) for p in parts]
    if len(set(out)) != len(out):
        raise argparse.ArgumentTypeError(f"a budget is given twice in {s!r}")
    return out


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m search.run", description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("--budget", type=budgets, required=True,
                   help="hard cap on the number of parameters; several, comma-separated, run one study each")
    p.add_argument("--time", type=duration, metavar="T",
                   help="wall-clock time for the fidelity plan: 900s, 45m, 2h (default 50m on a CPU, 8m on a GPU)")
    p.add_argument("--plan", metavar="FILE",
                   help="the fidelity plan as YAML rows {trials, images, epochs}, instead of measuring one")
    p.add_argument("--space", metavar="FILE", help="YAML overriding entries of the default search space")
    p.add_argument("--trials", type=positive_int,
                   help=f"no plan: finished trials the study should reach ({DEFAULT_TRIALS})")
    p.add_argument("--epochs", type=positive_int, help=f"no plan: epochs per trial ({DEFAULT_EPOCHS})")
    p.add_argument("--train-limit", type=positive_int, metavar="N",
                   help="no plan: train on the first N train-split images")
    p.add_argument("--timeout", type=positive_float, metavar="S", help="stop starting trials after S seconds")
    p.add_argument("--jobs", type=positive_int, default=1, help="worker processes on this host (1)")
    p.add_argument("--storage", metavar="URL",
                   help="journal file path (default runs/cnnsearch.log) or postgresql://USER@HOST/DB")
    p.add_argument("--study-name", help="default: budget-<BUDGET>")
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe")
    p.add_argument("--pruner", choices=PRUNERS, default="median")
    p.add_argument("--seed", type=int, default=0, help="sampler seed and training seed (0)")
    p.add_argument("--val", type=positive_int, default=5000, help="validation images carved from train (5000)")
    p.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    p.add_argument("--precision", choices=("fp32", "bf16"),
                   help="training precision (default: bf16 where the device supports it)")
    p.add_argument("--data-dir", metavar="DIR",
                   help="data folder (also $CNNSEARCH_DATA; default: the project's data/)")
    dataset_arg(p, "mnist")
    p.add_argument("--enqueue-zoo", action="store_true", help="start with the zoo networks that fit the budget")
    p.add_argument("--export-epochs", type=positive_int, metavar="N",
                   help=f"epochs of the exported recipe (default {DEFAULT_EPOCHS}; without a plan: --epochs)")
    p.add_argument("--out", metavar="FILE", help="exported best spec (default runs/<study>/best.yaml)")
    p.add_argument("--out-dir", metavar="DIR", help="exports go to DIR/<study>/best.yaml (default runs)")
    p.add_argument("--artifact-dir", metavar="DIR",
                   help="where the best spec and weights are stored for the dashboard (default runs/artifacts)")
    p.add_argument("--quiet", action="store_true", help="no per-trial and per-epoch lines")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)   # a child of --jobs N
    p.add_argument("--deadline", type=float, help=argparse.SUPPRESS)         # absolute time, from the parent
    p.add_argument("--closes", help=argparse.SUPPRESS)                        # rung closing times, from the parent
    p.add_argument("--siblings", type=int, help=argparse.SUPPRESS)            # the parent's --jobs
    return p


# ---------------------------------------------------------------- one study


def _search(args: argparse.Namespace, argv: list[str], budget: int, name: str, storage: Any, space: Any,
            data: DataCache, device: Any, seconds: float, others: Sequence[Outcome]) -> Outcome:
    from search.objective import WORKER, Objective, study_dir
    from search.progress import EpochLine, Printer
    from search.storage import mask_url
    from search.study import counted_finished
    from search.worker import Work, spawn_workers, watch_parent, worker_loop

    out, adir = paths(args, name)
    study = make_study(args, storage, name, budget, create=not args.worker)
    if not args.worker:
        trials = study.get_trials(deepcopy=False)
        already = len(counted_finished(trials))
        again = sum(1 for t in trials if t.state.name == "WAITING" and "retry_of" in t.user_attrs)
        print(f"study {name!r} in {mask_url(args.storage)}: budget {budget:,} params"
              + (f", {args.trials or DEFAULT_TRIALS} trials, {args.epochs or DEFAULT_EPOCHS} epochs each"
                 if legacy(args) else "")
              + (f", resuming with {already} finished" if already else "")
              + (f"; {again} interrupted trial{'s' if again != 1 else ''} queued again, to go on from "
                 "the last epoch" if again else ""), flush=True)
    splits = data.get(int(study.user_attrs.get("seed", args.seed)))  # every worker of a study: one split
    record_dataset(study, args, name)
    if args.worker:
        plan, made = None, False
        rungs = stored_rungs(study) or plan_for(args, study, budget, space, splits, device, 1)[1]
    else:
        if not legacy(args) and not stored_rungs(study):
            print(f"measuring this device's speed on networks of the budget ({device.type}) ...", flush=True)
        plan, rungs, made = plan_for(args, study, budget, space, splits, device, seconds)
        if plan is not None:
            for line in plan.lines() if made else plan.lines()[:1]:
                print(line if made else line.replace("plan:", "plan (from the study's first run):"), flush=True)
        if args.enqueue_zoo:
            added = enqueue_zoo(study, budget, rungs[0], args.data_shape)
            if added:
                print(f"queued zoo networks: {', '.join(added)}", flush=True)
        warm = warm_start(study, rungs[0], others, k=max(1, rungs[0].trials // 3))
        if warm:
            print(f"warm start from the other budgets: {', '.join(warm)}", flush=True)
    started = time.time()  # the plan's clock starts once it is made
    closes = None
    if args.closes:
        closes = [float(c) for c in args.closes.split(",")]
    elif made and plan is not None and plan.budget_seconds > 0:
        closes = [started + d for d in plan.deadlines()]
    work = Work(rungs=rungs, closes=closes, deadline=args.deadline, host=WORKER.rsplit(":", 1)[0],
                storage_url=args.storage, jobs=args.siblings or args.jobs)
    printer = Printer(sum(r.trials for r in rungs), budget, quiet=args.quiet, rungs=len(rungs))
    if not args.worker:
        printer.seen |= {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    died = 0
    if args.jobs > 1 and not args.worker:
        cmd = [sys.executable, "-m", "search.run", *_worker_argv(argv, budget), "--worker", "--jobs", "1",
               "--study-name", name, "--storage", args.storage, "--artifact-dir", str(adir)]
        if args.deadline:
            cmd += ["--deadline", str(args.deadline)]
        if closes:
            cmd += ["--closes", ",".join(f"{c:.3f}" for c in closes)]
        cmd += ["--siblings", str(args.jobs)]
        died = spawn_workers(cmd, args.jobs, study, printer, work)
        if died < 0:  # a worker stopped on an error it printed (a full disk, the database gone): so do we
            return Outcome(budget, name, None, None, False, fatal=True)
    else:
        stop = threading.Event()
        if args.worker:
            watch_parent(lambda: _stop_orphan(stop))
        objective = Objective(space=space, budget=budget, epochs=rungs[0].epochs, data=splits, device=device,
                              input=args.data_shape[0], classes=args.data_shape[1],
                              seed=args.seed, study_name=name, weights_dir=study_dir(adir / "weights", name),
                              checkpoint_dir=study_dir(adir / "checkpoints", name),
                              on_epoch=None if args.quiet else EpochLine(rungs, started, closed=work.closed,
                                                                        end=closes[-1] if closes else None),
                              precision=args.precision)
        worker_loop(study, work, objective, None if args.worker else printer, stop)
    if args.worker:
        return Outcome(budget, name, None, None, True)
    # the time guards of a plan filling its times end a study as done too
    complete = work.decide(study.get_trials(deepcopy=False), lambda r: True).kind == "done"
    best, wrote = summary(study, args, budget, out, adir, rungs)
    if died:
        print(f"{died} worker{'s' if died != 1 else ''} died; their trials were redone"
              + ("" if complete else "; the study is short of its plan: rerun the command to finish it"),
              file=sys.stderr)
    return Outcome(budget, name, best, wrote, complete)


def _stop_orphan(stop: threading.Event) -> None:
    """This worker's coordinator died: finish no more trials, and give the running one back to the queue."""
    import signal

    stop.set()
    os.kill(os.getpid(), signal.SIGINT)


# ---------------------------------------------------------------- the command


def main(argv: Sequence[str] | None = None) -> int:
    from search.worker import interruptible

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or a bad flag (one line already printed)
        return int(e.code or 0)
    with interruptible():
        try:
            return _main(args, argv)
        except KeyboardInterrupt:
            if not args.worker:
                print(f"\ninterrupted: the running trial keeps its last epoch and is queued again.\n"
                      f"resume with: python -m search.run {shlex.join(_mask(_resume_argv(argv)))}",
                      file=sys.stderr)
            return 130


def _main(args: argparse.Namespace, argv: list[str]) -> int:
    from trainer.data import DataError

    try:
        return _run(args, argv)
    except (SpecError, UsageError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    import optuna

    from search.sample import smallest_params
    from search.searchspace import load_space
    from search.storage import DEFAULT_STORAGE, get_storage
    from search.worker import guard_storage

    device = resolve_device(args.device)  # before anything is written
    space = load_space(args.space)
    args.plan_rows = read_plan(args.plan) if args.plan else None
    if args.plan and legacy(args):
        raise UsageError("--plan replaces --trials/--epochs/--train-limit; give one or the other")
    from trainer.data import dataset_shape

    try:
        args.data_shape = dataset_shape(args.data_dir, dataset=args.dataset,  # headers only, where the kind can
                                        download=args.download)
    except ValueError as e:
        raise UsageError(f"--dataset: {e}") from None
    smallest = smallest_params(space, classes=args.data_shape[1], input=args.data_shape[0])
    for b in args.budget:
        if b < smallest:
            raise UsageError(f"--budget {b} is too small: the smallest network of the search space has "
                             f"{smallest} parameters")
    several = len(args.budget) > 1
    if several and args.out:
        raise UsageError("--out names one file; with several budgets give --out-dir")
    if args.worker and several:
        raise UsageError("a worker runs one budget")
    args.storage = args.storage or os.environ.get("CNNSEARCH_STORAGE") or DEFAULT_STORAGE
    names = [(f"{args.study_name}-{b}" if several else args.study_name) if args.study_name else f"budget-{b}"
             for b in args.budget]
    if not args.worker:
        for name in names:
            check_writable(paths(args, name)[0])
    if args.timeout and not args.deadline:
        args.deadline = time.time() + args.timeout
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = guard_storage(get_storage(args.storage))
    total = args.time or DEFAULT_TIME.get(device.type, DEFAULT_TIME["cpu"])
    t0, data = time.time(), DataCache(args, device)
    outcomes: list[Outcome] = []
    for i, (b, name) in enumerate(zip(args.budget, names, strict=True)):
        left = max(total - (time.time() - t0), 0.25 * total / len(names)) / (len(names) - i)  # a share of what is left
        outcomes.append(_search(args, argv, b, name, storage, space, data, device, left, outcomes))
        if outcomes[-1].fatal:
            return 2
        if several and not args.worker:
            print(flush=True)
    if several and not args.worker:
        closing(outcomes, storage)
    return 0 if all(o.complete for o in outcomes) or args.deadline else 1


def _strip(argv: list[str], drop: tuple[str, ...], flags: tuple[str, ...] = ()) -> list[str]:
    """``argv`` without the options in ``drop`` (which take a value) and the switches in ``flags``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in drop:
            skip = True
        elif not (a.startswith(tuple(d + "=" for d in drop)) or a in flags):
            out.append(a)
    return out


def _worker_argv(argv: list[str], budget: int) -> list[str]:
    return [*_strip(argv, ("--jobs", "--deadline", "--timeout", "--study-name", "--storage", "--budget", "--closes",
                           "--artifact-dir", "--out", "--out-dir", "--siblings"),
                    ("--worker", "--enqueue-zoo")), "--budget", str(budget)]


def _resume_argv(argv: list[str]) -> list[str]:
    return _strip(argv, ("--deadline", "--closes", "--siblings"), ("--worker",))


def _mask(argv: list[str]) -> list[str]:
    from search.storage import mask_url

    return [mask_url(a) for a in argv]


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # until main's handler is in place, and once it is gone: a late
    sys.exit(main())                               # Ctrl-C must not interrupt the interpreter's exit
