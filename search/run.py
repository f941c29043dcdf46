"""``python -m search.run --budget 20000``: Optuna searches architectures and recipes under a parameter budget.

Before training, the search measures how fast this device trains networks of the budget and prints
its plan: many cheap trials on a subset of the training images for few epochs, the best of each rung
trained again on more images for more epochs, the last rung at the full fidelity of the exported
recipe, all within ``--time`` (default: 50 minutes on a CPU, 8 on a GPU).  Each trial reports
validation accuracy every epoch; the pruner stops poor trials within their rung.  Rerunning the same
command resumes the study, and a trial that was interrupted goes on from its last epoch.  At the end
the best trial is exported as a spec that ``python -m trainer.train`` re-trains.

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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from space.cli import Parser, UsageError, dataset_arg, duration, positive_float, positive_int, resolve_device
from space.spec import SpecError

__all__ = ["main", "build_parser", "budgets"]

PRUNERS = ("median", "hyperband", "none")
SAMPLERS = ("tpe", "random")
DEFAULT_TIME = {"cpu": 50 * 60.0, "cuda": 8 * 60.0}
DEFAULT_EPOCHS = 15
DEFAULT_TRIALS = 40


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


@dataclass
class Outcome:
    budget: int
    study: str
    best: Any            # the best FrozenTrial, or None
    out: Path | None     # the export written
    complete: bool       # the study reached its plan
    fatal: bool = False  # a worker stopped on a one-line error


def _legacy(args: argparse.Namespace) -> bool:
    """Explicit --trials / --epochs / --train-limit: a fixed number of trials at one fidelity, as before plans."""
    return any(v is not None for v in (args.trials, args.epochs, args.train_limit))


def _make_study(args: argparse.Namespace, storage: Any, name: str, budget: int, create: bool) -> Any:
    import warnings

    import optuna

    from search.schedule import RungPruner

    sampler: optuna.samplers.BaseSampler
    seed = None if args.worker else args.seed
    if args.sampler == "tpe":
        with warnings.catch_warnings():  # multivariate/group/constant_liar are "experimental" in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=8,
                                                 constant_liar=True)
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    if not create:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    else:
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize", sampler=sampler,
                                    load_if_exists=True)
        if study.metric_names is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(["val_acc"])
        old = study.user_attrs
        epochs = args.epochs or DEFAULT_EPOCHS if _legacy(args) else args.export_epochs or DEFAULT_EPOCHS
        settings = {"budget": budget, "epochs": epochs, "train_limit": args.train_limit or 0, "val": args.val}
        for key, value in settings.items():
            if key in old and old[key] != value:
                raise SpecError(f"study {name!r} exists with {key} {old[key]}, not {value}; "
                                "use another --study-name or the same settings", "--study-name")
        mode = "fixed" if _legacy(args) else "plan"
        if old.get("mode", "fixed" if old else mode) != mode:
            how = "a fidelity plan" if mode == "fixed" else "--trials/--epochs/--train-limit"
            raise SpecError(f"study {name!r} exists and was run with {how}; run it the same way, "
                            "or use another --study-name", "--study-name")
        settings["mode"] = mode
        for key, value in (settings | {"seed": args.seed}).items():  # seed: of the train/val split, the first run's
            if key not in old:
                study.set_user_attr(key, value)
    rungs = _stored_rungs(study)
    if args.pruner == "median":
        study.pruner = RungPruner([r.epochs for r in rungs] if rungs else [args.epochs or DEFAULT_EPOCHS])
    elif args.pruner == "hyperband":
        study.pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=args.epochs or DEFAULT_EPOCHS,
                                                      reduction_factor=3)
    else:
        study.pruner = optuna.pruners.NopPruner()
    return study


def _stored_rungs(study: Any) -> list[Any]:
    from search.plan import Rung

    return [Rung(**r) for r in study.user_attrs.get("plan", [])]


def _plan(args: argparse.Namespace, study: Any, budget: int, space: Any, data: Any, device: Any,
          seconds: float) -> tuple[Any, list[Any], bool]:
    """The study's plan: (Plan or None, rungs, made now).  A study keeps the plan of its first run."""
    from search.plan import Plan, Rung, make_plan

    if _legacy(args):
        trials, epochs = args.trials or DEFAULT_TRIALS, args.epochs or DEFAULT_EPOCHS
        images = min(args.train_limit or len(data.train), len(data.train))
        return None, [Rung(trials, images, epochs, 0, float(trials * epochs))], False
    rungs = _stored_rungs(study)
    if rungs:
        a = study.user_attrs
        return Plan(tuple(rungs), sum(r.seconds for r in rungs), float(a.get("plan_budget_seconds", 0)),
                    float(a.get("train_rate", 0)), str(a.get("plan_note", ""))), rungs, False
    if args.plan:
        plan = args.plan_rows
        study.set_user_attr("plan", [asdict(r) for r in plan.rungs])
        return plan, list(plan.rungs), True
    from search.objective import measure_rates

    probes = _probe_specs(space, budget, args.seed, shape=args.data_shape)
    train_rate, eval_rate = measure_rates(probes, data, device, precision=args.precision)
    plan = make_plan(train_images=len(data.train), val_images=len(data.val),
                     epochs=args.export_epochs or DEFAULT_EPOCHS, train_rate=train_rate, eval_rate=eval_rate,
                     seconds=seconds, overhead=3.0 if device.type == "cuda" else 1.0)
    study.set_user_attr("plan", [asdict(r) for r in plan.rungs])
    study.set_user_attr("plan_budget_seconds", round(seconds, 1))
    study.set_user_attr("train_rate", round(train_rate, 1))
    study.set_user_attr("eval_rate", round(eval_rate, 1))
    if plan.note:
        study.set_user_attr("plan_note", plan.note)
    return plan, list(plan.rungs), True


def _read_plan(path: str) -> Any:
    import yaml

    from search.plan import plan_from_rows

    try:
        with open(path, encoding="utf-8") as f:
            rows = yaml.safe_load(f)
    except OSError as e:
        raise UsageError(f"--plan: cannot read {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise UsageError(f"--plan: {path}: malformed YAML: {' '.join(str(e).split())}") from None
    try:
        return plan_from_rows(rows, f"--plan {path}")
    except ValueError as e:
        raise UsageError(str(e)) from None


def _probe_specs(space: Any, budget: int, seed: int, n: int = 3, shape: tuple[Any, int] = ((1, 28, 28), 10)
                 ) -> list[Any]:
    """A few networks of the budget, drawn at random from the space, to measure the device's speed on."""
    import optuna

    from search.sample import OverBudget, sample

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    specs: list[Any] = []
    for i in range(4 * n):
        if len(specs) == n:
            break
        try:
            specs.append(sample(study.ask(), space, budget, epochs=1, seed=seed, name=f"probe{i}",
                                input=shape[0], classes=shape[1]))
        except (OverBudget, SpecError):
            continue
    if not specs:
        raise SpecError(f"no network of the search space fits the budget {budget}", "--budget")
    return specs


def _enqueue_zoo(study: Any, budget: int, rung0: Any, shape: tuple[Any, int]) -> list[str]:
    import dataclasses

    import space
    from search.export import with_epochs
    from search.schedule import fresh_attrs
    from space.analysis import count_params
    from space.io import dumps, load

    done = {t.user_attrs.get("zoo") for t in study.get_trials(deepcopy=False)}
    added = []
    for path in sorted((Path(space.__file__).parent / "zoo").glob("*.yaml")):
        spec = load(path)
        if count_params(spec) > budget or path.stem in done or (spec.input, spec.classes) != shape:
            continue
        spec = dataclasses.replace(with_epochs(spec, rung0.epochs), info={})  # its own recipe, at the rung's length
        study.enqueue_trial({}, user_attrs={"zoo": path.stem, "spec": dumps(spec, header=False)}
                            | fresh_attrs(0, rung0))
        added.append(path.stem)
    return added


def _warm_start(study: Any, rung0: Any, others: Sequence[Outcome], k: int) -> list[str]:
    """Queue the best trials of the other budgets' studies (their shape and recipe, re-fitted to this
    budget) at rung 0: a start, never a cap (at most a third of rung 0)."""
    from search.schedule import fresh_attrs

    have = {t.user_attrs.get("warm") for t in study.get_trials(deepcopy=False)}
    added: list[str] = []
    for o in others:
        if o.best is None or not o.best.params or len(added) >= k:
            continue
        tag = f"{o.study}#{o.best.number}"
        if tag in have:
            continue
        study.enqueue_trial(o.best.params, user_attrs={"warm": tag} | fresh_attrs(0, rung0), skip_if_exists=False)
        added.append(tag)
    return added


def _paths(args: argparse.Namespace, name: str) -> tuple[Path, Path]:
    """(export path, artifact dir) of one study."""
    from search.note import default_artifact_dir

    out = Path(args.out) if args.out else Path(args.out_dir or "runs") / name / "best.yaml"
    adir = Path(args.artifact_dir) if args.artifact_dir else default_artifact_dir(args.storage)
    return out, adir


def _check_writable(out: Path) -> None:
    """Refuse an output that cannot be written before any work is done."""
    import tempfile

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


class _Data:
    """The train and validation splits, loaded once per split seed (the search never opens the test files)."""

    def __init__(self, args: argparse.Namespace, device: Any) -> None:
        self.args, self.device = args, device
        self.cache: dict[int, Any] = {}

    def get(self, seed: int) -> Any:
        from trainer.data import load_splits

        if seed not in self.cache:
            self.cache.clear()
            limit = self.args.train_limit if _legacy(self.args) else None
            try:
                self.cache[seed] = load_splits(self.args.data_dir, dataset=self.args.dataset, val=self.args.val,
                                               limit=limit, seed=seed, device=self.device,
                                               download=self.args.download)
            except ValueError as e:
                raise SpecError(str(e), "--val/--train-limit") from None
        return self.cache[seed]


def _search(args: argparse.Namespace, argv: list[str], budget: int, name: str, storage: Any, space: Any,
            data: _Data, device: Any, seconds: float, others: Sequence[Outcome]) -> Outcome:
    from search.objective import WORKER, Objective, study_dir
    from search.progress import EpochLine, Printer
    from search.storage import mask_url
    from search.study import counted_finished
    from search.worker import Work, spawn_workers, watch_parent, worker_loop

    out, adir = _paths(args, name)
    study = _make_study(args, storage, name, budget, create=not args.worker)
    if not args.worker:
        trials = study.get_trials(deepcopy=False)
        already = len(counted_finished(trials))
        again = sum(1 for t in trials if t.state.name == "WAITING" and "retry_of" in t.user_attrs)
        print(f"study {name!r} in {mask_url(args.storage)}: budget {budget:,} params"
              + (f", {args.trials or DEFAULT_TRIALS} trials, {args.epochs or DEFAULT_EPOCHS} epochs each"
                 if _legacy(args) else "")
              + (f", resuming with {already} finished" if already else "")
              + (f"; {again} interrupted trial{'s' if again != 1 else ''} queued again, to go on from "
                 "the last epoch" if again else ""), flush=True)
    splits = data.get(int(study.user_attrs.get("seed", args.seed)))  # every worker of a study: one split
    _record_dataset(study, args, name)
    if args.worker:
        plan, rungs, made = None, _stored_rungs(study) or _plan(args, study, budget, space, splits, device, 1)[1], False
    else:
        if not _legacy(args) and not _stored_rungs(study):
            print(f"measuring this device's speed on networks of the budget ({device.type}) ...", flush=True)
        plan, rungs, made = _plan(args, study, budget, space, splits, device, seconds)
        if plan is not None:
            for line in plan.lines() if made else plan.lines()[:1]:
                print(line if made else line.replace("plan:", "plan (from the study's first run):"), flush=True)
        if args.enqueue_zoo:
            added = _enqueue_zoo(study, budget, rungs[0], args.data_shape)
            if added:
                print(f"queued zoo networks: {', '.join(added)}", flush=True)
        warm = _warm_start(study, rungs[0], others, k=max(1, rungs[0].trials // 3))
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
                              on_epoch=None if args.quiet else EpochLine(rungs, started, closed=work.closed),
                              precision=args.precision)
        worker_loop(study, work, objective, None if args.worker else printer, stop)
    if args.worker:
        return Outcome(budget, name, None, None, True)
    from search.schedule import decide

    complete = decide(rungs, study.get_trials(deepcopy=False), lambda r: True).kind == "done"
    best, wrote = _summary(study, args, budget, out, adir, rungs)
    if died:
        print(f"{died} worker{'s' if died != 1 else ''} died; their trials were redone"
              + ("" if complete else "; the study is short of its plan: rerun the command to finish it"),
              file=sys.stderr)
    return Outcome(budget, name, best, wrote, complete)


def _record_dataset(study: Any, args: argparse.Namespace, name: str) -> None:
    """The study's dataset (name, content hash, shape, statistics) in its user attributes; a study run on
    other data is refused."""
    from trainer.data import dataset_info

    rec = dataset_info(args.data_dir, dataset=args.dataset).record()
    old = study.user_attrs.get("dataset")
    if isinstance(old, dict) and (old.get("name"), old.get("sha256")) != (rec["name"], rec["sha256"]):
        raise SpecError(f"study {name!r} was run on {old.get('name')} data with SHA-256 {str(old.get('sha256'))[:12]}"
                        f"..., not on {rec['name']} data with {rec['sha256'][:12]}...; use another --study-name "
                        "or the same data", "--data-dir")
    if old is None and not args.worker:
        study.set_user_attr("dataset", rec)


def _stop_orphan(stop: threading.Event) -> None:
    """This worker's coordinator died: finish no more trials, and give the running one back to the queue."""
    import signal

    stop.set()
    os.kill(os.getpid(), signal.SIGINT)


def _summary(study: Any, args: argparse.Namespace, budget: int, out: Path, adir: Path,
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
    print("pareto front (val acc vs params):")
    for t in pareto_front(trials):
        print(f"  trial {t.number:>3}  params {t.user_attrs['params']:>7,}  val {pct(t.value)}")
    epochs = args.export_epochs or (args.epochs if _legacy(args) else DEFAULT_EPOCHS)
    export_best(study, best, out, storage_url=args.storage, epochs=epochs)
    print(f"exported: {out}   (re-train: python -m trainer.train {out} --seeds 3)")
    done = annotate(study, args.storage, adir, weights=best.user_attrs.get("weights"))
    for line in done.lines():
        print(f"dashboard {line}")
    print(f"review: optuna-dashboard {shlex.quote(mask_url(args.storage))} --artifact-dir {shlex.quote(str(adir))}")
    return best, out


def _closing(outcomes: Sequence[Outcome], storage: Any) -> None:
    """The table of all budgets and the Pareto front over all their trials."""
    import optuna

    from search.export import pct
    from search.study import pareto_front

    print("\nbudget   best val   params   study            export")
    for o in outcomes:
        p = o.best.user_attrs.get("params") if o.best is not None else None
        print(f"{o.budget:>6,}  {pct(o.best.value if o.best is not None else None):>9}  "
              f"{f'{p:,}' if p is not None else '-':>7}  {o.study:<15}  {o.out or '-'}")
    tagged = []
    for o in outcomes:
        for t in optuna.load_study(study_name=o.study, storage=storage).get_trials(deepcopy=False):
            tagged.append((t, o.study))
    where = {id(t): s for t, s in tagged}
    print("pareto front over all budgets (val acc vs params):")
    for t in pareto_front([t for t, _ in tagged]):
        print(f"  {where[id(t)]:<15} trial {t.number:>3}  params {t.user_attrs['params']:>7,}  val {pct(t.value)}")


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
    args.plan_rows = _read_plan(args.plan) if args.plan else None
    if args.plan and _legacy(args):
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
            _check_writable(_paths(args, name)[0])
    if args.timeout and not args.deadline:
        args.deadline = time.time() + args.timeout
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = guard_storage(get_storage(args.storage))
    total = args.time or DEFAULT_TIME.get(device.type, DEFAULT_TIME["cpu"])
    t0, data = time.time(), _Data(args, device)
    outcomes: list[Outcome] = []
    for i, (b, name) in enumerate(zip(args.budget, names, strict=True)):
        left = max(total - (time.time() - t0), 0.25 * total / len(names)) / (len(names) - i)  # a share of what is left
        outcomes.append(_search(args, argv, b, name, storage, space, data, device, left, outcomes))
        if outcomes[-1].fatal:
            return 2
        if several and not args.worker:
            print(flush=True)
    if several and not args.worker:
        _closing(outcomes, storage)
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
