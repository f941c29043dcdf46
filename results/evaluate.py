"""``python -m results.evaluate best.yaml --seeds 3``: the final evaluation, the one time the test set is read.

Trains the spec with its recipe on all 60,000 training images (train + validation) once per seed, then
measures each trained network on the 10,000 test images, exactly once.  Mean, standard deviation and the
per-seed figures go back into the spec (a ``test:`` section, written atomically, header updated) and into
a JSON file beside it (``best.test.json``).  A spec that already has a ``test:`` section is refused unless
``--force``: looking at the test set again to pick between networks would make it a validation set.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from results._common import Parser, UsageError, now_utc, pct, positive_int, render, run_main, write_text
from space.spec import NetSpec

__all__ = ["evaluate_spec", "json_path", "main"]

_MONITOR = 1000  # training images evaluated after each epoch to follow the run (the test set is not)


def json_path(spec_path: str | Path) -> Path:
    p = Path(spec_path)
    return p.with_name(f"{p.stem}.test.json")


def evaluate_spec(spec: NetSpec, seeds: int = 3, *, data_dir: str | None = None, device: Any = None,
                  epochs: int | None = None, train_limit: int | None = None, dataset: str | None = None,
                  download: bool = False,
                  log: Callable[[str], None] | None = None, precision: str | None = None) -> dict[str, Any]:
    """Train ``spec`` on train + validation once per seed (``recipe.seed``, ``+1``, ...) and measure the test set.

    Returns the ``test:`` section: ``acc_mean``, ``acc_std`` (sample standard deviation; 0 for one seed),
    ``per_seed`` (seed, acc, loss, train_seconds) and how it was made.  ``dataset``: the kind to read
    (default: the spec's ``info["dataset"]``, else MNIST); data of the spec's kind with another content hash
    are refused.
    """
    from results._common import device as _device
    from trainer.train import spec_data, train_and_test

    dev = _device(device)
    data, train, test = spec_data(spec, dataset, data_dir, download)
    train = train.head(train_limit)
    monitor = train.head(_MONITOR)
    n_epochs = epochs or spec.recipe.epochs
    rows = []
    for i in range(seeds):
        seed = spec.recipe.seed + i
        result, ev = train_and_test(spec, seed, train, test, dev, eval_data=monitor, epochs=n_epochs,
                                    precision=precision)
        if ev is None:  # the one look at the test set, for this seed, happens only after a finished run
            raise UsageError(f"training with seed {seed} failed: {result.status}: {result.message}")
        rows.append({"seed": seed, "acc": round(ev.acc, 5), "loss": round(ev.loss, 5),
                     "train_seconds": round(result.seconds, 1), "precision": result.precision})
        if log:
            log(f"seed {seed}: test accuracy {pct(ev.acc)} ({result.seconds:.1f}s)")
    accs = [float(r["acc"]) for r in rows]  # type: ignore[arg-type]
    return {
        "acc_mean": round(statistics.fmean(accs), 5),
        "acc_std": round(statistics.stdev(accs), 5) if len(accs) > 1 else 0.0,
        "per_seed": rows,
        "epochs": n_epochs,
        "train_images": len(train),
        "test_images": len(test),
        "dataset": data.record(),
        "device": str(dev),
        "precision": rows[-1]["precision"],
        "date": now_utc(),
    }


def _body(argv: Sequence[str] | None) -> int:
    import os

    from search.export import versions
    from space.cli import dataset_arg
    from space.io import load

    p = Parser(prog="python -m results.evaluate", description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("spec", metavar="SPEC.yaml", help="an exported spec (python -m results.export)")
    p.add_argument("--seeds", type=positive_int, default=3, help="training runs with seeds recipe.seed, +1, ... (3)")
    p.add_argument("--force", action="store_true", help="evaluate again although the spec has a test: section")
    p.add_argument("--json", metavar="FILE", help="the JSON summary (default: SPEC.test.json beside the spec)")
    p.add_argument("--data-dir", metavar="DIR", help="data folder (default: $CNNSEARCH_DATA, else data/)")
    dataset_arg(p, None)
    p.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    p.add_argument("--precision", choices=("fp32", "bf16"), help="default: bf16 where the device supports it")
    p.add_argument("--epochs", type=positive_int, help="override the recipe's epochs (smoke tests)")
    p.add_argument("--train-limit", type=positive_int, metavar="N", help="train on the first N images (smoke tests)")
    args = p.parse_args(argv)
    path = Path(args.spec)
    spec = load(path)
    out_json = Path(args.json) if args.json else json_path(path)
    if "test" in spec.info and not args.force:
        t = spec.info["test"]
        raise UsageError(f"{path} was already evaluated on the test set ({pct(t.get('acc_mean'))} on "
                         f"{t.get('date', '?')}); evaluating again makes the test set a validation set "
                         "(--force to do it anyway)")
    for target in (path, out_json):  # fail before hours of training, not after
        if not os.access(target.parent if str(target.parent) else ".", os.W_OK) or target.is_dir() \
                or (target.exists() and not os.access(target, os.W_OK)):
            raise UsageError(f"cannot write {target}")
    test = evaluate_spec(spec, args.seeds, data_dir=args.data_dir, device=args.device, epochs=args.epochs,
                         train_limit=args.train_limit, dataset=args.dataset, download=args.download,
                         log=print, precision=args.precision)
    test["versions"] = versions()
    done = dataclasses.replace(spec, info=dict(spec.info) | {"test": test})
    summary = {"spec": str(path), "name": spec.name, "params": spec.info.get("metrics", {}).get("params"),
               "val_acc": spec.info.get("metrics", {}).get("val_acc"), "test": test}
    write_text(out_json, json.dumps(summary, indent=2) + "\n")
    write_text(path, render(done))
    print(f"test accuracy {pct(test['acc_mean'])} +- {100 * test['acc_std']:.2f} over {args.seeds} seed(s); "
          f"written to {path} (test:) and {out_json}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_body, argv)


if __name__ == "__main__":
    sys.exit(main())
