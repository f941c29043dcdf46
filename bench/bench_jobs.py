"""Several trainings at once on one device: their summed training throughput for N = 1, 2, 4, 8 (a benchmark).

    python bench/bench_jobs.py [--jobs 1,2,4,8] [--spec FILE] [--epochs 3] [--train-limit N]
        [--device D] [--data-dir DIR] [--precision auto|fp32|bf16] [--graphs auto|on|off]

What ``search.run --jobs N`` does on one device: N processes, each training a network of its own.
For each N, N processes start; each loads the training images onto the device, builds the spec
(default: the 20,000-budget export ``space/zoo/search_cpu20000_19089.yaml``) and waits at a barrier,
so that all N train together, each ``--epochs`` epochs with the spec's recipe (CUDA-graphed on CUDA,
as in the search; on the CPU each gets ``cores // N`` threads).  No evaluation: training only.

Printed for each N: each process's images/s over its epochs after the first (the first holds the
graph capture and warm-up), their sum, and the sum against N = 1; then the N with the most images/s
summed, the default ``--jobs`` that this device's figures argue for.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing as mp
import os
import queue
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPEC = ROOT / "space" / "zoo" / "search_cpu20000_19089.yaml"


def _child(rank: int, a: dict[str, Any], barrier: Any, out: Any) -> None:
    import torch

    from space.build import build
    from space.io import load
    from trainer.data import load_train, resolve_data_dir
    from trainer.loop import fit, resolve_device

    try:
        device = resolve_device(a["device"])
        spec = load(a["spec"])
        train = load_train(resolve_data_dir(a["data_dir"])).head(a["train_limit"] or None).to(device)
        recipe = dataclasses.replace(spec.recipe, epochs=a["epochs"], seed=rank)
        torch.manual_seed(rank)
        model = build(spec)
        threads = max(1, (os.cpu_count() or 1) // a["n"]) if device.type == "cpu" else None
    except BaseException as e:  # the barrier must not wait for a child that cannot start
        barrier.abort()
        out.put((rank, f"{type(e).__name__}: {e}", []))
        return
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        out.put((rank, "another process could not start", []))
        return
    result = fit(model, train, recipe, device, threads=threads, graphs=a["graphs"], precision=a["precision"])
    out.put((rank, "" if result.ok else f"{result.status}: {result.message}", result.epochs))


def run(n: int, a: dict[str, Any]) -> list[list[dict[str, float]]]:
    """Each of ``n`` processes' epoch metrics, trained at once; SystemExit when one fails."""
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_child, args=(rank, a | {"n": n}, barrier, out)) for rank in range(n)]
    for p in procs:
        p.start()
    got: list[tuple[int, str, list[dict[str, float]]]] = []
    while len(got) < n:
        try:
            got.append(out.get(timeout=1.0))
        except queue.Empty:  # a process that died without a word (killed, out of memory) would be waited for
            if not any(p.is_alive() for p in procs) and out.empty():
                told = {rank for rank, _, _ in got}
                got += [(rank, f"died with exit code {p.exitcode}", []) for rank, p in enumerate(procs)
                        if rank not in told]
    for p in procs:
        p.join()
    got.sort(key=lambda g: g[0])
    failed = [f"process {rank}: {why}" for rank, why, _ in got if why]
    if failed:
        raise SystemExit(f"bench: N = {n}: " + "; ".join(failed))
    return [epochs for _, _, epochs in got]


def rate(epochs: list[dict[str, float]]) -> float:
    """Training images per second over the epochs after the first (all of them when there is one)."""
    steady = epochs[1:] or epochs
    return sum(m["images_per_second"] * m["train_seconds"] for m in steady) / sum(m["train_seconds"] for m in steady)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", default="1,2,4,8", help="the Ns to run, comma-separated (1,2,4,8)")
    p.add_argument("--spec", type=Path, default=SPEC, help=f"default: {SPEC.relative_to(ROOT)}")
    p.add_argument("--epochs", type=int, default=3, help="epochs each process trains (3; the first is not timed)")
    p.add_argument("--train-limit", type=int, default=0, help="the first N training images (0: all 60,000)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--data-dir", help="default: $CNNSEARCH_DATA, then the project's data/")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    p.add_argument("--graphs", choices=("auto", "on", "off"), default="auto",
                   help="CUDA graphs (auto: on CUDA, as the search does)")
    args = p.parse_args(argv)
    try:
        ns = [int(x) for x in args.jobs.split(",")]
    except ValueError:
        p.error(f"--jobs: expected numbers such as 1,2,4,8, got {args.jobs!r}")
    if not ns or min(ns) < 1:
        p.error(f"--jobs: expected numbers >= 1, got {args.jobs!r}")
    if args.epochs < 1:
        p.error(f"--epochs: expected >= 1, got {args.epochs}")
    if not args.spec.is_file():
        p.error(f"--spec: no such file: {args.spec}")
    import torch

    from trainer.loop import resolve_device

    device = resolve_device(args.device)
    a = {"spec": str(args.spec), "epochs": args.epochs, "train_limit": args.train_limit, "device": str(device),
         "data_dir": args.data_dir, "precision": None if args.precision == "auto" else args.precision,
         "graphs": {"auto": None, "on": True, "off": False}[args.graphs]}
    print(f"bench: {args.spec.name}, {args.epochs} epoch(s) each, {args.train_limit or 60000:,} training images, "
          f"on {device}; torch {torch.__version__}, {os.cpu_count()} CPUs; N = {', '.join(map(str, ns))}",
          flush=True)
    sums: dict[int, float] = {}
    for n in ns:
        rates = [rate(e) for e in run(n, a)]
        sums[n] = sum(rates)
        base = sums.get(1)
        vs = f"  {sums[n] / base:5.2f}x N=1" if base else ""
        print(f"N = {n}: {sums[n]:10,.0f} images/s summed{vs}  (each: {', '.join(f'{r:,.0f}' for r in rates)})",
              flush=True)
    best = max(sums, key=lambda k: sums[k])
    print(f"most images/s summed: N = {best} ({sums[best]:,.0f} images/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
