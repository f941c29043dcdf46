"""Which pruner should the search use by default?  The same seeded search, once per pruner.

    python bench/bench_pruners.py [--budget 8000] [--trials 16] [--epochs 4] [--train-limit 5000]
        [--pruners median,hyperband,none] [--device cpu]

Each pruner gets its own study in a fresh journal file, with the same sampler seed,
so the first trials are the same networks.  Printed per pruner: wall time, trials
completed / pruned, epochs trained in all, the best validation accuracy, and the
ratios against running without a pruner.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from search.run import main as search  # noqa: E402
from search.storage import get_storage  # noqa: E402


def run(pruner: str, args: argparse.Namespace, folder: Path) -> dict[str, float]:
    storage = folder / f"{pruner}.log"
    argv = ["--budget", str(args.budget), "--trials", str(args.trials), "--epochs", str(args.epochs),
            "--train-limit", str(args.train_limit), "--pruner", pruner, "--seed", str(args.seed),
            "--storage", str(storage), "--out", str(folder / f"{pruner}.yaml"), "--quiet",
            "--artifact-dir", str(folder / "artifacts")]
    if args.device:
        argv += ["--device", args.device]
    t0 = time.perf_counter()
    rc = search(argv)
    seconds = time.perf_counter() - t0
    if rc:
        raise SystemExit(f"search with --pruner {pruner} exited {rc}")
    study = optuna.load_study(study_name=f"budget-{args.budget}", storage=get_storage(str(storage)))
    trials = study.get_trials()
    states = [t.state.name for t in trials]
    return {
        "seconds": seconds,
        "complete": states.count("COMPLETE"),
        "pruned": states.count("PRUNED"),
        "epochs": sum(len(t.intermediate_values) for t in trials),
        "best": study.best_value,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=int, default=8000)
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--train-limit", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device")
    p.add_argument("--pruners", default="median,hyperband,none")
    args = p.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="bench-pruners-") as tmp:
        for pruner in args.pruners.split(","):
            rows[pruner] = run(pruner, args, Path(tmp))
            r = rows[pruner]
            print(f"{pruner:<10} {r['seconds']:7.1f}s  complete {r['complete']:>3}  pruned {r['pruned']:>3}  "
                  f"epochs {r['epochs']:>4}  best val {100 * r['best']:.2f}%", flush=True)
    if "none" in rows:
        base = rows["none"]
        print(f"\nagainst no pruner ({args.trials} trials, budget {args.budget}, {args.epochs} epochs, "
              f"{args.train_limit} train images):")
        for pruner, r in rows.items():
            if pruner != "none":
                print(f"  {pruner:<10} time x{r['seconds'] / base['seconds']:.2f}  "
                      f"epochs x{r['epochs'] / base['epochs']:.2f}"
                      f"  best val {100 * (r['best'] - base['best']):+.2f} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
