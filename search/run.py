"""``python -m search.run --budget 20000``: Optuna searches architectures and recipes under a parameter budget.

Each trial samples a network that fits the budget and a recipe to train it,
trains it on the train split, and reports validation accuracy every epoch; the
pruner stops poor trials.  Rerunning the same command resumes the study.  At the
end the best trial is exported as a spec that ``python -m trainer.train`` re-trains.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser", "Parser", "positive_int", "pareto_front"]

PRUNERS = ("median", "hyperband", "none")
SAMPLERS = ("tpe", "random")


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line and exits 2."""

    def error(self, message: str) -> None:  # one line, exit 2
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def positive_int(s: str) -> int:
    """An argparse type: a positive integer (``20_000`` and ``20,000`` are read too)."""
    try:
        v = int(s.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def _positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m search.run", description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("--budget", type=positive_int, required=True, help="hard cap on the number of parameters")
    p.add_argument("--space", metavar="FILE", help="YAML overriding entries of the default search space")
    p.add_argument("--trials", type=positive_int, default=40, help="finished trials the study should reach (40)")
    p.add_argument("--timeout", type=_positive_float, metavar="S", help="stop starting trials after S seconds")
    p.add_argument("--jobs", type=positive_int, default=1, help="worker processes on this host (1)")
    p.add_argument("--storage", metavar="URL",
                   help="journal file path (default runs/cnnsearch.log) or postgresql://USER@HOST/DB")
    p.add_argument("--study-name", help="default: budget-<BUDGET>")
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe")
    p.add_argument("--pruner", choices=PRUNERS, default="median")
    p.add_argument("--seed", type=int, default=0, help="sampler seed and training seed (0)")
    p.add_argument("--epochs", type=positive_int, default=15, help="epochs per trial (15)")
    p.add_argument("--train-limit", type=positive_int, metavar="N", help="train on the first N train-split images")
    p.add_argument("--val", type=positive_int, default=5000, help="validation images carved from train (5000)")
    p.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    p.add_argument("--data-dir", metavar="DIR",
                   help="MNIST folder (also $CNNSEARCH_DATA; default: the project's data/)")
    p.add_argument("--enqueue-zoo", action="store_true", help="start with the zoo networks that fit the budget")
    p.add_argument("--export-epochs", type=positive_int, metavar="N",
                   help="epochs in the exported recipe (default: --epochs); search short, re-train long")
    p.add_argument("--out", metavar="FILE", help="exported best spec (default runs/<study>/best.yaml)")
    p.add_argument("--artifact-dir", metavar="DIR",
                   help="where the best spec and weights are stored for the dashboard (default runs/artifacts)")
    p.add_argument("--quiet", action="store_true", help="no per-trial lines")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)   # a child of --jobs N
    p.add_argument("--deadline", type=float, help=argparse.SUPPRESS)         # absolute time, from the parent
    return p


# ---------------------------------------------------------------- study bookkeeping

_UNCOUNTED = ("surplus", "stale", "interrupted")


def _counts(t: Any) -> bool:
    """Whether a trial counts towards --trials: anything but a worker's crash, a kill or a surplus start."""
    from optuna.trial import TrialState

    if t.state != TrialState.FAIL:
        return True
    reason = str(t.user_attrs.get("fail_reason", ""))
    return bool(reason) and not reason.startswith(_UNCOUNTED)


def _finished(t: Any) -> bool:
    return t.state.is_finished()


def _fail_dead_local(study: Any) -> int:
    """Journal storage has no heartbeats: fail RUNNING trials whose worker process on this host is gone,
    and queue their parameters again.  Returns how many were found."""
    import optuna
    from optuna.trial import TrialState

    from search.objective import WORKER

    host = WORKER.rsplit(":", 1)[0]
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = str(t.user_attrs.get("worker", ""))
        if not worker.startswith(host + ":"):
            continue
        pid = int(worker.rsplit(":", 1)[1])
        if _alive(pid):
            continue
        storage = study._storage
        try:
            storage.set_trial_user_attr(t._trial_id, "fail_reason", "stale: its worker died")
            if not storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                continue
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
            continue
        study.enqueue_trial(t.params, user_attrs=_requeue_attrs(t), skip_if_exists=False)
        n += 1
    return n


def _requeue_attrs(t: Any) -> dict[str, Any]:
    keep = {k: v for k, v in t.user_attrs.items() if k in ("zoo", "spec")}
    return keep | {"retry_of": t.user_attrs.get("retry_of", t.number)}


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is gone too
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _enqueue_zoo(study: Any, budget: int, epochs: int) -> list[str]:
    import dataclasses

    import space
    from search.export import with_epochs
    from space.analysis import count_params
    from space.io import dumps, load

    done = {t.user_attrs.get("zoo") for t in study.get_trials(deepcopy=False)}
    added = []
    for path in sorted((Path(space.__file__).parent / "zoo").glob("*.yaml")):
        spec = load(path)
        if count_params(spec) > budget or path.stem in done:
            continue
        spec = dataclasses.replace(with_epochs(spec, epochs), info={})  # its own recipe, at the search's length
        study.enqueue_trial({}, user_attrs={"zoo": path.stem, "spec": dumps(spec, header=False)})
        added.append(path.stem)
    return added


# ---------------------------------------------------------------- output


class Printer:
    """One line per finished trial, with a progress counter; prints each trial once."""

    def __init__(self, n_trials: int, budget: int, quiet: bool = False) -> None:
        self.n, self.budget, self.quiet = n_trials, budget, quiet
        self.seen: set[int] = set()

    def __call__(self, study: Any, *_: Any) -> None:
        trials = study.get_trials(deepcopy=False)
        done = sum(1 for t in trials if _finished(t) and _counts(t))
        best = _best(trials)
        for t in sorted(trials, key=lambda t: t.number):
            if not _finished(t) or t.number in self.seen:
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
            bar = _bar(done, self.n)
            print(f"{bar} trial {t.number:>3}  params {p if p is not None else '-':>7}"
                  f"{f' ({p / self.budget:.0%})' if p else '':>7}  val {_pct(acc):>7}  {t.state.name:<8} "
                  f"{secs:6.1f}s{zoo}{('  ' + why) if why and t.state.name != 'COMPLETE' else ''}"
                  f"{f'  best {_pct(best.value)} (#{best.number})' if best else ''}", flush=True)


def _bar(done: int, n: int, width: int = 20) -> str:
    k = min(width, round(width * done / max(n, 1)))
    return f"[{'#' * k}{'.' * (width - k)}] {min(done, n):>3}/{n}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _best(trials: Sequence[Any]) -> Any:
    from optuna.trial import TrialState

    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    return max(done, key=lambda t: (t.value, -t.user_attrs.get("params", 0))) if done else None


def pareto_front(trials: Sequence[Any]) -> list[Any]:
    """Completed trials that no other beats on both validation accuracy (higher) and parameters (fewer)."""
    from optuna.trial import TrialState

    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and "params" in t.user_attrs]
    front, best = [], -1.0
    for t in sorted(done, key=lambda t: (t.user_attrs["params"], -t.value)):
        if t.value > best:
            front.append(t)
            best = t.value
    return front


# ---------------------------------------------------------------- the work


def _make_study(args: argparse.Namespace, storage: Any, create: bool) -> Any:
    import optuna

    from space.spec import SpecError

    sampler: optuna.samplers.BaseSampler
    if args.sampler == "tpe":
        with warnings.catch_warnings():  # multivariate/group/constant_liar are "experimental" in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=None if args.worker else args.seed, multivariate=True,
                                                 group=True, n_startup_trials=8, constant_liar=True)
    else:
        sampler = optuna.samplers.RandomSampler(seed=None if args.worker else args.seed)
    pruner: optuna.pruners.BasePruner
    if args.pruner == "median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=max(1, args.epochs // 5))
    elif args.pruner == "hyperband":
        pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=args.epochs, reduction_factor=3)
    else:
        pruner = optuna.pruners.NopPruner()
    settings = {"budget": args.budget, "epochs": args.epochs, "train_limit": args.train_limit or 0, "val": args.val}
    if create:
        study = optuna.create_study(storage=storage, study_name=args.study_name, direction="maximize",
                                    sampler=sampler, pruner=pruner, load_if_exists=True)
        old = study.user_attrs
        for key, value in settings.items():
            if key in old and old[key] != value:
                raise SpecError(f"study {args.study_name!r} exists with {key} {old[key]}, not {value}; "
                                "use another --study-name or the same settings", "--study-name")
        for key, value in (settings | {"seed": args.seed}).items():  # seed: of the train/val split, the first run's
            if key not in old:
                study.set_user_attr(key, value)
        return study
    return optuna.load_study(study_name=args.study_name, storage=storage, sampler=sampler, pruner=pruner)


def _objective(args: argparse.Namespace, space: Any) -> Any:
    import torch

    from search.objective import Objective
    from space.spec import SpecError
    from trainer.data import load_splits

    try:
        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if device.type == "cuda" and not torch.cuda.is_available():
            raise SpecError("CUDA is not available on this machine; use --device cpu", "--device")
    except RuntimeError as e:
        raise SpecError(str(e).splitlines()[0], "--device") from None
    try:  # the train and validation splits only: the search never opens the test files
        data = load_splits(args.data_dir, val=args.val, limit=args.train_limit, seed=args.split_seed, device=device)
    except ValueError as e:
        raise SpecError(str(e), "--val/--train-limit") from None
    return Objective(space=space, budget=args.budget, epochs=args.epochs, data=data, device=device,
                     seed=args.seed, study_name=args.study_name, weights_dir=Path(args.artifact_dir) / "weights")


def _worker_loop(args: argparse.Namespace, study: Any, objective: Any, printer: Printer | None) -> None:
    """Run trials until the study has --trials counted, finished trials, or the deadline passes.

    Checking the count and creating the next trial happen under one lock shared by every
    worker of the study (a PostgreSQL advisory lock, or a file lock beside the journal), so
    concurrent workers never start more trials than asked for.
    """
    import optuna
    from optuna.trial import TrialState

    from search.objective import TrialFailed
    from search.storage import claim_lock, heartbeat, is_rdb

    rdb = is_rdb(args.storage)
    # we run Optuna's heartbeats ourselves (storage.heartbeat), around ask/tell rather than Study.optimize
    warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used", UserWarning)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    while True:
        if args.deadline and time.time() >= args.deadline:
            return
        with claim_lock(study, args.storage):
            if rdb:
                optuna.storages.fail_stale_trials(study)
            else:
                _fail_dead_local(study)
            trials = study.get_trials(deepcopy=False)
            counted = [t for t in trials if _counts(t)]
            if sum(1 for t in counted if _finished(t)) >= args.trials:
                return
            waiting = any(t.state == TrialState.WAITING for t in trials)
            trial = study.ask() if len(counted) < args.trials or waiting else None
        if trial is None:
            time.sleep(1.0)  # the others' trials are running; wait in case one dies and comes back
            continue
        _run_one(study, trial, objective, TrialFailed, heartbeat)
        if printer:
            printer(study)


def _run_one(study: Any, trial: Any, objective: Any, failed: type[Exception], heartbeat: Any) -> None:
    import optuna
    from optuna.trial import TrialState

    with heartbeat(study, trial):
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
            return
        except failed:
            study.tell(trial, state=TrialState.FAIL)
            return
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted")
            study.enqueue_trial(trial.params, user_attrs=_requeue_attrs(trial), skip_if_exists=False)
            study.tell(trial, state=TrialState.FAIL)
            raise
        except Exception as e:  # a crash in one trial is recorded; the study goes on
            first = str(e).splitlines()[0] if str(e) else ""
            trial.set_user_attr("fail_reason", f"error: {e.__class__.__name__}: {first}"[:500])
            study.tell(trial, state=TrialState.FAIL)
            return
    study.tell(trial, value)


def _spawn_workers(args: argparse.Namespace, argv: Sequence[str], printer: Printer, study: Any) -> int:
    """--jobs N: N worker processes on the same study; this process prints their progress."""
    cmd = [sys.executable, "-m", "search.run", *argv, "--worker", "--jobs", "1", "--quiet",
           "--study-name", args.study_name, "--storage", args.storage]
    if args.deadline:
        cmd += ["--deadline", str(args.deadline)]
    env = dict(os.environ)
    if "CNNSEARCH_THREADS" not in env:  # share the cores: busy-waiting OpenMP threads of N workers thrash
        env["CNNSEARCH_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.jobs))
    procs = [subprocess.Popen(cmd, env=env) for _ in range(args.jobs)]
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(1.0)
            printer(study)
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        raise
    printer(study)
    bad = [p.returncode for p in procs if p.returncode not in (0,)]
    return bad[0] if bad else 0


def _summary(study: Any, args: argparse.Namespace) -> Path | None:
    from search.export import export_best
    from search.storage import mask_url

    trials = study.get_trials(deepcopy=False)
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    counts = ", ".join(f"{v} {k.lower()}" for k, v in states.items())
    print(f"\nstudy {args.study_name!r}: {len(trials)} trials ({counts})")
    best = _best(trials)
    if best is None:
        print("no trial completed yet: nothing to export")
        return None
    p = best.user_attrs.get("params")
    print(f"best: trial {best.number}, {p:,} params ({p / args.budget:.0%} of {args.budget:,}), "
          f"val acc {_pct(best.value)}")
    print("pareto front (val acc vs params):")
    for t in pareto_front(trials):
        print(f"  trial {t.number:>3}  params {t.user_attrs['params']:>7,}  val {_pct(t.value)}")
    out = Path(args.out)
    export_best(study, best, out, storage_url=args.storage, epochs=args.export_epochs)
    print(f"exported: {out}   (re-train: python -m trainer.train {out} --seeds 3)")
    from results.dashboard import annotate

    done = annotate(study, args.storage, args.artifact_dir, weights=best.user_attrs.get("weights"))
    for line in done.lines():
        print(f"dashboard {line}")
    print(f"review: optuna-dashboard {shlex.quote(mask_url(args.storage))} "
          f"--artifact-dir {shlex.quote(args.artifact_dir)}")
    return out


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _check_writable(out: Path) -> None:
    """Refuse an output that cannot be written before any work is done."""
    import tempfile

    from space.spec import SpecError

    if out.is_dir():
        raise SpecError(f"{out} is a directory; give a file name", "--out")
    made = [d for d in reversed(out.absolute().parents) if not d.exists()]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out.parent, prefix=f".{out.name}.", suffix=".probe"):
            pass
    except OSError as e:
        raise SpecError(f"cannot write {out}: {e.strerror or e}", "--out") from None
    finally:
        for d in reversed(made):  # leave nothing behind; the export makes them again
            try:
                d.rmdir()
            except OSError:
                pass


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or a bad flag (one line already printed)
        return int(e.code or 0)
    if threading.current_thread() is not threading.main_thread():
        return _main(args, argv)
    old = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM (a scheduler's stop) ends like Ctrl-C
    try:
        return _main(args, argv)
    finally:
        signal.signal(signal.SIGTERM, old)


def _main(args: argparse.Namespace, argv: list[str]) -> int:
    from space.spec import SpecError

    try:
        from search.sample import smallest_params
        from search.searchspace import load_space
        from search.storage import DEFAULT_STORAGE, get_storage, mask_url

        space = load_space(args.space)
        smallest = smallest_params(space)
        if args.budget < smallest:
            print(f"error: --budget {args.budget} is too small: the smallest network of the search space has "
                  f"{smallest} parameters", file=sys.stderr)
            return 2
        args.storage = args.storage or os.environ.get("CNNSEARCH_STORAGE") or DEFAULT_STORAGE
        args.study_name = args.study_name or f"budget-{args.budget}"
        args.out = args.out or str(Path("runs") / args.study_name / "best.yaml")
        if not args.artifact_dir:
            from results.dashboard import default_artifact_dir

            args.artifact_dir = str(default_artifact_dir(args.storage))
        if not args.worker:
            _check_writable(Path(args.out))
        if args.timeout and not args.deadline:
            args.deadline = time.time() + args.timeout
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = get_storage(args.storage)
        study = _make_study(args, storage, create=not args.worker)
        args.split_seed = int(study.user_attrs.get("seed", args.seed))  # every worker of a study: one split
        printer = Printer(args.trials, args.budget, quiet=args.quiet)
        if not args.worker:
            printer.seen |= {t.number for t in study.get_trials(deepcopy=False) if _finished(t)}
            done = len(printer.seen)
            print(f"study {args.study_name!r} in {mask_url(args.storage)}: budget {args.budget:,} params, "
                  f"{args.trials} trials, {args.epochs} epochs each"
                  + (f", resuming with {done} finished" if done else ""), flush=True)
            if args.enqueue_zoo:
                added = _enqueue_zoo(study, args.budget, args.epochs)
                if added:
                    print(f"queued zoo networks: {', '.join(added)}", flush=True)
        if args.jobs > 1 and not args.worker:
            rc = _spawn_workers(args, _worker_argv(argv), printer, study)
            if rc:
                print(f"error: a worker exited with code {rc}", file=sys.stderr)
                return 1
        else:
            objective = _objective(args, space)
            _worker_loop(args, study, objective, None if args.worker else printer)
        if not args.worker:
            _summary(study, args)
        return 0
    except KeyboardInterrupt:
        if not args.worker:
            print(f"\ninterrupted: the running trial was recorded as failed and queued again.\n"
                  f"resume with: python -m search.run {shlex.join(mask_url(a) for a in _resume_argv(argv))}",
                  file=sys.stderr)
        return 130
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except _data_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


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


def _worker_argv(argv: list[str]) -> list[str]:
    return _strip(argv, ("--jobs", "--deadline", "--timeout", "--study-name", "--storage"),
                  ("--worker", "--quiet", "--enqueue-zoo"))


def _resume_argv(argv: list[str]) -> list[str]:
    return _strip(argv, ("--deadline",), ("--worker",))


def _data_errors() -> tuple[type[BaseException], ...]:
    try:
        from trainer.data import DataError
    except ImportError:  # pragma: no cover
        return ()
    return (DataError,)


if __name__ == "__main__":
    sys.exit(main())
