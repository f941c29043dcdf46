"""A study's setup for ``python -m search.run``: its settings checked, its fidelity plan (measured, given
or kept from its first run), its warm starts, where its files go, and the data it trains on."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from space.cli import UsageError
from space.spec import SpecError

__all__ = ["DEFAULT_TIME", "DEFAULT_EPOCHS", "DEFAULT_TRIALS", "Outcome", "legacy", "make_study", "stored_rungs",
           "plan_for", "read_plan", "probe_specs", "enqueue_zoo", "warm_start", "paths", "check_writable",
           "DataCache", "record_dataset"]

DEFAULT_TIME = {"cpu": 50 * 60.0, "cuda": 8 * 60.0}
DEFAULT_EPOCHS = 15
DEFAULT_TRIALS = 40


@dataclass
class Outcome:
    budget: int
    study: str
    best: Any            # the best FrozenTrial, or None
    out: Path | None     # the export written
    complete: bool       # the study reached its plan
    fatal: bool = False  # a worker stopped on a one-line error


def legacy(args: argparse.Namespace) -> bool:
    """Explicit --trials / --epochs / --train-limit: a fixed number of trials at one fidelity, as before plans."""
    return any(v is not None for v in (args.trials, args.epochs, args.train_limit))


def make_study(args: argparse.Namespace, storage: Any, name: str, budget: int, create: bool) -> Any:
    import warnings

    import optuna

    from search.sampler import make_sampler
    from search.schedule import RungPruner

    seed = None if args.worker else args.seed
    sampler = make_sampler(args.sampler, seed)
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
        epochs = args.epochs or DEFAULT_EPOCHS if legacy(args) else args.export_epochs or DEFAULT_EPOCHS
        settings = {"budget": budget, "epochs": epochs, "train_limit": args.train_limit or 0, "val": args.val}
        for key, value in settings.items():
            if key in old and old[key] != value:
                raise SpecError(f"study {name!r} exists with {key} {old[key]}, not {value}; "
                                "use another --study-name or the same settings", "--study-name")
        mode = "fixed" if legacy(args) else "plan"
        if old.get("mode", "fixed" if old else mode) != mode:
            how = "a fidelity plan" if mode == "fixed" else "--trials/--epochs/--train-limit"
            raise SpecError(f"study {name!r} exists and was run with {how}; run it the same way, "
                            "or use another --study-name", "--study-name")
        settings["mode"] = mode
        for key, value in (settings | {"seed": args.seed}).items():  # seed: of the train/val split, the first run's
            if key not in old:
                study.set_user_attr(key, value)
    if args.pruner == "median":
        study.pruner = RungPruner(args.epochs or DEFAULT_EPOCHS)
    elif args.pruner == "hyperband":
        study.pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=args.epochs or DEFAULT_EPOCHS,
                                                      reduction_factor=3)
    else:
        study.pruner = optuna.pruners.NopPruner()
    return study


def stored_rungs(study: Any) -> list[Any]:
    from search.plan import Rung

    return [Rung(**r) for r in study.user_attrs.get("plan", [])]


def plan_for(args: argparse.Namespace, study: Any, budget: int, space: Any, data: Any, device: Any,
          seconds: float) -> tuple[Any, list[Any], bool]:
    """The study's plan: (Plan or None, rungs, made now).  A study keeps the plan of its first run."""
    from search.plan import Plan, Rung, make_plan

    if legacy(args):
        trials, epochs = args.trials or DEFAULT_TRIALS, args.epochs or DEFAULT_EPOCHS
        images = min(args.train_limit or len(data.train), len(data.train))
        return None, [Rung(trials, images, epochs, 0, float(trials * epochs))], False
    rungs = stored_rungs(study)
    if rungs:
        a = study.user_attrs
        return Plan(tuple(rungs), sum(r.seconds for r in rungs), float(a.get("plan_budget_seconds", 0)),
                    float(a.get("train_rate", 0)), str(a.get("plan_note", ""))), rungs, False
    if args.plan:
        plan = args.plan_rows
        study.set_user_attr("plan", [asdict(r) for r in plan.rungs])
        return plan, list(plan.rungs), True
    from search.objective import measure_rates

    probes = probe_specs(space, budget, args.seed, shape=args.data_shape)
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


def read_plan(path: str) -> Any:
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


def probe_specs(space: Any, budget: int, seed: int, n: int = 3, shape: tuple[Any, int] = ((1, 28, 28), 10)
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


def enqueue_zoo(study: Any, budget: int, rung0: Any, shape: tuple[Any, int]) -> list[str]:
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


def warm_start(study: Any, rung0: Any, others: Sequence[Outcome], k: int) -> list[str]:
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


def paths(args: argparse.Namespace, name: str) -> tuple[Path, Path]:
    """(export path, artifact dir) of one study."""
    from search.note import default_artifact_dir

    out = Path(args.out) if args.out else Path(args.out_dir or "runs") / name / "best.yaml"
    adir = Path(args.artifact_dir) if args.artifact_dir else default_artifact_dir(args.storage)
    return out, adir


def check_writable(out: Path) -> None:
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


class DataCache:
    """The train and validation splits, loaded once per split seed (the search never opens the test files)."""

    def __init__(self, args: argparse.Namespace, device: Any) -> None:
        self.args, self.device = args, device
        self.cache: dict[int, Any] = {}

    def get(self, seed: int) -> Any:
        from trainer.data import load_splits

        if seed not in self.cache:
            self.cache.clear()
            limit = self.args.train_limit if legacy(self.args) else None
            try:
                self.cache[seed] = load_splits(self.args.data_dir, dataset=self.args.dataset, val=self.args.val,
                                               limit=limit, seed=seed, device=self.device,
                                               download=self.args.download)
            except ValueError as e:
                raise SpecError(str(e), "--val/--train-limit") from None
        return self.cache[seed]


def record_dataset(study: Any, args: argparse.Namespace, name: str) -> None:
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
