"""``python -m results.verify best.yaml``: does an exported spec still give what was recorded?

Rebuilds the network and checks its parameter count against the recorded one (and the budget), then
re-trains it for its epochs on the same train/validation split the search used and checks that the
validation accuracy is reproduced within noise.  Exit status 0: reproduced; 1: not; 2: bad input.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from results._common import Parser, UsageError, pct, run_main
from space.analysis import count_params
from space.spec import NetSpec

__all__ = ["Verdict", "verify", "tolerance_for", "main"]


@dataclass
class Verdict:
    """What :func:`verify` found; ``ok`` is false when any check failed."""

    params_recorded: int | None
    params_built: int
    val_recorded: float | None = None
    val_reproduced: float | None = None
    tolerance: float | None = None
    seconds: float = 0.0
    device: str = ""
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def diff(self) -> float | None:
        if self.val_recorded is None or self.val_reproduced is None:
            return None
        return self.val_reproduced - self.val_recorded

    def lines(self) -> list[str]:
        out = [f"parameters: recorded {self.params_recorded if self.params_recorded is not None else '-'}, "
               f"rebuilt {self.params_built}"]
        if self.val_reproduced is not None:
            d = self.diff
            out.append(f"validation accuracy: recorded {pct(self.val_recorded)}, re-trained {pct(self.val_reproduced)}"
                       + (f" (difference {100 * d:+.2f} points, tolerance {100 * (self.tolerance or 0):.2f}; "
                          f"{self.seconds:.1f}s on {self.device})" if d is not None else ""))
        out += self.notes
        out += [f"FAILED: {p}" for p in self.problems]
        out.append("verified" if self.ok else "NOT verified")
        return out


def tolerance_for(acc: float, n_val: int) -> float:
    """How far a re-trained accuracy may differ from the recorded one: three standard deviations of the
    difference of two accuracies measured on ``n_val`` images (seed and hardware noise are of that order on
    MNIST), and at least 0.2 points."""
    p = min(max(acc, 0.0), 1.0)
    return max(0.002, 3.0 * math.sqrt(2.0 * max(p * (1.0 - p), 1.0 / n_val) / n_val))


def verify(spec: NetSpec, *, retrain: bool = True, data_dir: str | None = None, device: Any = None,
           tolerance: float | None = None, dataset: str | None = None, download: bool = False) -> Verdict:
    """Check a spec against what ``spec.info`` records (metrics.params, metrics.val_acc, search.*).

    The parameter count is checked first; a mismatch fails at once, without training.
    """
    from space.build import build

    metrics = spec.info.get("metrics") or {}
    search = spec.info.get("search") or {}
    recorded = metrics.get("params")
    built = sum(p.numel() for p in build(spec).parameters())
    v = Verdict(params_recorded=recorded, params_built=built, val_recorded=metrics.get("val_acc"))
    if recorded is None:
        v.problems.append("the spec records no parameter count (metrics.params)")
    elif recorded != built:
        v.problems.append(f"parameter count mismatch: recorded {recorded:,}, rebuilt network has {built:,}")
    analysed = count_params(spec)
    if analysed != built:  # pragma: no cover - space's own tests pin this down
        v.problems.append(f"analysis counts {analysed:,} parameters, the built network has {built:,}")
    budget = search.get("budget")
    if budget is not None and built > budget:
        v.problems.append(f"{built:,} parameters exceed the search budget of {budget:,}")
    if v.problems or not retrain:
        return v
    if v.val_recorded is None:
        v.notes.append("no validation accuracy recorded (trial not completed): nothing to compare the re-training with")
    acc, seconds, dev, n_val = retrain_val(spec, data_dir=data_dir, device=device, dataset=dataset,
                                           download=download)
    v.val_reproduced, v.seconds, v.device = acc, seconds, dev
    if v.val_recorded is not None:
        v.tolerance = tolerance if tolerance is not None else tolerance_for(v.val_recorded, n_val)
        if abs(acc - v.val_recorded) > v.tolerance:
            v.problems.append(f"validation accuracy not reproduced: recorded {pct(v.val_recorded)}, "
                              f"re-trained {pct(acc)} (tolerance {100 * v.tolerance:.2f} points)")
    return v


def retrain_val(spec: NetSpec, *, data_dir: str | None = None, device: Any = None,
                precision: str | None = None, dataset: str | None = None,
                download: bool = False) -> tuple[float, float, str, int]:
    """Train ``spec`` as the search trained it (same data, split and seed); (val_acc, seconds, device, n_val).

    ``dataset``: default the spec's ``info["dataset"]``, else MNIST; data of that kind with another content
    hash than the recorded one are refused.
    """
    import torch

    from results._common import device as _device
    from space.build import build
    from trainer.data import load_splits, resolve_dataset
    from trainer.loop import fit

    search = spec.info.get("search") or {}
    if search.get("epochs") and search["epochs"] != spec.recipe.epochs:
        # exported with a longer schedule (search.run --export-epochs): re-train what the search trained
        from search.export import with_epochs

        spec = with_epochs(spec, int(search["epochs"]))
    dev = _device(device)
    info = resolve_dataset(dataset, spec.info.get("dataset"), data_dir, input=spec.input,
                           classes=spec.classes, download=download)
    # the split the search trained on: search.run seeds it with --seed, recorded as search.seed
    data = load_splits(data_dir, dataset=info.name, val=int(search.get("val", 5000)),
                       limit=search.get("train_limit") or None, seed=int(search.get("seed", spec.recipe.seed)),
                       device=dev)
    torch.manual_seed(spec.recipe.seed)
    model = build(spec)
    t0 = time.perf_counter()
    precision = precision or (spec.info.get("metrics") or {}).get("precision")  # as the search trained it
    result = fit(model, data, spec.recipe, dev, precision=precision)
    seconds = time.perf_counter() - t0
    if result.status != "ok":
        raise UsageError(f"re-training failed: {result.status}: {getattr(result, 'message', '')}")
    return float(result.final["val_acc"]), seconds, str(dev), len(data.val)


def _body(argv: Sequence[str] | None) -> int:
    from space.cli import dataset_arg
    from space.io import load

    p = Parser(prog="python -m results.verify", description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("spec", metavar="SPEC.yaml", help="an exported spec (python -m results.export)")
    p.add_argument("--no-train", action="store_true", help="check the parameter count only")
    p.add_argument("--tolerance", type=float, metavar="T", help="allowed |difference| of accuracies (default: auto)")
    p.add_argument("--data-dir", metavar="DIR", help="data folder (default: $CNNSEARCH_DATA, else data/)")
    dataset_arg(p, None)
    p.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    args = p.parse_args(argv)
    spec = load(args.spec)
    v = verify(spec, retrain=not args.no_train, data_dir=args.data_dir, device=args.device, tolerance=args.tolerance,
               dataset=args.dataset, download=args.download)
    for line in v.lines():
        print(line)
    return 0 if v.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_body, argv)


if __name__ == "__main__":
    sys.exit(main())
