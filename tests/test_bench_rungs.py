"""bench/rungs.py: a study's rungs, planned against run, from its journal (plain or gzipped); and the
figures bench/README.md quotes from the committed journals."""

from __future__ import annotations

import datetime as dt
import gzip
import statistics
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState, create_trial
from space_helpers import flat_layers

ROOT = Path(__file__).resolve().parent.parent


def _run(*args):
    return subprocess.run([sys.executable, str(ROOT / "bench" / "rungs.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def _journal(path):
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    study = optuna.create_study(study_name="budget-5000", storage=storage, direction="maximize")
    study.set_user_attr("plan_budget_seconds", 300.0)
    study.set_user_attr("plan", [{"trials": 2, "images": 300, "epochs": 1, "promote": 1, "seconds": 120.0},
                                 {"trials": 1, "images": 600, "epochs": 2, "promote": 0, "seconds": 90.0}])
    t0 = dt.datetime(2026, 1, 1)
    for i, (r, state, minutes) in enumerate([(0, TrialState.COMPLETE, 1), (0, TrialState.COMPLETE, 2),
                                             (0, TrialState.PRUNED, 3), (1, TrialState.COMPLETE, 7)]):
        t = create_trial(state=state, value=0.9 if state == TrialState.COMPLETE else None,
                         intermediate_values={1: 0.9}, user_attrs={"rung": r},
                         params={"train.batch_size": 64 if i != 1 else 128},
                         distributions={"train.batch_size": optuna.distributions.CategoricalDistribution([64, 128])})
        t.datetime_start, t.datetime_complete = t0 + dt.timedelta(minutes=i), t0 + dt.timedelta(minutes=minutes + 1)
        study.add_trial(t)
    optuna.create_study(study_name="legacy", storage=storage)


def test_prints_each_rung_planned_against_run_from_a_plain_or_gzipped_journal(tmp_path):
    _journal(tmp_path / "j.log")
    (tmp_path / "j.log.gz").write_bytes(gzip.compress((tmp_path / "j.log").read_bytes()))
    for name in ("j.log", "j.log.gz"):
        r = _run(tmp_path / name, "budget-5000")
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == [
            "rung 0: planned   2 ( 2.0 min), ran   3 (2 complete, 1 pruned), done at 4.0 min",
            "rung 1: planned   1 ( 1.5 min), ran   1 (1 complete), done at 8.0 min"]
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log")))
    optuna.load_study(study_name="budget-5000", storage=storage).set_user_attr("plan_budget_seconds", 0)
    r = _run(tmp_path / "j.log", "budget-5000")  # a plan given with --plan FILE: not made for a time
    assert r.stdout.splitlines()[0] == "rung 0: planned   2, ran   3 (2 complete, 1 pruned), done at 4.0 min"
    r = _run(tmp_path / "j.log", "budget-5000", "--param", "train.batch_size")  # the values its complete trials took
    assert r.stdout.splitlines() == [
        "rung 0: planned   2, ran   3 (2 complete, 1 pruned), done at 4.0 min",
        "  train.batch_size of its complete trials: 64: 1, 128: 1",
        "rung 1: planned   1, ran   1 (1 complete), done at 8.0 min",
        "  train.batch_size of its complete trials: 64: 1"]
    r = _run(tmp_path / "j.log", "budget-5000", "--param", "opt.name")
    assert r.stdout.splitlines()[1] == "  opt.name of its complete trials: none"


def test_family_gives_the_combination_most_trials_of_a_rung_took_whatever_their_state(tmp_path):
    _journal(tmp_path / "j.log")
    r = _run(tmp_path / "j.log", "budget-5000", "--family", "train.batch_size,opt.name")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1::2] == [
        "  train.batch_size/opt.name: 64/None in 2 of 3 (67%), first at trial 0; 2 combinations",
        "  train.batch_size/opt.name: 64/None in 1 of 1 (100%), first at trial 3; 1 combination"]


def test_a_float_parameter_gives_its_mean_and_its_correlation_with_the_validation_accuracy(tmp_path):
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log")))
    study = optuna.create_study(study_name="budget-5000", storage=storage, direction="maximize")
    study.set_user_attr("plan", [{"trials": 3, "images": 300, "epochs": 1, "promote": 1, "seconds": 60.0},
                                 {"trials": 1, "images": 600, "epochs": 2, "promote": 0, "seconds": 60.0}])
    fill = optuna.distributions.FloatDistribution(0.7, 1.0)
    for r, f, v in ((0, 0.7, 0.95), (0, 0.8, 0.90), (0, 0.9, 0.85), (0, 1.0, None), (1, 0.7, 0.97)):
        study.add_trial(create_trial(state=TrialState.COMPLETE if v else TrialState.PRUNED, value=v,
                                     intermediate_values={1: v or 0.5}, user_attrs={"rung": r},
                                     params={"arch.fill": f}, distributions={"arch.fill": fill}))
    out = _run(tmp_path / "j.log", "budget-5000", "--param", "arch.fill")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()   # the pruned trial (fill 1.0) is left out; one trial has no correlation
    assert lines[1] == "  arch.fill of its complete trials: mean 0.8 over 3, r with val acc -1.00"
    assert lines[3] == "  arch.fill of its complete trials: mean 0.7 over 1"


def test_agree_gives_the_rank_correlation_of_each_rung_with_the_rung_its_trials_were_promoted_from(tmp_path):
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log")))
    study = optuna.create_study(study_name="budget-5000", storage=storage, direction="maximize")
    study.set_user_attr("plan", [{"trials": 5, "images": 300, "epochs": 1, "promote": 4, "seconds": 60.0},
                                 {"trials": 4, "images": 600, "epochs": 2, "promote": 1, "seconds": 60.0},
                                 {"trials": 1, "images": 900, "epochs": 3, "promote": 0, "seconds": 60.0}])
    # rung 0: trials 0-4; trials 0-3 promoted to rung 1 (trials 5-8), trial 8's still running;
    # rung 2: one trial, promoted from trial 5: too few for a correlation
    rows = [(0, 0.90, None), (0, 0.92, None), (0, 0.94, None), (0, 0.96, None), (0, 0.80, None),
            (1, 0.97, 0), (1, 0.95, 1), (1, 0.93, 2), (1, None, 3), (2, 0.99, 5)]
    for r, v, parent in rows:
        attrs = {"rung": r} | ({} if parent is None else {"promoted_from": parent})
        study.add_trial(create_trial(state=TrialState.COMPLETE if v else TrialState.RUNNING, value=v,
                                     user_attrs=attrs))
    out = _run(tmp_path / "j.log", "budget-5000", "--agree")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()   # 0.90, 0.92, 0.94 became 0.97, 0.95, 0.93: the order reversed
    assert lines[2] == "  against rung 0: rank correlation -1.00 over 3 promoted trials"
    assert lines[4] == "  against rung 1: 1 promoted trial complete, too few for a correlation"
    assert len(lines) == 5 and lines[0].startswith("rung 0:")   # rung 0 has none to agree with


def test_ranks_share_their_mean_rank_on_ties():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from rungs import _ranks
    finally:
        sys.path.remove(str(ROOT / "bench"))
    assert _ranks([0.5, 0.9, 0.5, 0.1]) == [2.5, 4.0, 2.5, 1.0]
    assert _ranks([]) == []


def test_a_missing_file_an_unknown_study_or_one_without_a_plan_is_one_line_and_status_2(tmp_path):
    _journal(tmp_path / "j.log")
    for args, says in (((tmp_path / "none.log", "budget-5000"), "none.log"),
                       ((tmp_path / "j.log", "budget-3"), "no study 'budget-3' (it has: budget-5000, legacy)"),
                       ((tmp_path / "j.log", "legacy"), "was not run with a fidelity plan")):
        r = _run(*args)
        assert r.returncode == 2 and r.stdout == "" and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert says in r.stderr


def _quoted_rungs(folder, b, *args):
    """The rungs of a committed journal's study budget-B (``args``: rungs.py's options), each line as
    bench/README.md quotes it."""
    r = _run(folder / f"budget-{b}" / "cnnsearch.log.gz", f"budget-{b}", *args)
    assert r.returncode == 0, r.stderr
    bench = (ROOT / "bench" / "README.md").read_text()
    for line in r.stdout.splitlines():
        assert f"    {line}\n" in bench, line
    return r.stdout.splitlines()


def _assert_quoted_search_lines(out: Path, bench: str) -> None:
    """The plan, best and wall-time lines of a search's output are quoted in bench/README.md."""
    for line in out.read_text().splitlines():
        if line.startswith(("plan:", "best:", "real ")):
            assert f"    {line}\n" in bench, line


def test_the_bench_readme_shows_the_rungs_of_the_filling_searches_as_their_journals_give_them():
    for b in (10000, 5000):
        lines = _quoted_rungs(ROOT / "bench" / "records" / "search_cpu_fill", b)
        assert len(lines) == 4
        ran = sum(int(line.split("ran")[1].split()[0]) for line in lines)
        planned = sum(int(line.split("planned")[1].split()[0]) for line in lines)
        assert ran > 1.5 * planned                     # the rungs filled their time: well past the plan's counts


def test_the_bench_readme_shows_the_rungs_of_the_4_epoch_rung_0_searches_before_and_after_the_pruner_fix():
    p = ROOT / "bench" / "records" / "search_cpu_plan3"
    for where, last in ((p / "before_pruner_fix", "pruned"), (p, "complete")):
        for b in (10000, 5000):
            lines = _quoted_rungs(where, b)
            assert len(lines) == 3
            assert f"ran   3 (3 {last})" in lines[2]    # the last rung: all pruned before the fix, all trained after


def _default_rungs(commit):
    """The rungs of the bare command's committed journal at ``commit``, each line quoted in bench/README.md."""
    out = _run(ROOT / "bench" / "records" / f"search_cpu_default_{commit}" / "cnnsearch.log.gz", "budget-20000")
    assert out.returncode == 0, out.stderr
    bench = (ROOT / "bench" / "README.md").read_text()
    for line in out.stdout.splitlines():
        assert f"    {line}\n" in bench, line
    return out.stdout.splitlines()


def test_the_bench_readme_shows_the_rungs_of_the_bare_command_before_and_after_promoted_rungs_were_not_pruned():
    before, after = (_default_rungs(c) for c in ("d6fad0e", "03a595f"))
    assert len(before) == len(after) == 4
    assert "pruned" in before[0] and "pruned" in before[1]            # before: rung 1's promoted trials pruned
    assert "pruned" in after[0] and not any("pruned" in line for line in after[1:])   # after: rung 0 only
    done = [float(line.split("done at")[1].split()[0]) for line in (before[-1], after[-1])]
    assert done[0] < done[1] <= 50                                     # more of the 50 minutes used, none over


def test_the_bench_readme_shows_the_rungs_of_the_bare_command_once_promoted_rungs_took_what_their_time_affords():
    before, after = ([(int(line.split("planned")[1].split()[0]), int(line.split("ran")[1].split()[0]),
                       float(line.split("done at")[1].split()[0])) for line in _default_rungs(c)]
                     for c in ("03a595f", "0a53610"))
    for r in (1, 2):   # the middle rungs took well past the plan's counts, and more of them than before
        assert after[r][1] > 1.5 * after[r][0] and after[r][1] / after[r][0] > before[r][1] / before[r][0]
    assert before[-1][2] < after[-1][2] <= 50            # more of the 50 minutes used, none over


def test_the_bench_readme_shows_which_batch_sizes_the_searches_took_as_their_journals_give_them():
    r = ROOT / "bench" / "records"
    bench = (ROOT / "bench" / "README.md").read_text()
    runs = [(r / "search_cpu_budgets" / "cnnsearch.log.gz", 10000, "64"),
            (r / "search_cpu_batch32" / "budget-10000" / "cnnsearch.log.gz", 10000, "32"),
            (r / "search_cpu_batch32" / "budget-5000" / "cnnsearch.log.gz", 5000, "32")]
    for journal, b, edge in runs:
        out = _run(journal, f"budget-{b}", "--param", "train.batch_size")
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        for line in lines:
            assert f"    {line}\n" in bench, line
        took = [dict(pair.split(": ") for pair in line.split("trials: ")[1].split(", ")) for line in lines[1::2]]
        assert max(took[0], key=lambda v: int(took[0][v])) == edge   # the smallest choice leads rung 0
        assert all(list(t) == [edge] for t in took[1:])             # and is alone in every rung above


def test_the_bench_readme_shows_the_share_of_the_budget_that_each_rung_favoured_as_the_journals_give_it():
    r = ROOT / "bench" / "records"
    bench = (ROOT / "bench" / "README.md").read_text()
    for b in (10000, 5000):   # the --val 10000 searches: rung 0 favoured small networks, rungs 1 and 2 large ones
        out = _run(r / "search_cpu_val10k" / f"budget-{b}" / "cnnsearch.log.gz", f"budget-{b}", "--param", "arch.fill")
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        for line in lines:
            assert f"    {line}\n" in bench, line
        r_of = [float(line.split("r with val acc")[1]) for line in lines[1:6:2]]
        assert r_of[0] < 0 < r_of[1] and r_of[2] > 0, lines
    for where, b in (("search_cpu_budgets/cnnsearch.log.gz", 10000), ("search_cpu_fill/budget-5000/cnnsearch.log.gz",
                                                                      5000)):  # earlier rung 0s: larger ones
        out = _run(r / where, f"budget-{b}", "--param", "arch.fill")
        line = out.stdout.splitlines()[1]
        assert f"    {line}\n" in bench and float(line.split("r with val acc")[1]) > 0, line


def test_the_bench_readme_shows_the_share_of_the_budget_in_the_fill90_and_hour_long_searches():
    r = ROOT / "bench" / "records"
    lines = _quoted_rungs(r / "search_cpu_fill90", 5000, "--param", "arch.fill")
    means = [float(line.split("mean ")[1].split()[0]) for line in lines if "mean " in line]
    assert len(means) == 4 and min(means) >= 0.9                   # the space file's range held at every rung
    for b in (10000, 5000):
        assert len(_quoted_rungs(r / "search_cpu_time60", b, "--param", "arch.fill")) == 8


def test_the_bench_readme_shows_the_share_of_the_budget_used_with_and_without_widen_and_in_90_minutes():
    r = ROOT / "bench" / "records"

    def shares(folder):
        lines = _quoted_rungs(r / folder, 5000, "--param", "utilisation")
        return [float(line.split("mean ")[1].split()[0]) for line in lines if "mean " in line]

    default, widened, longer = shares("search_cpu_time60"), shares("search_cpu_widen"), shares("search_cpu_time90")
    assert len(default) == len(widened) == len(longer) == 4
    assert all(w > d for w, d in zip(widened, default, strict=True))   # widen: fuller networks at every rung
    assert max(default + widened + longer) <= 1.0


def test_the_bench_readme_shows_the_rungs_of_the_hour_searches_with_other_seeds_under_5000():
    r = ROOT / "bench" / "records"
    fills = {}
    for s in (1, 2):
        lines = _quoted_rungs(r / f"search_cpu_seed{s}", 5000, "--param", "arch.fill")
        fills[s] = [float(line.split("mean ")[1].split()[0]) for line in lines if "mean " in line]
    assert len(fills[1]) == len(fills[2]) == 4
    assert max(fills[1]) < 0.8 < 0.9 < min(fills[2])   # seed 1 settled on three quarters of the budget


def test_the_bench_readme_shows_the_ten_minute_search_ending_inside_its_time():
    folder = ROOT / "bench" / "records" / "search_cpu_time10"
    lines = _quoted_rungs(folder, 5000)
    done = [float(line.split("done at ")[1].split()[0]) for line in lines]
    assert len(done) == 4 and done == sorted(done) and done[-1] <= 10.0
    out = (folder / "budget-5000" / "search.out").read_text()
    bench = (ROOT / "bench" / "README.md").read_text()
    real = next(line for line in out.splitlines() if line.startswith("real "))
    assert f"    {real}\n" in bench and float(real.split()[1]) <= 600
    plan = [line for line in out.splitlines() if line.startswith(("plan:", "  rung", "  note", "best:"))]
    assert len(plan) == 4 and all(f"    {line}\n" in bench for line in plan)


def test_the_bench_readme_shows_the_recipe_families_of_the_searches_before_and_with_one_trial_in_three_at_random():
    fam = ("--family", "opt.name,sched.name,train.batch_size")
    r = ROOT / "bench" / "records"
    share = lambda lines: [int(x.split("(")[1].split("%")[0]) for x in lines if "combination" in x]  # noqa: E731
    bench = (ROOT / "bench" / "README.md").read_text()
    before = []
    for d in ("time60", "seed1", "seed2", "time90", "widen"):   # bench/README quotes their rung 0
        out = _run(r / f"search_cpu_{d}" / "budget-5000" / "cnnsearch.log.gz", "budget-5000", *fam)
        head = out.stdout.splitlines()[:2]
        assert out.returncode == 0 and all(f"    {line}\n" in bench for line in head), (out.stderr, head)
        before += share(head)
    assert min(before) >= 75                       # one family took three quarters of rung 0 or more
    for s in (1, 2):
        folder = r / f"search_cpu_explore_seed{s}"
        lines = _quoted_rungs(folder, 5000, *fam)
        assert len(lines) == 8 and share(lines)[0] < min(before)
        assert lines[1].endswith("; 27 combinations")    # every optimizer x scheduler x batch size was tried
        _assert_quoted_search_lines(folder / "budget-5000" / "search.out", bench)


def test_the_bench_readme_shows_the_stage_openings_the_searches_offering_separable_ones_took():
    r = ROOT / "bench" / "records"
    bench = (ROOT / "bench" / "README.md").read_text()
    took = []
    for s in (1, 2):
        folder = r / f"search_cpu_open_seed{s}"
        assert (folder / "space.yaml").read_text() == "open_type: {choices: [plain, sep]}\n"
        lines = _quoted_rungs(folder, 5000, "--family", "s2.open")
        assert len(lines) == 8
        took.append(lines[-1].split(":")[1].split()[0])   # the opening of stage 2 in the last rung's trial
        _assert_quoted_search_lines(folder / "budget-5000" / "search.out", bench)
    assert took == ["sep", "plain"]


def test_the_bench_readme_shows_how_well_each_rung_foretold_the_next_as_the_journals_give_it():
    r = ROOT / "bench" / "records"
    journals = [(r / f"search_cpu_{d}" / "budget-5000" / "cnnsearch.log.gz", "budget-5000")
                for d in ("time60", "time90", "seed1", "seed2", "explore_seed1", "explore_seed2")]
    journals += [(r / "search_cpu_default_0a53610" / "cnnsearch.log.gz", "budget-20000"),
                 (r / "search_cpu_time60" / "budget-10000" / "cnnsearch.log.gz", "budget-10000")]
    bench = (ROOT / "bench" / "README.md").read_text()
    rho = lambda line: float(line.split("correlation ")[1].split()[0])  # noqa: E731
    first, second = [], []
    for journal, study in journals:
        out = _run(journal, study, "--agree")
        agree = [line for line in out.stdout.splitlines() if "against" in line]
        assert out.returncode == 0 and len(agree) == 3, out.stderr
        assert all(f"    {line}\n" in bench for line in agree), agree
        first.append(rho(agree[0]))
        second.append(rho(agree[1]))
    assert 0 < min(first) and max(first) < 0.5          # rung 0 foretells rung 1, weakly, in every search
    assert sum(x < 0 for x in second) == 4 and statistics.fmean(second) < 0 < statistics.fmean(first)


def test_the_bench_readme_shows_the_rungs_of_the_searches_with_one_recipe_family_and_how_well_they_agree():
    r = ROOT / "bench" / "records"
    bench = (ROOT / "bench" / "README.md").read_text()
    for s in (1, 2):
        folder = r / f"search_cpu_focus_seed{s}"
        assert (folder / "space.yaml").read_text() == (
            "optimizer: {choices: [adam, adamw]}\nscheduler: onecycle\nbatch_size: 64\n")
        lines = _quoted_rungs(folder, 5000, "--family", "opt.name", "--agree")
        assert len(lines) == 11
        agree = [line for line in lines if "against rung 1:" in line][0]
        assert float(agree.split("correlation ")[1].split()[0]) > 0.5   # rung 1 foretold rung 2
        _assert_quoted_search_lines(folder / "budget-5000" / "search.out", bench)


def _bn_after_act(layers) -> bool:
    kinds = [layer.kind for layer in layers]
    bns = [i for i, k in enumerate(kinds) if k == "bn"]
    return bool(bns) and all(kinds[i - 1] == "act" and kinds[i - 2] in ("conv", "sepconv") for i in bns)


def _no_bias_before_bn(layers) -> bool:
    flat = list(flat_layers(layers))
    before = [a for a, b in zip(flat, flat[1:], strict=False) if b.kind == "bn"]
    return bool(before) and not any(a.bias for a in before)


def _silu_only(layers) -> bool:
    return {layer.fn for layer in flat_layers(layers) if layer.kind == "act"} == {"silu"}


# the searches with the activation before BatchNorm, with SiLU, with the weight average and without the bias
# BatchNorm cancels: the space file
# each ran with, and what it asked for in their exports
@pytest.mark.parametrize("arm, space, holds, seeds", [
    ("actbn", "bn_order: act_bn\n", lambda spec: _bn_after_act(spec.layers), (1, 2)),
    ("silu", "act: silu\n", lambda spec: _silu_only(spec.layers), (0, 1, 2)),
    ("ema", "ema: 0.999\n", lambda spec: spec.recipe.ema == 0.999, (0,)),
    ("nobias", "conv_bias: false\n", lambda spec: _no_bias_before_bn(spec.layers), (0, 1)),
])
def test_the_bench_readme_shows_the_rungs_of_the_5000_searches_of_a_space_file(arm, space, holds, seeds):
    from space.io import load

    r = ROOT / "bench" / "records"
    bench = (ROOT / "bench" / "README.md").read_text()
    for s in seeds:
        folder = r / f"search_cpu_{arm}_seed{s}"
        assert (folder / "space.yaml").read_text() == space
        lines = _quoted_rungs(folder, 5000, "--agree")
        assert len(lines) == 7 and sum("against" in line for line in lines) == 3
        _assert_quoted_search_lines(folder / "budget-5000" / "search.out", bench)
        assert holds(load(folder / "budget-5000" / "best.yaml"))


def test_the_bench_readme_shows_the_rungs_of_the_search_offering_5x5_kernels():
    from space.io import load

    folder = ROOT / "bench" / "records" / "search_cpu_k5_seed1"
    assert (folder / "space.yaml").read_text() == "kernel: {choices: [3, 5]}\n"
    lines = _quoted_rungs(folder, 5000, "--family", "arch.kernel", "--agree")
    assert len(lines) == 11 and "arch.kernel: 5 in 231 of 281 (82%)" in lines[1]
    assert float(lines[4].split("correlation ")[1].split()[0]) < 0.1   # rung 0 did not foretell rung 1
    _assert_quoted_search_lines(folder / "budget-5000" / "search.out", (ROOT / "bench" / "README.md").read_text())
    convs = [layer for layer in flat_layers(load(folder / "budget-5000" / "best.yaml").layers)
             if layer.kind in ("conv", "sepconv") and layer.k > 1]
    assert convs and {layer.k for layer in convs} == {5}


def test_the_bench_readme_shows_the_rungs_of_the_cross_budget_run_of_an_hour_per_budget():
    journal = ROOT / "bench" / "records" / "search_cpu_budgets_hour" / "cnnsearch.log.gz"
    bench = (ROOT / "bench" / "README.md").read_text()
    ends = {}
    for b, minutes in ((10000, 55), (5000, 62)):   # each study's share of the 110 minutes, as its plan line says
        out = _run(journal, f"budget-{b}")
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert len(lines) == 4
        for line in lines:
            assert f"    {line}\n" in bench, line
        ends[b] = float(lines[-1].split("done at ")[1].split()[0])
        assert ends[b] <= minutes                       # the last rung done within the study's share
    assert round(110 - ends[10000]) == 62               # the 5,000 study got what the 10,000 one left
