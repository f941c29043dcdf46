"""The search with a fidelity plan, end to end on tiny data: rungs and promotion, several budgets with warm
starts, a plan measured on this machine, an interrupted trial that goes on from its checkpoint, and the
fixed bugs (weights per study, --device checked first, the objective's name)."""

import json

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from search.run import main
from search.storage import get_storage
from search.study import counted_finished
from space.analysis import count_params
from space.io import load

optuna.logging.set_verbosity(optuna.logging.WARNING)

TINY_PLAN = [{"trials": 4, "images": 300, "epochs": 1}, {"trials": 2, "images": 600, "epochs": 2}]
COMMON = ["--val", "200", "--device", "cpu", "--pruner", "none"]


def _plan_file(tmp_path, rows=TINY_PLAN):
    p = tmp_path / "plan.yaml"
    p.write_text(yaml.safe_dump(rows))
    return str(p)


def _study(storage, name):
    return optuna.load_study(study_name=name, storage=get_storage(str(storage)))


def _rung(study, r):
    return [t for t in study.get_trials() if t.user_attrs.get("rung") == r]


def test_a_plan_trains_its_rungs_promotes_the_best_and_exports_the_top_rungs_best(tmp_path, capsys):
    storage, out = tmp_path / "s.log", tmp_path / "best.yaml"
    rc = main(["--budget", "5000", "--plan", _plan_file(tmp_path), "--storage", str(storage), "--out", str(out),
               *COMMON])
    assert rc == 0
    text = capsys.readouterr().out
    assert text.startswith("study 'budget-5000'") and "plan: 6 trials in 2 rungs" in text
    assert "epoch 2/2" in text                                   # a progress line per epoch
    study = _study(storage, "budget-5000")
    r0, r1 = _rung(study, 0), _rung(study, 1)
    assert len(r0) == 4 and len(r1) == 2
    assert all(t.user_attrs["train_limit"] == 300 and t.user_attrs["epochs"] == 1 for t in r0)
    assert all(t.user_attrs["train_limit"] == 600 and len(t.intermediate_values) == 2 for t in r1)
    done0 = sorted((t for t in r0 if t.state == TrialState.COMPLETE), key=lambda t: (-t.value, t.user_attrs["params"]))
    assert sorted(t.user_attrs["promoted_from"] for t in r1) == sorted(t.number for t in done0[:2])
    for t in r1:  # the same network and recipe, trained longer on more images
        src = study.trials[t.user_attrs["promoted_from"]]
        assert t.params == src.params and t.user_attrs["params"] == src.user_attrs["params"]
    best = max((t for t in r1 if t.state == TrialState.COMPLETE), key=lambda t: (t.value, -t.user_attrs["params"]))
    spec = load(out)
    assert spec.info["provenance"]["trial"] == best.number and count_params(spec) <= 5000
    assert spec.recipe.epochs == 15                              # the export's full schedule
    assert study.metric_names == ["val_acc"]                     # the dashboard's objective is named


def test_several_budgets_run_one_study_each_warm_started_from_the_others(tmp_path, capsys):
    storage = tmp_path / "s.log"
    rc = main(["--budget", "6000,3000", "--plan", _plan_file(tmp_path), "--storage", str(storage),
               "--out-dir", str(tmp_path / "out"), *COMMON])
    assert rc == 0
    text = capsys.readouterr().out
    for b in (6000, 3000):
        spec = load(tmp_path / "out" / f"budget-{b}" / "best.yaml")
        assert count_params(spec) <= b
    big, small = _study(storage, "budget-6000"), _study(storage, "budget-3000")
    warm = [t for t in small.get_trials() if "warm" in t.user_attrs]
    best_big = max((t for t in big.get_trials() if t.state == TrialState.COMPLETE),
                   key=lambda t: (t.user_attrs["rung"], t.value, -t.user_attrs["params"]))
    assert warm and warm[0].user_attrs["warm"] == f"budget-6000#{best_big.number}"
    assert warm[0].params == best_big.params and warm[0].user_attrs["params"] <= 3000   # re-fitted to 3,000
    assert len(_rung(small, 0)) == 4                             # a start, inside rung 0's count
    table = text[text.index("budget   best val"):]
    assert "budget-6000" in table and "budget-3000" in table and "pareto front over all budgets" in table
    from results.report import main as report_main

    assert report_main(["--storage", str(storage), "--study", "budget-3000", "--out", str(tmp_path / "r")]) == 0
    report = (tmp_path / "r" / "report.md").read_text()
    across = report[report.index("## Across budgets"):]
    assert across.index("`budget-6000`") < across.index("`budget-3000`") and "Pareto front over the trials" in across


def test_the_plan_is_measured_on_this_machine_and_fits_the_time_given(tmp_path, capsys):
    storage, out = tmp_path / "s.log", tmp_path / "best.yaml"
    rc = main(["--budget", "3000", "--time", "30s", "--storage", str(storage), "--out", str(out), *COMMON])
    assert rc == 0
    text = capsys.readouterr().out
    assert "measuring this device's speed" in text and "training images/s" in text
    study = _study(storage, "budget-3000")
    plan = study.user_attrs["plan"]
    a = study.user_attrs
    assert a["train_rate"] > 0 and a["plan_budget_seconds"] == 30
    # the plan fits the time given, unless the machine measured so slow (busy) that even one trial at the
    # smallest fidelity could not: then it is that one trial, and says so
    if "even one trial" in a.get("plan_note", ""):
        assert [(r["trials"], r["epochs"]) for r in plan] == [(1, 1)]
    else:
        assert sum(r["seconds"] for r in plan) <= 0.9 * 30 + 1e-6
    assert len(counted_finished(study.get_trials())) >= 1 and out.is_file()


def test_with_closing_times_rung_0_fills_its_time_and_the_next_rung_takes_the_plans_fraction(tmp_path, monkeypatch,
                                                                                             capsys):
    import time

    import search.worker

    storage = tmp_path / "s.log"

    def closed(self, r):  # rung 0's time is up once it has 8 finished trials (twice the plan's 4): a state, not a clock
        done = [t for t in _rung(_study(storage, "budget-5000"), 0) if t.state.is_finished()]
        return r == 0 and len(done) >= 8

    monkeypatch.setattr(search.worker.Work, "closed", closed)
    far = time.time() + 3600
    rc = main(["--budget", "5000", "--plan", _plan_file(tmp_path), "--closes", f"{far},{far}", "--storage",
               str(storage), "--out", str(tmp_path / "best.yaml"), *COMMON])
    assert rc == 0
    study = _study(storage, "budget-5000")
    assert len(_rung(study, 0)) == 8                              # the plan said 4; the time (here: state) ruled
    top = sorted(_rung(study, 0), key=lambda t: (-t.value, t.user_attrs["params"], t.number))
    promoted = sorted(t.user_attrs["promoted_from"] for t in _rung(study, 1))
    assert promoted == sorted(t.number for t in top[:4])           # the better half of 8, all of which the time affords
    assert "8 of 6 planned" in capsys.readouterr().out


def test_a_study_whose_last_rung_ran_out_of_time_is_done_and_exits_0(tmp_path, capsys):
    import time

    storage, out = tmp_path / "s.log", tmp_path / "best.yaml"
    plan = _plan_file(tmp_path, [{"trials": 3, "images": 300, "epochs": 1}])
    past = time.time() - 1                      # the last rung's end has passed: after its first trial, no more
    rc = main(["--budget", "5000", "--plan", plan, "--closes", f"{past}", "--storage", str(storage),
               "--out", str(out), *COMMON])
    assert rc == 0 and out.is_file()
    study = _study(storage, "budget-5000")
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE]
    assert load(out).info["provenance"]["trial"] == study.best_trial.number == 0


def test_a_resumed_study_keeps_its_plan(tmp_path, capsys):
    storage = tmp_path / "s.log"
    args = ["--budget", "5000", "--storage", str(storage), "--out", str(tmp_path / "b.yaml"), *COMMON]
    assert main([*args, "--plan", _plan_file(tmp_path)]) == 0
    capsys.readouterr()
    assert main(args) == 0                                       # no --plan, no --time: the study's own plan
    text = capsys.readouterr().out
    assert "plan (from the study's first run): 6 trials in 2 rungs" in text and "resuming with 6 finished" in text
    assert len(_study(storage, "budget-5000").get_trials()) == 6


def test_an_interrupted_trial_goes_on_from_its_last_epoch_and_ends_as_an_uninterrupted_one(tmp_path, monkeypatch,
                                                                                          capsys):
    import search.progress

    plan = _plan_file(tmp_path, [{"trials": 1, "images": 400, "epochs": 3}])
    base = ["--budget", "5000", "--plan", plan, "--val", "200", "--device", "cpu", "--pruner", "none",
            "--precision", "fp32"]
    assert main([*base, "--storage", str(tmp_path / "whole.log"), "--out", str(tmp_path / "w.yaml")]) == 0
    whole = _study(tmp_path / "whole.log", "budget-5000").trials[0]

    real = search.progress.EpochLine.__call__

    def stop_after_two(self, trial, epoch, epochs, m):
        real(self, trial, epoch, epochs, m)
        if epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(search.progress.EpochLine, "__call__", stop_after_two)
    cut = ["--storage", str(tmp_path / "cut.log"), "--out", str(tmp_path / "c.yaml")]
    assert main([*base, *cut]) == 130
    monkeypatch.setattr(search.progress.EpochLine, "__call__", real)
    study = _study(tmp_path / "cut.log", "budget-5000")
    first = study.trials[0]
    assert first.state == TrialState.FAIL and first.user_attrs["fail_reason"] == "interrupted"
    assert list((tmp_path / "artifacts" / "checkpoints" / "budget-5000").glob("t0.pt"))
    capsys.readouterr()
    assert main([*base, *cut]) == 0
    assert "1 interrupted trial queued again, to go on from the last epoch" in capsys.readouterr().out
    study = _study(tmp_path / "cut.log", "budget-5000")
    again = study.trials[1]
    assert again.user_attrs["retry_of"] == 0 and again.user_attrs["resumed_at_epoch"] == 2
    assert again.state == TrialState.COMPLETE and again.params == whole.params
    assert again.user_attrs["val_acc_curve"] == whole.user_attrs["val_acc_curve"]
    assert again.value == whole.value
    assert not list((tmp_path / "artifacts" / "checkpoints" / "budget-5000").glob("*.pt"))  # done: removed


def test_a_bad_device_is_refused_before_anything_is_written(tmp_path, capsys):
    storage = tmp_path / "s.log"
    rc = main(["--budget", "5000", "--device", "gpu", "--storage", str(storage), "--out", str(tmp_path / "b.yaml")])
    assert rc == 2
    assert capsys.readouterr().err == "error: --device: expected cpu or cuda, got 'gpu'\n"
    assert list(tmp_path.iterdir()) == []


def test_each_study_keeps_its_own_weights(tmp_path):
    storage = tmp_path / "s.log"
    for name in ("a", "b"):
        assert main(["--budget", "5000", "--trials", "1", "--epochs", "1", "--train-limit", "300", "--study-name", name,
                     "--storage", str(storage), "--out", str(tmp_path / f"{name}.yaml"), *COMMON]) == 0
    wa = _study(storage, "a").best_trial.user_attrs["weights"]
    wb = _study(storage, "b").best_trial.user_attrs["weights"]
    assert wa != wb and "/a/" in wa and "/b/" in wb
    # resuming a after b uploads a's weights, which fit a's network
    assert main(["--budget", "5000", "--trials", "1", "--epochs", "1", "--train-limit", "300", "--study-name", "a",
                 "--storage", str(storage), "--out", str(tmp_path / "a.yaml"), *COMMON]) == 0


@pytest.mark.parametrize("flag,value,needle", [
    ("--budget", "20000,20000", "a budget is given twice"),
    ("--time", "soon", "expected a duration such as 900s, 45m or 2h"),
])
def test_bad_flags_are_one_line(tmp_path, capsys, flag, value, needle):
    rc = main(["--budget", "5000", flag, value, "--storage", str(tmp_path / "s.log")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and needle in err
    assert not (tmp_path / "s.log").exists()


def test_durations_and_budgets_parse():
    from search.run import budgets
    from space.cli import duration

    assert [duration(s) for s in ("900", "900s", "45m", "2h", "1.5h")] == [900, 900, 2700, 7200, 5400]
    assert budgets("20000,10000,5000") == [20000, 10000, 5000]
    assert budgets("20,000") == [20000] and budgets("20_000") == [20000]


def test_a_given_plan_with_fixed_trials_is_refused(tmp_path, capsys):
    rc = main(["--budget", "5000", "--plan", _plan_file(tmp_path), "--trials", "3",
               "--storage", str(tmp_path / "s.log")])
    assert rc == 2 and "--plan replaces" in capsys.readouterr().err


def test_a_bad_plan_file_is_one_line(tmp_path, capsys):
    p = tmp_path / "p.yaml"
    p.write_text(json.dumps([{"trials": 2, "images": 100}]))
    rc = main(["--budget", "5000", "--plan", str(p), "--storage", str(tmp_path / "s.log")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "rung 0" in err and not (tmp_path / "s.log").exists()
