"""The fidelity plan: how many trials at which fidelity fit the wall-clock time the user gave.

A plan is a table of rungs, cheapest first (successive halving, as in the Hyperband and ASHA
papers).  Rung 0 samples many networks and trains each briefly on a subset of the training split;
the best ``1/eta`` of each rung, by validation accuracy at that rung's fidelity, are trained again
at the next rung on more images for more epochs; the last rung trains at the full fidelity of the
exported recipe (all training images, the export's epochs), so the network exported is the one
trained as it will be re-trained.

:func:`make_plan` is a pure function of the measured throughput and the time budget.  Its counts are
what that throughput, measured in a few seconds, expects; when the search runs a plan it made, each
rung's share of the time rules instead (:func:`search.schedule.decide` with ``fill``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["HALVING", "Rung", "Plan", "make_plan", "trial_seconds", "format_seconds", "plan_from_rows"]

HALVING = 2   # a rung keeps at most 1/HALVING of the one below (successive halving at its least selective)


@dataclass(frozen=True)
class Rung:
    """``trials`` trials, each trained on ``images`` training images for ``epochs`` epochs; the best
    ``promote`` of them go on to the next rung (0 on the last)."""

    trials: int
    images: int
    epochs: int
    promote: int
    seconds: float   # expected wall time of the whole rung

    @property
    def work(self) -> int:
        """Training images seen by the whole rung (trials x images x epochs)."""
        return self.trials * self.images * self.epochs


@dataclass(frozen=True)
class Plan:
    rungs: tuple[Rung, ...]
    seconds: float            # expected wall time of the whole plan
    budget_seconds: float     # the time it was made for
    train_rate: float         # measured training images per second
    note: str = ""            # why the plan is smaller than asked for, if it is

    @property
    def trials(self) -> int:
        return sum(r.trials for r in self.rungs)

    def deadlines(self) -> tuple[float, ...]:
        """For each rung, the seconds from the start by which it should be done (its planned share of the
        budget, cumulative): a rung still starting trials after its deadline is closed early so that the
        last rung keeps its time."""
        scale = self.budget_seconds / self.seconds if self.seconds > 0 else 1.0
        out, acc = [], 0.0
        for r in self.rungs:
            acc += r.seconds
            out.append(acc * max(1.0, scale))
        return tuple(out)

    def lines(self) -> list[str]:
        """The plan as the table the search prints before it trains."""
        head = f"plan: {self.trials} trials in {len(self.rungs)} rung{'s' if len(self.rungs) != 1 else ''}"
        if self.train_rate > 0:
            head += (f", expected {format_seconds(self.seconds)} of the {format_seconds(self.budget_seconds)} given "
                     f"(measured {self.train_rate:,.0f} training images/s)")
        out = [head,
               "  rung  trials  train images  epochs  promoted  expected"]
        for i, r in enumerate(self.rungs):
            promo = f"top {r.promote}" if r.promote else "export"
            out.append(f"  {i:>4}  {r.trials:>6}  {r.images:>12,}  {r.epochs:>6}  {promo:>8}  "
                       f"{format_seconds(r.seconds) if self.train_rate > 0 else '-':>8}")
        if self.note:
            out.append(f"  note: {self.note}")
        return out


def format_seconds(s: float) -> str:
    s = max(0.0, s)
    if s < 90:
        return f"{s:.0f}s"
    if s < 5400:
        return f"{s / 60:.0f}m"
    return f"{s / 3600:.1f}h"


def trial_seconds(images: int, epochs: int, *, val: int, train_rate: float, eval_rate: float,
                  overhead: float) -> float:
    """Expected wall time of one trial: its epochs of training and validation, and a fixed overhead."""
    return epochs * (images / train_rate + val / eval_rate) + overhead


def _ladder(images: int, epochs: int, levels: int, min_images: int) -> list[tuple[int, int]]:
    """Fidelities from the cheapest to ``(images, epochs)``: each level below halves the images and the
    epochs (a quarter of the work), down to ``min_images`` images and 1 epoch."""
    out = []
    for k in range(levels - 1, -1, -1):
        m = images if k == 0 else max(min(min_images, images), int(round(images / 2 ** k / 100)) * 100)
        out.append((m, max(1, math.ceil(epochs / 2 ** k))))
    return out


def _counts(levels: int, cost: list[float], avail: float, min_ratio: int) -> list[int] | None:
    """Trials per rung when every rung gets an equal share of ``avail`` seconds (the last rung at least one
    trial), each rung at least ``min_ratio`` times the next; the time left over goes to rung 0."""
    top_cost = cost[-1]
    if top_cost > avail:
        return None
    share = avail / levels
    n = [int(share // c) for c in cost]
    if n[-1] < 1:  # the last rung first gets its one trial; the others share what is left
        if levels == 1:
            return None
        share = (avail - top_cost) / (levels - 1)
        n = [int(share // c) for c in cost[:-1]] + [1]
    for i in range(levels - 1):
        n[i + 1] = min(n[i + 1], n[i] // min_ratio)
    if n[-1] < 1:
        return None
    n[0] += int((avail - sum(k * c for k, c in zip(n, cost, strict=True))) // cost[0])
    return n


def make_plan(*, train_images: int, val_images: int, epochs: int, train_rate: float, eval_rate: float,
              seconds: float, overhead: float = 1.0, max_rungs: int = 4, min_ratio: int = HALVING,
              min_images: int = 5000, min_explore: int = 9, max_trials: int = 400, margin: float = 0.9) -> Plan:
    """The plan that explores the most networks in ``margin * seconds``, its last rung at the full fidelity.

    ``train_images`` x ``epochs`` is the full fidelity (the export's); ``train_rate`` and ``eval_rate``
    are measured images per second for training and for validation on ``val_images``; ``overhead`` is
    the fixed cost of one trial in seconds.  Each rung halves the images and the epochs of the one
    above and gets an equal share of the time (Hyperband's bracket); each rung keeps at most
    ``1/min_ratio`` of the one below.  Among the plans that fit, the one with the most trials at rung 0
    wins (ties: fewer rungs).  When no plan explores ``min_explore`` networks at the full fidelity, the
    last rung's fidelity is halved until one does, and the plan says so.
    """
    for name, v in (("train_images", train_images), ("epochs", epochs), ("min_ratio", min_ratio),
                    ("max_rungs", max_rungs)):
        if v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    for name, f in (("train_rate", train_rate), ("eval_rate", eval_rate), ("seconds", seconds)):
        if not f > 0:
            raise ValueError(f"{name} must be > 0, got {f}")
    avail = seconds * margin
    floor = min(min_images, train_images)
    top_images, top_epochs, note = train_images, epochs, ""
    fallback: Plan | None = None
    while True:
        best: tuple[int, Plan] | None = None
        for levels in range(1, max_rungs + 1):
            fid = _ladder(top_images, top_epochs, levels, min_images)
            if levels > 1 and fid[0] == fid[1]:  # no cheaper fidelity left to start from
                break
            cost = [trial_seconds(m, e, val=val_images, train_rate=train_rate, eval_rate=eval_rate,
                                  overhead=overhead) for m, e in fid]
            n = _counts(levels, cost, avail, min_ratio)
            if n is None:
                continue
            n[0] = min(n[0], max_trials)
            rungs = tuple(Rung(trials=n[i], images=fid[i][0], epochs=fid[i][1],
                               promote=n[i + 1] if i + 1 < levels else 0, seconds=n[i] * cost[i])
                          for i in range(levels))
            plan = Plan(rungs, sum(r.seconds for r in rungs), seconds, train_rate, note)
            if best is None or n[0] > best[0]:
                best = (n[0], plan)
        if best is not None:
            if best[0] >= min_explore:
                return best[1]
            fallback = fallback or best[1]
        if top_images <= floor and top_epochs <= 1:
            if fallback is not None:
                return fallback
            cost1 = trial_seconds(top_images, 1, val=val_images, train_rate=train_rate, eval_rate=eval_rate,
                                  overhead=overhead)
            return Plan((Rung(1, top_images, 1, 0, cost1),), cost1, seconds, train_rate,
                        "even one trial at the smallest fidelity takes longer than the time given")
        top_images = max(floor, top_images // 2)
        top_epochs = max(1, top_epochs // 2)
        note = (f"the time given is short: the last rung trains on {top_images:,} images for {top_epochs} "
                f"epoch{'s' if top_epochs != 1 else ''}, less than the exported recipe's {train_images:,} x {epochs}")


def plan_from_rows(rows: object, where: str = "--plan") -> Plan:
    """A plan given as data (``--plan FILE``): a list of ``{trials, images, epochs}``, cheapest first; each
    rung has fewer trials than the one below and trains at least as long.  Bad rows raise ValueError."""
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{where}: expected a list of rungs such as [{{trials: 9, images: 5000, epochs: 2}}, ...]")
    out: list[tuple[int, int, int]] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or set(row) != {"trials", "images", "epochs"}:
            raise ValueError(f"{where}: rung {i}: expected the keys trials, images, epochs; got {row!r}")
        vals = tuple(row[k] for k in ("trials", "images", "epochs"))
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in vals):
            raise ValueError(f"{where}: rung {i}: trials, images and epochs must be positive integers, got {row!r}")
        if out and (vals[0] >= out[-1][0] or vals[1] < out[-1][1] or vals[2] < out[-1][2]):
            raise ValueError(f"{where}: rung {i}: a rung must have fewer trials than the one below, on at least "
                             "as many images for at least as many epochs")
        out.append((vals[0], vals[1], vals[2]))
    rungs = tuple(Rung(n, m, e, out[i + 1][0] if i + 1 < len(out) else 0, float(n * m * e))
                  for i, (n, m, e) in enumerate(out))
    return Plan(rungs, 0.0, 0.0, 0.0, "")
