"""The main job end to end on tiny data: trials, export, resume, --trials across processes, pruning."""

import subprocess

import optuna
import pytest
from conftest import ROOT, TINY, search_cmd
from optuna.trial import TrialState

from search.run import main
from search.storage import get_storage
from search.study import counts as _counts
from space.analysis import count_params
from space.build import build
from space.io import load

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(path, name):
    return optuna.load_study(study_name=name, storage=get_storage(str(path)))


def _counted_finished(study):
    return [t for t in study.get_trials() if t.state.is_finished() and _counts(t)]


def test_three_trial_search_runs_end_to_end_and_exports_a_spec(tmp_path, capsys):
    storage, out = tmp_path / "s.log", tmp_path / "best.yaml"
    rc = main(["--budget", "5000", "--trials", "3", "--storage", str(storage), "--out", str(out),
               "--epochs", "1", "--train-limit", "1000", "--val", "500", "--device", "cpu"])
    assert rc == 0
    text = capsys.readouterr().out
    assert text.count(" trial ") >= 3 and "pareto front" in text and str(out) in text
    study = _study(storage, "budget-5000")
    assert len(_counted_finished(study)) == 3
    spec = load(out)
    assert count_params(spec) <= 5000
    assert sum(p.numel() for p in build(spec).parameters()) == count_params(spec)
    best = study.best_trial
    assert spec.info["metrics"]["val_acc"] == pytest.approx(best.value)
    assert spec.info["provenance"]["study"] == "budget-5000" and spec.info["provenance"]["trial"] == best.number
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        for key in ("params", "utilisation", "macs", "rf", "spec", "val_acc_curve", "epoch_seconds",
                    "images_per_second", "device", "worker"):
            assert key in t.user_attrs, key
        assert t.user_attrs["params"] <= 5000
        assert 0 < t.user_attrs["utilisation"] <= 1


def test_rerunning_resumes_the_same_study(tmp_path):
    storage = tmp_path / "s.log"
    args = ["--budget", "5000", "--storage", str(storage), "--out", str(tmp_path / "b.yaml"), *TINY]
    assert main([*args, "--trials", "2"]) == 0
    assert main([*args, "--trials", "3"]) == 0
    study = _study(storage, "budget-5000")
    assert len(_counted_finished(study)) == 3
    assert sorted(t.number for t in study.get_trials()) == list(range(len(study.get_trials())))


def test_trials_are_respected_across_two_processes(tmp_path):
    storage = tmp_path / "s.log"
    procs = [subprocess.Popen(search_cmd("--budget", 5000, "--trials", 5, "--storage", storage, "--quiet",
                                         "--out", tmp_path / f"b{i}.yaml", "--seed", i, *TINY),
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    study = _study(storage, "budget-5000")
    assert len(_counted_finished(study)) == 5
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))


def test_jobs_runs_worker_processes_on_one_study(tmp_path, capsys):
    storage = tmp_path / "s.log"
    rc = main(["--budget", "5000", "--trials", "4", "--jobs", "2", "--storage", str(storage),
               "--out", str(tmp_path / "b.yaml"), *TINY])
    assert rc == 0
    study = _study(storage, "budget-5000")
    finished = _counted_finished(study)
    assert len(finished) == 4
    assert len({t.user_attrs["worker"] for t in finished}) == 2  # two processes did the work
    assert capsys.readouterr().out.count(" trial ") >= 4


def test_enqueue_zoo_trains_the_zoo_networks_that_fit(tmp_path):
    storage = tmp_path / "s.log"
    rc = main(["--budget", "13000", "--trials", "1", "--enqueue-zoo", "--storage", str(storage),
               "--out", str(tmp_path / "b.yaml"), *TINY])
    assert rc == 0
    fit = sorted(p.stem for p in (ROOT / "space" / "zoo").glob("*.yaml") if count_params(load(p)) <= 13000)
    assert "seed004_12534" in fit and len(fit) < len(list((ROOT / "space" / "zoo").glob("*.yaml")))
    study = _study(storage, "budget-13000")
    first = min(study.get_trials(), key=lambda t: t.number)
    assert first.user_attrs["zoo"] == fit[0] and first.user_attrs["params"] == int(fit[0].rsplit("_", 1)[1])
    assert first.state == TrialState.COMPLETE
    assert sorted(t.user_attrs["zoo"] for t in study.get_trials() if "zoo" in t.user_attrs) == fit


def test_a_deterministic_pruner_prunes(tmp_path):
    import torch

    from search.objective import Objective
    from search.searchspace import space_from_dict
    from trainer.data import load_splits

    data = load_splits(None, val=200, limit=300, seed=0, device="cpu")
    objective = Objective(space=space_from_dict(), budget=5000, epochs=2, data=data, device=torch.device("cpu"))
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1.01))
    study.optimize(objective, n_trials=2)
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert len(pruned) == 2
    assert all(list(t.intermediate_values) == [1] for t in pruned)  # stopped after its first epoch


def test_a_trial_that_trained_all_its_epochs_is_told_complete_not_pruned(tmp_path):
    import torch

    from search.objective import Objective
    from search.searchspace import space_from_dict
    from trainer.data import load_splits

    data = load_splits(None, val=200, limit=300, seed=0, device="cpu")
    objective = Objective(space=space_from_dict(), budget=5000, epochs=1, data=data, device=torch.device("cpu"))
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1.01))
    study.optimize(objective, n_trials=2)  # the pruner would stop every trial; after the last epoch it is not asked
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 2 and all(t.value == t.intermediate_values[1] for t in done)


def test_a_study_with_another_budget_is_refused(tmp_path, capsys):
    storage = tmp_path / "s.log"
    study = optuna.create_study(study_name="mine", storage=get_storage(str(storage)))
    study.set_user_attr("budget", 9000)
    rc = main(["--budget", "5000", "--study-name", "mine", "--storage", str(storage), *TINY])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "budget 9000" in err
