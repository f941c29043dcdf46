"""``python -m results.report --out DIR``: a Markdown report of a study, with PNG plots.

``DIR/report.md`` summarises the study (settings, trial counts, best trial and its per-layer table, the
Pareto front, the top trials) and shows five plots: the optimisation history, validation accuracy
against parameters (Pareto front and zoo networks marked), learning curves of the top trials,
hyperparameter importances, and the time per trial.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from results._common import Parser, UsageError, open_study, pct, run_main, write_text

__all__ = ["PLOTS", "write_report", "main"]

PLOTS = {
    "history": "history.png",
    "pareto": "params_vs_acc.png",
    "curves": "curves.png",
    "importance": "importance.png",
    "time": "time.png",
}

_C = {"COMPLETE": "tab:blue", "PRUNED": "tab:gray", "FAIL": "tab:red", "RUNNING": "tab:orange",
      "WAITING": "tab:olive"}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _complete(trials: Sequence[Any]) -> list[Any]:
    from optuna.trial import TrialState

    return [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]


def _last(t: Any) -> float | None:
    """A trial's accuracy: its value, else its last reported epoch (pruned trials)."""
    if t.value is not None:
        return float(t.value)
    if t.intermediate_values:
        return float(t.intermediate_values[max(t.intermediate_values)])
    return None


def _acc_floor(values: Sequence[float]) -> float:
    """A lower y limit (in %) that keeps the interesting top of the accuracy range readable: trials far
    below the best (a diverged run at 10%) are drawn on the bottom edge instead of squashing the rest."""
    import numpy as np

    v = np.asarray(values, dtype=float) * 100
    if v.size == 0:
        return 0.0
    lo = float(np.percentile(v, 10)) if v.size >= 5 else float(v.min())
    span = max(float(v.max()) - lo, 0.5)
    return max(0.0, lo - 0.15 * span)


def _clip(ys: Sequence[float], floor: float) -> list[float]:
    return [max(y, floor) for y in ys]


def _scatter(ax: Any, xs: Sequence[float], ys: Sequence[float], floor: float, **kw: Any) -> None:
    """Points in % above ``floor`` as given; those below it as down-triangles on the bottom edge."""
    inside = [(x, y) for x, y in zip(xs, ys, strict=True) if y >= floor]
    below = [x for x, y in zip(xs, ys, strict=True) if y < floor]
    ax.scatter([x for x, _ in inside], [y for _, y in inside], **kw)
    if below:
        kw = {k: v for k, v in kw.items() if k not in ("label", "marker", "s")}
        ax.scatter(below, [floor] * len(below), marker="v", s=40, clip_on=False, **kw)
        ax._cnnsearch_below = getattr(ax, "_cnnsearch_below", 0) + len(below)


def _legend(ax: Any, floor: float) -> None:
    """The legend outside the plot (on the right), with a key for the points drawn on the bottom edge."""
    n = getattr(ax, "_cnnsearch_below", 0)
    if n:
        ax.scatter([], [], marker="v", c="tab:gray", label=f"{n} below {floor:.1f}% (on the edge)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0.0)


def _int_ticks(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)


def _empty(path: Path, title: str, why: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.set_title(title)
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.set_axis_off()
    _save(fig, path)


def plot_history(trials: Sequence[Any], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 4.5))
    pts = [(t.number, v, t) for t in trials if (v := _last(t)) is not None]
    if not pts:
        plt.close(fig)
        return _empty(path, "Optimisation history", "no trial reported an accuracy yet")
    floor = _acc_floor([v for _, v, t in pts if t.state.name == "COMPLETE"] or [v for _, v, _ in pts])
    for state, marker, label in (("COMPLETE", "o", "completed"), ("PRUNED", "x", "pruned (last epoch)")):
        sel = [(n, v) for n, v, t in pts if t.state.name == state]
        if sel:
            _scatter(ax, [n for n, _ in sel], [100 * v for _, v in sel], floor, marker=marker, c=_C[state],
                     label=label, zorder=3, alpha=0.85 if state == "COMPLETE" else 0.6)
    zoo = [(n, v) for n, v, t in pts if t.user_attrs.get("zoo") and t.state.name == "COMPLETE"]
    if zoo:
        ax.scatter([n for n, _ in zoo], _clip([100 * v for _, v in zoo], floor), marker="*", s=170,
                   facecolors="none", edgecolors="tab:green", linewidths=1.5, label="zoo network", zorder=4)
    best, xs, ys = -1.0, [], []
    for n, v, t in sorted(pts, key=lambda p: p[0]):
        if t.state.name == "COMPLETE" and v > best:
            best = v
        if best >= 0:
            xs.append(n)
            ys.append(100 * best)
    if xs:
        ax.step(xs, _clip(ys, floor), where="post", color="tab:blue", lw=1.5, label="best so far")
    ax.set_ylim(bottom=floor)
    _int_ticks(ax)
    ax.set_xlabel("trial")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Optimisation history")
    ax.grid(alpha=0.3)
    _legend(ax, floor)
    _save(fig, path)


def plot_pareto(trials: Sequence[Any], path: Path, budget: int | None) -> None:
    from search.study import pareto_front

    plt = _plt()
    done = [t for t in _complete(trials) if "params" in t.user_attrs]
    pruned = [t for t in trials if t.state.name == "PRUNED" and "params" in t.user_attrs and _last(t) is not None]
    if not done:
        return _empty(path, "Validation accuracy against parameters", "no completed trial yet")
    fig, ax = plt.subplots(figsize=(10, 5))
    floor = _acc_floor([t.value for t in done])
    if pruned:
        _scatter(ax, [t.user_attrs["params"] for t in pruned], [100 * (_last(t) or 0.0) for t in pruned], floor,
                 marker="x", c=_C["PRUNED"], alpha=0.5, label="pruned (last epoch)")
    _scatter(ax, [t.user_attrs["params"] for t in done], [100 * t.value for t in done], floor,
             c=_C["COMPLETE"], alpha=0.8, label="completed", zorder=3)
    front: list[Any] = pareto_front(trials)
    if front:
        ax.step([t.user_attrs["params"] for t in front], _clip([100 * t.value for t in front], floor),
                where="post", color="tab:red", lw=1.5, zorder=2, label="Pareto front (highest fidelity)")
        ax.scatter([t.user_attrs["params"] for t in front], _clip([100 * t.value for t in front], floor),
                   facecolors="none", edgecolors="tab:red", s=90, zorder=4)
        for t in front:
            ax.annotate(f"#{t.number}", (t.user_attrs["params"], max(100 * t.value, floor)),
                        textcoords="offset points", xytext=(4, -10), fontsize=7, color="tab:red")
    zoo = [t for t in done if t.user_attrs.get("zoo")]
    if zoo:
        ax.scatter([t.user_attrs["params"] for t in zoo], _clip([100 * t.value for t in zoo], floor),
                   marker="*", s=220, facecolors="none", edgecolors="tab:green", linewidths=1.5, zorder=5,
                   label="zoo network")
        right = max(t.user_attrs["params"] for t in done)
        for t in zoo:  # labels of points near the right edge go to their left
            x = t.user_attrs["params"]
            left = x > 0.8 * max(right, budget or 0)
            ax.annotate(str(t.user_attrs["zoo"]), (x, max(100 * t.value, floor)), textcoords="offset points",
                        xytext=(-8 if left else 8, 7), ha="right" if left else "left", fontsize=7,
                        color="tab:green")
    if budget:
        ax.axvline(budget, color="black", ls="--", lw=1, label=f"budget {budget:,}")
        ax.set_xlim(right=max(budget, max(t.user_attrs["params"] for t in done)) * 1.04)
    ax.set_ylim(bottom=floor)
    ax.set_xlabel("parameters")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Validation accuracy against parameters")
    ax.grid(alpha=0.3)
    _legend(ax, floor)
    _save(fig, path)


def top_trials(trials: Sequence[Any], k: int) -> list[Any]:
    return sorted(_complete(trials), key=lambda t: (-t.value, t.user_attrs.get("params", 0), t.number))[:k]


def plot_curves(trials: Sequence[Any], path: Path, k: int = 5) -> None:
    plt = _plt()
    top = [t for t in top_trials(trials, k) if t.user_attrs.get("val_acc_curve") or t.intermediate_values]
    if not top:
        return _empty(path, "Learning curves", "no completed trial with a learning curve yet")
    fig, (full, zoom) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [1, 1]})
    late: list[float] = []  # the zoom: the second half of each curve
    allv: list[float] = []
    longest = 1
    for t in top:
        curve = t.user_attrs.get("val_acc_curve") or [t.intermediate_values[s] for s in sorted(t.intermediate_values)]
        ys = [100 * v for v in curve]
        late += ys[len(ys) // 2:]
        allv += ys
        longest = max(longest, len(ys))
        zoo = f", {t.user_attrs['zoo']}" if t.user_attrs.get("zoo") else ""
        for ax in (full, zoom):
            ax.plot(range(1, len(ys) + 1), ys, marker="o", ms=3,
                    label=f"#{t.number}: {pct(t.value)}, {t.user_attrs.get('params', 0):,} params{zoo}")
    first = longest // 2 + 1  # the first epoch of the second half, as in ``late``
    for ax, lo_x, values in ((full, 1, allv), (zoom, first, late)):
        ax.set_xlim(lo_x - 0.5, longest + 0.5)
        if longest - lo_x < 20:
            ax.set_xticks(range(lo_x, longest + 1))
        else:
            _int_ticks(ax)
        hi, lo = max(values), min(values)
        bottom = max(0.0, lo - 0.1 * max(hi - lo, 0.5))
        ax.set_ylim(bottom=bottom, top=min(100.0, hi + 0.08 * max(hi - bottom, 0.5)) if hi < 100 else 100.5)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    full.set_ylabel("validation accuracy (%)")
    full.set_title("all epochs")
    zoom.set_title(f"epochs {first}-{longest}" if first < longest else f"epoch {longest}")
    fig.suptitle(f"Learning curves of the top {len(top)} trials")
    zoom.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, borderaxespad=0.0)
    _save(fig, path)


def importances(trials: Sequence[Any]) -> dict[str, float]:
    """Hyperparameter importances (Optuna's default evaluator) over the completed sampled trials (the zoo
    networks, replayed without parameters, are left out)."""
    import optuna

    done = [t for t in _complete(trials) if t.params]
    if len(done) < 2:
        return {}
    import warnings

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        tmp = optuna.create_study(direction="maximize")
        tmp.add_trials(done)
        with warnings.catch_warnings():  # "some regimes have less than 2 trials": expected in small studies
            warnings.simplefilter("ignore")
            return optuna.importance.get_param_importances(tmp)
    finally:
        optuna.logging.set_verbosity(level)


def plot_importance(trials: Sequence[Any], path: Path, k: int = 15) -> dict[str, float]:
    plt = _plt()
    try:
        imp = importances(trials)
    except Exception as e:  # too few or too uniform trials
        imp, why = {}, f"importances not available: {e}"
    else:
        why = "importances need at least two completed sampled trials"
    if not imp:
        _empty(path, "Hyperparameter importances", why)
        return {}
    items = list(imp.items())[:k][::-1]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(items) + 1.4))
    ax.barh([n for n, _ in items], [v for _, v in items], color="tab:blue")
    for i, (_, v) in enumerate(items):
        ax.text(v, i, f" {v:.2f}", va="center", fontsize=7)
    ax.set_xlabel("importance (normalised)")
    n = len([t for t in _complete(trials) if t.params])
    ax.set_title(f"Hyperparameter importances ({n} completed trials{', top ' + str(k) if len(imp) > k else ''})")
    ax.grid(alpha=0.3, axis="x")
    _save(fig, path)
    return imp


def _seconds(t: Any) -> float | None:
    if t.user_attrs.get("train_seconds") is not None:
        return float(t.user_attrs["train_seconds"])
    if t.datetime_start and t.datetime_complete:
        return (t.datetime_complete - t.datetime_start).total_seconds()
    return None


def plot_time(trials: Sequence[Any], path: Path) -> None:
    plt = _plt()
    pts = [(t.number, float(s), t.state.name) for t in trials if (s := _seconds(t)) is not None]
    if not pts:
        return _empty(path, "Time per trial", "no finished trial yet")
    fig, ax = plt.subplots(figsize=(8, 4))
    for state in sorted({s for _, _, s in pts}):
        sel = [(n, s) for n, s, st in pts if st == state]
        ax.bar([n for n, _ in sel], [s for _, s in sel], color=_C.get(state, "tab:purple"), label=state.lower())
    total = sum(s for _, s, _ in pts)
    _int_ticks(ax)
    ax.set_xlabel("trial")
    ax.set_ylabel("training time (s)")
    ax.set_title(f"Time per trial (total {_duration(total)})")
    ax.grid(alpha=0.3, axis="y")
    ax.set_ylim(top=1.18 * max(s for _, s, _ in pts))
    ax.legend(fontsize=8, loc="upper left", ncols=4)
    _save(fig, path)


def _md_table(rows: list[list[str]], head: list[str]) -> list[str]:
    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|"
    return ["| " + " | ".join(head) + " |", rule] + ["| " + " | ".join(r) + " |" for r in rows]


def across_budgets(studies: Sequence[Any]) -> list[str]:
    """Markdown: each study's budget and best trial, and the Pareto front over all their trials."""
    from search.study import best as _best
    from search.study import pareto_across

    rows, ordered = [], sorted(studies, key=lambda st: -int(st.user_attrs.get("budget", 0)))
    for st in ordered:
        b = _best(st.get_trials(deepcopy=False))
        rows.append([f"{st.user_attrs.get('budget', 0):,}", f"`{st.study_name}`", pct(b.value if b else None),
                     f"{b.user_attrs.get('params', 0):,}" if b else "-", str(b.number) if b else "-"])
    return (["## Across budgets", ""] + _md_table(rows, ["budget", "study", "best val acc", "params", "trial"])
            + ["", "Pareto front over the trials of all these studies at the highest fidelity "
                                 "reached (validation accuracy against parameters):", ""]
            + _md_table([[f"`{name}`", str(t.number), f"{t.user_attrs['params']:,}", pct(t.value)]
                         for name, t in pareto_across(ordered)], ["study", "trial", "params", "val acc"]) + [""])


def write_report(study: Any, out: str | Path, storage_url: str | None = None, top: int = 10,
                 others: Sequence[Any] = ()) -> Path:
    """Write ``report.md`` and the plots into ``out``; returns the report's path.  ``others``: the other
    studies of a multi-budget search, for a section across budgets."""
    from search.export import trial_spec
    from search.storage import mask_url
    from search.study import best as _best
    from search.study import pareto_front
    from space.analysis import format_table

    out = Path(out)
    try:
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {out} is a file; give a folder")
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot write {out}: {e.strerror or e}") from None
    trials = study.get_trials(deepcopy=False)
    budget = study.user_attrs.get("budget")
    plot_history(trials, out / PLOTS["history"])
    plot_pareto(trials, out / PLOTS["pareto"], budget)
    plot_curves(trials, out / PLOTS["curves"])
    imp = plot_importance(trials, out / PLOTS["importance"])
    plot_time(trials, out / PLOTS["time"])

    s = study.user_attrs
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    lines = [f"# Study `{study.study_name}`", ""]
    if storage_url:
        lines += [f"Storage: `{mask_url(storage_url)}`.", ""]
    settings = [f"budget **{budget:,}** parameters" if budget else "budget unknown"]
    settings += [f"{s['epochs']} epoch{'s' if s['epochs'] != 1 else ''} per trial"] if s.get("epochs") else []
    settings += [f"first {s['train_limit']:,} training images"] if s.get("train_limit") else []
    settings += [f"{s['val']:,} validation images"] if s.get("val") else []
    total = sum(x for x in (_seconds(t) for t in trials) if x is not None)
    lines += [", ".join(settings) + ".", "",
              f"{len(trials)} trials (" + ", ".join(f"{v} {k}" for k, v in sorted(states.items()))
              + f"), {_duration(total)} of training.", ""]
    best = _best(trials)
    if best is None:
        lines += ["No trial has completed yet.", ""]
    else:
        p = best.user_attrs.get("params", 0)
        lines += ["## Best trial", "",
                  f"Trial **{best.number}**: validation accuracy **{pct(best.value)}** with **{p:,}** parameters"
                  + (f" ({p / budget:.0%} of the budget)" if budget else "") + ".", ""]
        try:
            spec = trial_spec(study, best, storage_url)
            lines += ["```", format_table(spec), "```", ""]
        except Exception as e:
            lines += [f"(no per-layer table: {e})", ""]
        lines += ["Export it: `python -m results.export"
                  + (f" --storage {mask_url(storage_url)}" if storage_url else "")
                  + f" --study {study.study_name} --out best.yaml --verify`", ""]
    lines += ["## Optimisation history", "", f"![optimisation history]({PLOTS['history']})", ""]
    lines += ["## Validation accuracy against parameters", "", f"![accuracy against parameters]({PLOTS['pareto']})", ""]
    front = pareto_front(trials)
    if front:
        lines += _md_table([[str(t.number), f"{t.user_attrs['params']:,}", pct(t.value),
                             str(t.user_attrs.get("zoo", ""))] for t in front],
                           ["Pareto trial", "params", "val acc", "zoo"]) + [""]
    lines += [f"## Top {top} trials", ""]
    rows = []
    for t in top_trials(trials, top):
        ps = t.params
        arch = ", ".join(f"{k.split('.', 1)[-1]}={_fmt(v)}" for k, v in ps.items() if k.startswith(("arch.", "opt.",
                                                                                                    "sched.")))
        rows.append([str(t.number), pct(t.value), pct(t.user_attrs.get("best_val_acc")),
                     f"{t.user_attrs.get('params', 0):,}", f"{t.user_attrs.get('macs', 0):,}",
                     f"{_seconds(t) or 0:.0f}", t.user_attrs.get("zoo") or arch or "-"])
    lines += _md_table(rows, ["trial", "val acc", "best epoch", "params", "MACs", "seconds", "choices"]) + [""]
    lines += ["## Learning curves", "", f"![learning curves]({PLOTS['curves']})", ""]
    lines += ["## Hyperparameter importances", "", f"![importances]({PLOTS['importance']})", ""]
    if imp:
        lines += _md_table([[k, f"{v:.3f}"] for k, v in list(imp.items())[:10]], ["parameter", "importance"]) + [""]
    lines += ["## Time per trial", "", f"![time per trial]({PLOTS['time']})", ""]
    if others:
        lines += across_budgets([study, *others])
    report = out / "report.md"
    write_text(report, "\n".join(lines))
    return report


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _body(argv: Sequence[str] | None) -> int:
    p = Parser(prog="python -m results.report", description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("--storage", metavar="URL", help="journal file or database URL (default runs/cnnsearch.log)")
    p.add_argument("--study", metavar="NAME", help="study name (default: the only study in the storage)")
    p.add_argument("--out", metavar="DIR", required=True, help="folder for report.md and the plots")
    p.add_argument("--top", type=int, default=10, help="rows in the top-trials table (10)")
    args = p.parse_args(argv)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder")
    study, url = open_study(args.storage, args.study)
    others = [st for st in _budget_studies(study) if st.study_name != study.study_name]
    report = write_report(study, out, url, top=args.top, others=others)
    print(f"report: {report} ({', '.join(PLOTS.values())})")
    return 0


def _budget_studies(study: Any) -> list[Any]:
    """The studies of ``study``'s storage that a search made (they record a budget)."""
    import optuna

    out = []
    for s in optuna.get_all_study_summaries(study._storage, include_best_trial=False):
        if "budget" in s.user_attrs:
            out.append(optuna.load_study(study_name=s.study_name, storage=study._storage))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_body, argv)


if __name__ == "__main__":
    sys.exit(main())
