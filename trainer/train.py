"""Train a spec with its recipe on all its training images (MNIST's 60,000), then measure it once on the test set.

    python -m trainer.train SPEC.yaml [--epochs N] [--seeds K] [--device D]
        [--data-dir DIR] [--dataset mnist|fashion|idx|folder] [--out PATH] [--train-limit N] [--compile]
        [--precision fp32|bf16]

The dataset is ``--dataset``, else the one the spec records (an exported spec's ``dataset:``), else
MNIST; data whose content hash differs from the recorded one are refused.  Seeds are ``recipe.seed + i``
for ``i < K``.  One line per epoch, then
``test accuracy: 99.45% ± 0.03 (3 seeds)`` (mean ± sample standard deviation,
in percentage points).  The result goes, atomically, to ``SPEC.result.json``
beside the spec or to ``--out``.  A bad spec, data directory or argument gives
one line on stderr and exit status 2, and nothing is written; a run that
diverges or runs out of memory is recorded and gives exit status 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from space.analysis import count_params
from space.build import build
from space.cli import Parser, UsageError, dataset_arg, run_main
from space.cli import resolve_device as device_arg
from space.io import load, write_atomic
from space.spec import NetSpec
from trainer.data import Info, Split, load_test, load_train, resolve_dataset
from trainer.loop import (
    PRECISIONS,
    Evaluation,
    FitResult,
    cpu_threads,
    evaluate,
    fit,
    resolve_precision,
)

__all__ = ["spec_data", "train_and_test", "main"]


def _count(name: str, lo: int) -> Any:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"{name} must be >= {lo}, got {v}")
        return v
    return parse


def _parser() -> Parser:
    p = Parser(prog="python -m trainer.train", description=__doc__.splitlines()[0])
    p.add_argument("spec", help="the spec YAML file")
    p.add_argument("--epochs", type=_count("--epochs", 1), help="override the recipe's epochs")
    p.add_argument("--seeds", type=_count("--seeds", 1), default=1, help="train K times (default 1)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--data-dir", help="folder holding MNIST/raw/ (default: $CNNSEARCH_DATA, then data/)")
    dataset_arg(p, None)
    p.add_argument("--out", help="the result JSON (default: SPEC.result.json beside the spec)")
    p.add_argument("--train-limit", type=_count("--train-limit", 0), default=0,
                   help="train on the first N training images only (0: all of them)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (slow to start)")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="forward passes in fp32 or under bf16 autocast (default: bf16 on CUDA and on a CPU "
                        "that runs it natively, else fp32)")
    return p


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split("\n"))


class _Progress:
    """An in-place bar on a terminal; nothing otherwise."""

    def __init__(self, label: str, tty: bool) -> None:
        self.label, self.tty, self.last = label, tty, 0.0

    def __call__(self, step: int, steps: int) -> None:
        now = time.monotonic()
        if not self.tty or (now - self.last < 0.2 and step != steps):
            return
        self.last = now
        done = 30 * step // steps
        sys.stdout.write(f"\r{self.label} [{'#' * done}{'.' * (30 - done)}] {step}/{steps}")
        sys.stdout.flush()

    def clear(self) -> None:
        if self.tty:
            sys.stdout.write("\r\033[K")


def spec_data(spec: NetSpec, dataset: str | None, data_dir: str | None,
              download: bool = False) -> tuple[Info, Split, Split]:
    """(dataset, training split, test split) for re-training ``spec``: ``dataset``, else the one the spec
    records, else MNIST; data whose content hash differs from the recorded one are refused (DataError)."""
    data = resolve_dataset(dataset, spec.info.get("dataset"), data_dir, input=spec.input, classes=spec.classes,
                           download=download)
    return data, load_train(data_dir, dataset=data.name), load_test(data_dir, dataset=data.name, download=download)


def train_and_test(spec: NetSpec, seed: int, train: Split, test: Split, device: str | torch.device | None = None,
                   *, epochs: int | None = None, report: Callable[[int, dict[str, float]], None] | None = None,
                   eval_data: Split | None = None, compile: bool = False,
                   progress: Callable[[int, int], None] | None = None,
                   precision: str | None = None) -> tuple[FitResult, Evaluation | None]:
    """A fresh network of ``spec``, trained with its recipe and ``seed`` on ``train``, measured once on ``test``.

    The final evaluation of ``python -m trainer.train`` and ``python -m results.evaluate``: the
    weights are drawn under ``torch.manual_seed(seed)`` and the recipe runs with ``seed``.  The
    test evaluation is None when training stopped early (NaN loss, out of memory: see the
    FitResult); ``test`` is never seen during training.  ``precision`` (None: auto, see
    :func:`trainer.loop.fit`) holds for the training and the test evaluation alike.
    """
    recipe = dataclasses.replace(spec.recipe, seed=seed)
    torch.manual_seed(seed)
    model = build(spec)
    result = fit(model, train, recipe, device, report, eval_data=eval_data, epochs=epochs, compile=compile,
                 progress=progress, precision=precision)
    if not result.ok:
        return result, None
    return result, evaluate(model, test, device, precision=result.precision)


def _run(spec: NetSpec, seed: int, train: Split, test: Split, device: torch.device, epochs: int | None,
         compile: bool, precision: str, tag: str) -> tuple[FitResult, Evaluation | None]:
    total = epochs or spec.recipe.epochs
    bar = _Progress("", sys.stdout.isatty())

    def report(epoch: int, m: dict[str, float]) -> None:
        bar.clear()
        print(f"{tag}epoch {epoch:>{len(str(total))}}/{total}  loss {m['train_loss']:.4f}  "
              f"train {100 * m['train_acc']:.2f}%  {m['images_per_second']:,.0f} img/s  {m['seconds']:.1f} s",
              flush=True)
        bar.label = f"{tag}epoch {epoch + 1}/{total}"

    bar.label = f"{tag}epoch 1/{total}"
    try:
        return train_and_test(spec, seed, train, test, device, epochs=epochs, report=report, compile=compile,
                              progress=bar, precision=precision)
    finally:
        bar.clear()


def main(argv: list[str] | None = None) -> int:
    return run_main(_body, argv)


def _body(argv: Any) -> int:
    args = _parser().parse_args(argv)
    try:
        spec = load(args.spec)
        device = device_arg(args.device)
        threads = cpu_threads()
        precision = resolve_precision(args.precision, device)
        out = Path(args.out) if args.out else Path(args.spec).with_suffix(".result.json")
        if not out.parent.is_dir():
            raise UsageError(f"--out: no such folder: {out.parent}")
        if out.is_dir():
            raise UsageError(f"--out: is a folder: {out}")
        data, train, test = spec_data(spec, args.dataset, args.data_dir, args.download)
        train = train.head(args.train_limit or None)
    except ValueError as e:
        raise UsageError(_one_line(e)) from None
    train, test = train.to(device), test.to(device)
    if device.type == "cpu":
        torch.set_num_threads(threads)  # fit sets it while training; the test evaluation runs the same way

    seeds = [spec.recipe.seed + i for i in range(args.seeds)]
    epochs = args.epochs or spec.recipe.epochs
    print(f"{spec.name}: {count_params(spec):,} parameters, {len(train):,} training images, "
          f"{epochs} epochs, {len(seeds)} seed{'s' * (len(seeds) > 1)}, on {device} in {precision}", flush=True)
    runs: list[dict[str, Any]] = []
    for seed in seeds:
        tag = f"seed {seed}  " if len(seeds) > 1 else ""
        result, ev = _run(spec, seed, train, test, device, args.epochs, args.compile, precision, tag)
        tested = {"test_acc": ev.acc, "test_loss": ev.loss} if ev else {}
        run: dict[str, Any] = {"seed": seed, "status": result.status, "message": result.message,
                               "seconds": result.seconds, "precision": result.precision, **tested,
                               **({"eager": result.eager} if result.eager else {}),  # why no CUDA graph
                               "epochs": result.epochs}
        runs.append(run)
        if ev is None:
            print(f"train: {tag}{result.status}: {result.message}", file=sys.stderr)
        elif len(seeds) > 1:
            print(f"{tag}test accuracy: {100 * ev.acc:.2f}%", flush=True)

    accs = [100 * r["test_acc"] for r in runs if r["status"] == "ok"]
    mean = statistics.fmean(accs) if accs else None
    std = statistics.stdev(accs) if len(accs) > 1 else 0.0 if accs else None
    doc = {
        "spec": str(args.spec),
        "name": spec.name,
        "params": count_params(spec),
        "dataset": data.record(),     # name, SHA-256 of the training images and labels, shape, statistics
        "device": str(device),
        "precision": precision,       # fp32, or bf16 autocast in the forward passes
        "epochs": epochs,
        "train_images": len(train),
        "test_images": len(test),
        "seeds": seeds,
        "test_accuracy_mean": mean,   # percent
        "test_accuracy_std": std,     # percentage points, sample standard deviation
        "recipe": dataclasses.asdict(dataclasses.replace(spec.recipe, epochs=epochs)),
        "runs": runs,
        "torch": torch.__version__,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    write_atomic(out, json.dumps(doc, indent=1) + "\n")
    if mean is not None:
        n = len(accs)
        print(f"test accuracy: {mean:.2f}% ± {std:.2f} ({n} seed{'s' * (n > 1)})")
    print(f"wrote {out}")
    return 0 if len(accs) == len(runs) else 1


if __name__ == "__main__":
    sys.exit(main())
