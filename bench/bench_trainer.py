"""Our trainer against the reference pipeline, side by side in one run (a benchmark, not a test).

    python bench/bench_trainer.py [--epochs 2] [--device D] [--train-limit N]
        [--data-dir DIR] [--reference PATH] [--order ours-first|reference-first] [--workers N]
        [--graphs auto|on|off|both] [--compile] [--precision auto|fp32|bf16|both] [--fresh]

Both train ``space/zoo/seed000_19642.yaml`` (the reference's network, 19,642
parameters) with its recipe: SGD 0.01 / momentum 0.9 / weight decay 1e-4,
batch 128, StepLR(10, 0.1), 10% centre crop 22 -> 28, rotation +-15 degrees,
on the same training images (all 60,000 or the first N) and device, and
evaluate on the 10,000 test images after each epoch, as the reference does.
The reference (``../shared/reference/seed_baseline.py`` from the repository
root, or ``--reference``) runs as a subprocess, unchanged.  ``--graphs``:
our trainer with CUDA graphs (``on``; the default on CUDA), without
(``off``; the default on the CPU), or both, one after the other;
``--compile``: with the model compiled (``torch.compile``; its compile time
falls in the first epoch).  ``--precision``: our trainer in fp32, under bf16
autocast, or both one after the other (the default on the CPU: ``both``; on
CUDA ``auto``, the trainer's own choice, bf16).

``--fresh``: instead, each as a fresh process timed from start to exit (start-up, data, training,
the test evaluation): the reference, then ``python -m trainer.train`` on the same spec in each
precision, with their wall-clock ratios.

Printed: the training seconds of each epoch for each (evaluation excluded, as
the reference counts it) and their ratio, reference / ours; then one line per
variant of ours with its median and its ratios to the reference and to the
first variant.  The machine may
be shared: run it when it is quiet, and read the medians.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from space.build import build  # noqa: E402
from space.io import load  # noqa: E402
from trainer.data import FILES, load_test, load_train, resolve_data_dir  # noqa: E402
from trainer.loop import fit, resolve_device, resolve_precision  # noqa: E402

SPEC = ROOT / "space" / "zoo" / "seed000_19642.yaml"
REFERENCE = ROOT.parent / "shared" / "reference" / "seed_baseline.py"


def _reference_data(root: Path, tmp: Path) -> Path:
    """A folder the reference can read: torchvision wants the four files uncompressed in MNIST/raw/."""
    raw = root / "MNIST" / "raw"
    if all((raw / f).is_file() for f in FILES):
        return root
    out = tmp / "MNIST" / "raw"
    out.mkdir(parents=True)
    for f in FILES:
        for src in (raw / f, raw / f"{f}.gz", root / f, root / f"{f}.gz"):
            if src.is_file():
                opener = gzip.open if src.suffix == ".gz" else open
                with opener(src, "rb") as fin, open(out / f, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
                break
    return tmp


def _name(graphs: bool | None, compile: bool, precision: str | None = None) -> str:
    return ({None: "ours", True: "ours graphs", False: "ours eager"}[graphs] + (" compiled" if compile else "")
            + (f" {precision}" if precision else ""))


def run_ours(epochs: int, device: torch.device, data_dir: Path, limit: int | None,
             graphs: bool | None, compile: bool, precision: str | None = None) -> list[dict[str, float]]:
    spec = load(SPEC)
    train = load_train(data_dir).head(limit).to(device)
    test = load_test(data_dir).to(device)
    recipe = dataclasses.replace(spec.recipe, epochs=epochs)
    torch.manual_seed(1)
    model = build(spec)

    name = _name(graphs, compile, precision)

    def report(epoch: int, m: dict[str, float]) -> None:
        print(f"  {name:<12} epoch {epoch}: train {m['train_seconds']:6.2f} s  ({m['images_per_second']:7,.0f} img/s)"
              f"  epoch {m['seconds']:6.2f} s  test acc {100 * m['val_acc']:.2f}%", flush=True)

    result = fit(model, train, recipe, device, report, eval_data=test, graphs=graphs, compile=compile,
                 precision=precision)
    if not result.ok:
        raise SystemExit(f"bench: our run failed: {result.status}: {result.message}")
    return result.epochs


def run_reference(script: Path, epochs: int, device: torch.device, data_dir: Path,
                  limit: int | None, workers: int) -> list[dict[str, float]]:
    cmd = [sys.executable, str(script), "--data-dir", str(data_dir), "--epochs", str(epochs),
           "--device", str(device), "--train-limit", str(limit or 0), "--workers", str(workers)]
    records = []
    t_last = time.perf_counter()
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=str(ROOT)) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.perf_counter()
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                print(f"  reference: {line.rstrip()}")
                continue
            rec["wall_seconds"] = now - t_last  # between lines: the epoch with its evaluation (+ start-up, first)
            t_last = now
            records.append(rec)
            print(f"  {'reference':<12} epoch {rec['epoch']}: train {rec['train_seconds']:6.2f} s  "
                  f"({rec['train_images_per_second']:7,.0f} img/s)  wall {rec['wall_seconds']:6.2f} s  "
                  f"test acc {100 * rec['test_accuracy']:.2f}%", flush=True)
    if proc.returncode:
        raise SystemExit(f"bench: the reference exited with status {proc.returncode}")
    return records


def run_fresh(script: Path, epochs: int, device: torch.device, data_dir: Path, ref_dir: Path, limit: int | None,
              workers: int, precisions: list[str]) -> int:
    """Each run a fresh process, timed from its start to its exit."""
    runs = {"reference": [sys.executable, str(script), "--data-dir", str(ref_dir), "--epochs", str(epochs),
                          "--device", str(device), "--train-limit", str(limit or 0), "--workers", str(workers)]}
    with tempfile.TemporaryDirectory(prefix="bench-spec-") as tmp:
        spec = Path(tmp) / SPEC.name
        shutil.copy2(SPEC, spec)
        for prec in precisions:
            runs[f"ours {prec}"] = [sys.executable, "-m", "trainer.train", str(spec), "--epochs", str(epochs),
                                    "--device", str(device), "--data-dir", str(data_dir), "--precision", prec,
                                    "--train-limit", str(limit or 0), "--out", str(Path(tmp) / f"{prec}.json")]
        wall = {}
        for name, cmd in runs.items():
            t0 = time.perf_counter()
            r = subprocess.run(cmd, cwd=str(ROOT), capture_output=True, text=True)
            wall[name] = time.perf_counter() - t0
            if r.returncode:
                raise SystemExit(f"bench: {name} exited with status {r.returncode}: {r.stderr[-500:]}")
            print(f"  {name:<12} {wall[name]:7.2f} s wall ({epochs} epoch(s) and the test evaluation, "
                  f"from a fresh process)", flush=True)
    print(f"\nwall clock of a fresh process, {epochs} epoch(s) train + test (load now {os.getloadavg()[0]:.2f})")
    for name, s in wall.items():
        print(f"  {name:<12} {s:7.2f} s  reference/this {wall['reference'] / s:5.2f}x")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--train-limit", type=int, default=0, help="the first N training images (0: all 60,000)")
    p.add_argument("--data-dir", help="default: $CNNSEARCH_DATA, then the project's data/")
    p.add_argument("--reference", type=Path, default=REFERENCE, help=f"default: {REFERENCE}")
    p.add_argument("--order", choices=("ours-first", "reference-first"), default="ours-first")
    p.add_argument("--graphs", choices=("auto", "on", "off", "both"), default="auto",
                   help="our trainer with CUDA graphs, without, or both (auto: with on CUDA)")
    p.add_argument("--compile", action="store_true", help="torch.compile our model")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "both"),
                   help="our trainer in fp32, bf16 autocast or both (default: both on the CPU, auto on CUDA)")
    p.add_argument("--fresh", action="store_true",
                   help="time each run as a fresh process from start to exit, train + test")
    p.add_argument("--workers", type=int, default=2,
                   help="the reference's DataLoader workers (2, its default; a 16-core GPU machine: 12)")
    a = p.parse_args(argv)
    if not a.reference.is_file():
        p.error(f"no reference script at {a.reference} (pass --reference PATH)")
    device = resolve_device(a.device)
    precision = a.precision or ("both" if device.type == "cpu" else "auto")
    precisions: list[str | None] = {"auto": [resolve_precision(None, device)], "fp32": ["fp32"],
                                    "bf16": ["bf16"], "both": ["fp32", "bf16"]}[precision]
    root = resolve_data_dir(a.data_dir)
    limit = a.train_limit or None
    print(f"bench: {SPEC.name}, {a.epochs} epoch(s), {limit or 60000:,} training images, batch 128, on {device}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"reference workers {a.workers}, ours in {' and '.join(str(x) for x in precisions)}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')} (both runs, inherited); "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-mnist-") as tmp:
        ref_dir = _reference_data(root, Path(tmp))
        if a.fresh:
            return run_fresh(a.reference, a.epochs, device, root, ref_dir, limit, a.workers,
                             [str(x) for x in precisions])
        variants = {"auto": [None], "on": [True], "off": [False], "both": [False, True]}[a.graphs]
        ours: dict[str, list[dict[str, float]]] = {}
        ref: list[dict[str, float]] = []
        for who in (("ours", "reference") if a.order == "ours-first" else ("reference", "ours")):
            if who == "ours":
                for graphs in variants:
                    for prec in precisions:
                        ours[_name(graphs, a.compile, prec)] = run_ours(a.epochs, device, root, limit, graphs,
                                                                        a.compile, prec)
            else:
                ref = run_reference(a.reference, a.epochs, device, ref_dir, limit, a.workers)
    t_ref = [r["train_seconds"] for r in ref]
    for name, epochs in ours.items():
        t_ours = [m["train_seconds"] for m in epochs]
        print(f"\nepoch  reference train s  {name} train s  ratio (reference/{name})")
        for i, (r, o) in enumerate(zip(t_ref, t_ours, strict=True), 1):
            print(f"{i:>5}  {r:17.2f}  {o:{len(name) + 8}.2f}  {r / o:5.2f}x")
        mr, mo = statistics.median(t_ref), statistics.median(t_ours)
        print(f"median {mr:16.2f}  {mo:{len(name) + 8}.2f}  {mr / mo:5.2f}x   (load now {os.getloadavg()[0]:.2f})")
        whole = statistics.median(m["seconds"] for m in epochs)
        print(f"{name}, whole epoch with test evaluation: median {whole:.2f} s")
    medians = {name: statistics.median(m["train_seconds"] for m in epochs) for name, epochs in ours.items()}
    first = next(iter(medians))
    width = max(len(n) for n in medians)
    print(f"\nmedian train seconds per epoch (reference {statistics.median(t_ref):.2f} s)")
    for name, med in medians.items():
        print(f"  {name:<{width}}  {med:6.2f} s  reference/this {statistics.median(t_ref) / med:5.2f}x  "
              f"{first}/this {medians[first] / med:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
